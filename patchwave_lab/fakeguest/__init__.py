"""Fake Debian guests for the libvirt test-driver runs: a busybox chroot per VM with apt-like tools.

The libvirt test driver has no guest agent and no real disks, so its "guests" are reached with the
real ``local`` channel (``LocalChannel(root=...)``, i.e. chroot) into a tiny root file system:

* ``/bin`` — a static busybox and its applets; ``/etc/os-release`` says Debian 12;
* ``/usr/sbin/{apt-get,dpkg,dpkg-query,needrestart,reboot,systemctl,nohup,demo-health}`` — shell fakes from
  ``patchwave_lab/fakeguest/bin`` that speak just enough of apt's (and needrestart's batch) output for
  ``orchestrator.guests.packages.apt``;
* ``/var/lib/fakeguest/`` — the state: ``installed`` and ``repo`` ("name version" lines; a package
  published again (:meth:`FakeGuest.publish`) is listed once per version, the last one being apt's
  candidate, and ``apt-get install name=version`` installs any listed version),
  ``broken`` (an installed "name version" listed there makes ``demo-health`` fail),
  ``reboot-pkgs`` (installing one of these requires a reboot), ``restart-pkgs`` ("package unit":
  upgrading the package leaves the unit running the old library, listed in ``stale-services`` until
  ``needrestart -r a`` or a reboot; units in ``keep-running`` are never restarted by needrestart),
  ``delay-after-apply`` (seconds the
  upgrade lingers after installing, to kill a worker there, or until the file is removed),
  ``audit`` (what ``dpkg --audit`` prints), ``states`` ("name abbrev" lines: a package's
  ``${db:Status-Abbrev}`` other than ``ii``) — the guest's "disk";
* ``/var/log/fakeguest/`` — what the tests observe, kept outside the "disk" like a serial console:
  ``log`` (every apt-get/dpkg-query/needrestart/reboot invocation), ``patches`` (one line per upgraded
  package), ``restarts`` (one line per service needrestart restarted), ``processes`` ("apt-get <pid> started|finished": a job that was killed never says finished);
* no systemd: patch jobs (:mod:`orchestrator.guests.job`) are detached with ``setsid``; the fake
  ``systemctl`` keeps timer units as files ``/var/lib/fakeguest/units/<unit>`` ("<enabled> <active>",
  ``timers=`` of :meth:`FakeGuest.create`: e.g. unattended-upgrades' ``apt-daily*.timer``) for the
  automatic updater's pause/restore, and logs start/stop/daemon-reload to ``/var/log/fakeguest/systemctl``;
* ``/proc/sys/kernel/random/boot_id`` — a plain file that the fake ``reboot`` rewrites.

This is acceptable only for test-driver runs; the real Debian lab exercises real apt.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.environment import child_environment

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
        restart_pkgs: Mapping[str, Sequence[str]] = {},
        keep_running: Sequence[str] = (),
        timers: Sequence[str] = (),
    ) -> FakeGuest:
        """``restart_pkgs``: package -> the units left running its old library once it is upgraded;
        ``keep_running``: units needrestart never restarts (they stay stale until a reboot)."""
        guest = cls(root)
        for sub in (
            "bin",
            "usr/sbin",
            "etc",
            "var/lib/fakeguest/units",
            "var/log/fakeguest",
            "var/run",
            "tmp",
            "proc/sys/kernel/random",
        ):
            (root / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, env=child_environment()
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
        (guest.state / "restart-pkgs").write_text(
            "".join(f"{p} {unit}\n" for p, units in sorted(restart_pkgs.items()) for unit in units)
        )
        (guest.state / "keep-running").write_text("".join(f"{u}\n" for u in keep_running))
        (guest.state / "stale-services").write_text("")
        for timer in timers:
            (guest.state / "units" / timer).write_text("enabled active\n")
        for name in ("log", "patches", "restarts", "processes", "systemctl"):
            (guest.logs / name).write_text("")
        return guest

    def publish(self, name: str, version: str) -> None:
        """Offer ``version`` of ``name`` in the guest's repository: the new candidate, while the
        versions published before stay installable by ``name=version`` (like a kept archive)."""
        with (self.state / "repo").open("a") as repo:
            repo.write(f"{name} {version}\n")

    def published(self) -> dict[str, list[str]]:
        """name -> the versions the repository offers, oldest first (the last is the candidate)."""
        offered: dict[str, list[str]] = {}
        for line in (self.state / "repo").read_text().splitlines():
            if line.strip():
                name, version = line.split()[:2]
                offered.setdefault(name, []).append(version)
        return offered

    # ------------------------------------------------------------------ what the tests read

    def units(self) -> dict[str, str]:
        """The timer units' states: unit -> "<enabled> <active>"."""
        return {u.name: u.read_text().strip() for u in sorted((self.state / "units").iterdir())}

    def systemctl_calls(self) -> list[str]:
        """Every systemctl start/stop/daemon-reload, in order."""
        return (self.logs / "systemctl").read_text().splitlines()

    def linger_after_apply(self, seconds: float) -> None:
        """Make the next upgrades sleep after installing (side effect done, not yet reported)."""
        (self.state / "delay-after-apply").write_text(f"{seconds:g}\n")

    def stop_lingering(self) -> None:
        """End a lingering upgrade now (see :meth:`linger_after_apply`)."""
        (self.state / "delay-after-apply").unlink(missing_ok=True)

    def processes(self) -> list[str]:
        """ "apt-get <pid> started|finished" lines: every non-simulated apt-get run of the guest."""
        path = self.logs / "processes"
        return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def installed(self) -> dict[str, str]:
        pairs = (line.split() for line in (self.state / "installed").read_text().splitlines() if line.strip())
        return {name: version for name, version in pairs}

    def patches(self) -> list[str]:
        """One line per package the fake apt-get actually upgraded ("name old new")."""
        return [line for line in (self.logs / "patches").read_text().splitlines() if line.strip()]

    def upgrades(self) -> int:
        """How many non-simulated applies (`apt-get upgrade`, or `install name=version`) the guest saw."""
        log = (self.logs / "log").read_text().splitlines()
        return sum(
            1
            for line in log
            if line.startswith("apt-get ")
            and (" upgrade" in line or " install " in line)
            and " -s " not in line
        )

    def restarts(self) -> list[str]:
        """The services the fake needrestart restarted, in order."""
        return [line for line in (self.logs / "restarts").read_text().splitlines() if line.strip()]

    def stale_services(self) -> list[str]:
        """The services still running an old library (what ``needrestart -b`` lists)."""
        return [line for line in (self.state / "stale-services").read_text().splitlines() if line.strip()]

    def installs(self) -> list[str]:
        """The non-simulated `apt-get install` command lines (pinned applies), in order."""
        log = (self.logs / "log").read_text().splitlines()
        return [
            line for line in log if line.startswith("apt-get ") and " install " in line and " -s " not in line
        ]

    def boot_id(self) -> str:
        return (self.root / "proc/sys/kernel/random/boot_id").read_text().strip()

    def hang_reboots(self) -> None:
        """Make the guest's own reboot hang: asked for (logged "reboot (hangs)"), it never happens and
        the guest stays up on its old boot id — a shutdown stuck behind a unit, say."""
        (self.state / "reboot-hangs").write_text("")

    def reboots(self) -> list[str]:
        """Every reboot the guest was asked for: "reboot", "reboot (hangs)", "reboot (platform)"."""
        path = self.logs / "log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith("reboot")]

    def platform_rebooted(self) -> None:
        """What the hypervisor's reboot of the VM (not the guest's own ``reboot``) does to the guest, for
        simulators that tell us about one: what ``bin/reboot`` does, a new boot id and every service
        started again on the new libraries."""
        with (self.logs / "log").open("a") as log:
            log.write("reboot (platform)\n")
        (self.root / "proc/sys/kernel/random/boot_id").write_text(f"boot-{uuid.uuid4()}\n")
        for marker in ("reboot-required", "reboot-required.pkgs"):
            (self.root / "var/run" / marker).unlink(missing_ok=True)
        (self.state / "stale-services").write_text("")

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
