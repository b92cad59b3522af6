"""Fake Debian guests for the libvirt test-driver runs: a busybox chroot per VM with apt-like tools.

The libvirt test driver has no guest agent and no real disks, so its "guests" are reached with the
real ``local`` channel (``LocalChannel(root=...)``, i.e. chroot) into a tiny root file system:

* ``/bin`` — a static busybox and its applets; ``/etc/os-release`` says Debian 12;
* ``/usr/sbin/{apt-get,dpkg-query,reboot,systemctl,nohup,demo-health}`` — shell fakes from
  ``tests/fakeguest/bin`` that speak just enough of apt's output for ``orchestrator.guests.apt``;
* ``/var/lib/fakeguest/`` — the state: ``installed`` and ``repo`` ("name version" lines),
  ``broken`` (an installed "name version" listed there makes ``demo-health`` fail),
  ``reboot-pkgs`` (installing one of these requires a reboot), ``delay-after-apply`` (seconds the
  upgrade lingers after installing, to kill a worker there) — the guest's "disk";
* ``/var/log/fakeguest/`` — what the tests observe, kept outside the "disk" like a serial console:
  ``log`` (every apt-get/dpkg-query/reboot invocation), ``patches`` (one line per upgraded package);
* ``/proc/sys/kernel/random/boot_id`` — a plain file that the fake ``reboot`` rewrites.

This is acceptable only for test-driver runs; the real Debian lab exercises real apt.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

BIN = Path(__file__).parent / "bin"
BUSYBOX = Path(shutil.which("busybox") or "/bin/busybox")
OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
)
#: The demo health check: a `command` check through the guest's (local) channel.
HEALTH_COMMAND = "/usr/sbin/demo-health"


def _lines(pairs: Mapping[str, str]) -> str:
    return "".join(f"{name} {version}\n" for name, version in sorted(pairs.items()))


class FakeGuest:
    """One fake guest rooted at ``root`` (created by :meth:`create`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "var/lib/fakeguest"
        self.logs = root / "var/log/fakeguest"

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        installed: Mapping[str, str],
        repo: Mapping[str, str],
        broken: Mapping[str, str] = {},
        reboot_pkgs: Sequence[str] = (),
    ) -> FakeGuest:
        guest = cls(root)
        for sub in (
            "bin",
            "usr/sbin",
            "etc",
            "var/lib/fakeguest",
            "var/log/fakeguest",
            "var/run",
            "tmp",
            "proc/sys/kernel/random",
        ):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            link = root / "bin" / applet
            if applet != "busybox" and not link.exists():
                link.symlink_to("busybox")
        for tool in BIN.iterdir():
            shutil.copy2(tool, root / "usr/sbin" / tool.name)
        null = root / "dev/null"
        if not null.exists():
            null.parent.mkdir(exist_ok=True)
            os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the chroot needs /dev/null (root only)
        (root / "etc/os-release").write_text(OS_RELEASE)
        (root / "proc/sys/kernel/random/boot_id").write_text("boot-initial\n")
        (guest.state / "installed").write_text(_lines(installed))
        (guest.state / "repo").write_text(_lines(repo))
        (guest.state / "broken").write_text(_lines(broken))
        (guest.state / "reboot-pkgs").write_text("".join(f"{p}\n" for p in reboot_pkgs))
        for name in ("log", "patches"):
            (guest.logs / name).write_text("")
        return guest

    # ------------------------------------------------------------------ what the tests read

    def linger_after_apply(self, seconds: float) -> None:
        """Make the next upgrades sleep after installing (side effect done, not yet reported)."""
        (self.state / "delay-after-apply").write_text(f"{seconds:g}\n")

    def installed(self) -> dict[str, str]:
        pairs = (line.split() for line in (self.state / "installed").read_text().splitlines() if line.strip())
        return {name: version for name, version in pairs}

    def patches(self) -> list[str]:
        """One line per package the fake apt-get actually upgraded ("name old new")."""
        return [line for line in (self.logs / "patches").read_text().splitlines() if line.strip()]

    def upgrades(self) -> int:
        """How many non-simulated `apt-get upgrade` runs the guest saw."""
        log = (self.logs / "log").read_text().splitlines()
        return sum(
            1 for line in log if line.startswith("apt-get ") and " upgrade" in line and " -s " not in line
        )

    def boot_id(self) -> str:
        return (self.root / "proc/sys/kernel/random/boot_id").read_text().strip()

    # ------------------------------------------------------------------ the fake "disk"

    def save_disk(self, label: str) -> None:
        """Copy the mutable state aside (what a disk snapshot would capture)."""
        target = self.root.parent / f".{self.root.name}.{label}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copytree(self.state, target / "fakeguest")
        shutil.copytree(self.root / "var/run", target / "run")

    def restore_disk(self, label: str) -> None:
        """Put the state copied by :meth:`save_disk` back (what a snapshot revert does to a disk)."""
        source = self.root.parent / f".{self.root.name}.{label}"
        for sub, name in (("var/lib/fakeguest", "fakeguest"), ("var/run", "run")):
            shutil.rmtree(self.root / sub)
            shutil.copytree(source / name, self.root / sub)
