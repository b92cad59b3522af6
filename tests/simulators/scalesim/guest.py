"""A scripted Debian guest that answers the guest agent instantly: enough apt for our parsers.

It understands exactly the commands patchwave's guest layer sends through an agent channel
(``["/bin/sh", "-c", command]``): ``/etc/os-release``, the apt builders of
:mod:`orchestrator.guests.packages.apt` (refresh + simulate, upgrade, ``dpkg-query``,
``/var/run/reboot-required``, needrestart), the kernel listing, the boot id, and the health command
of the scale bed. Anything else is ``sh: not found`` (exit 127), so a new command in the guest layer
shows up as a failed test, not as a silently "healthy" guest.

State is small and never mutated in place (a snapshot keeps a reference to it): installed packages,
installed kernels, the running kernel, the reboot-required flag and a boot counter.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, replace

from orchestrator.guests.job import JOB_DIR
from orchestrator.guests.osinfo import OS_RELEASE_COMMAND
from orchestrator.guests.packages.base import SECTION
from orchestrator.guests.reboot import BOOT_ID_COMMAND, KERNELS_COMMAND

HEALTH_COMMAND = "scale-health"
_JOB_ID = re.compile(r"pw-[0-9a-f]{16}")
OLD_KERNEL, NEW_KERNEL = "6.1.0-27-amd64", "6.1.0-28-amd64"
KERNEL_PACKAGE = f"linux-image-{NEW_KERNEL}"
INSTALLED = {"demo-app": "1.0", "openssl": "3.0.11-1~deb12u2", "tzdata": "2024a-0+deb12u1"}
#: name -> (candidate, origin): what every guest has pending at the start.
UPGRADES = {
    "demo-app": ("1.1", "Debian:12/stable"),
    "openssl": ("3.0.15-1~deb12u1", "Debian-Security:12/stable-security"),
    "tzdata": ("2025b-0+deb12u1", "Debian:12/stable-updates"),
}
KERNEL_UPGRADE = ("6.1.119-1", "Debian-Security:12/stable-security")
OS_RELEASE = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n'
    'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
)


@dataclass(frozen=True, slots=True)
class GuestState:
    installed: tuple[tuple[str, str], ...] = tuple(INSTALLED.items())
    kernels: tuple[str, ...] = (OLD_KERNEL,)
    running: str = OLD_KERNEL
    reboot_required: bool = False
    boots: int = 1
    #: detached patch jobs (orchestrator/guests/job.py) on the guest's disk: (job, exit, stdout, stderr);
    #: a job runs to its end when it is started (the scale guest has no concurrency of its own)
    jobs: tuple[tuple[str, int, str, str], ...] = ()

    def version(self, name: str) -> str:
        return dict(self.installed).get(name, "")


@dataclass(frozen=True)
class GuestTimes:
    """Simulated durations (seconds, slept in the caller's thread: an activity's): the upgrade, and
    any other command."""

    upgrade_s: float = 0.0
    command_s: float = 0.0


class ScaleGuest:
    """One VM's guest. ``kernel``: its upgrade includes a new kernel (a reboot follows); ``broken``:
    the new demo-app fails the health check (the VM is rolled back)."""

    __slots__ = ("broken", "kernel", "state", "times", "vm_id")

    def __init__(self, vm_id: str, *, kernel: bool = False, broken: bool = False, times: GuestTimes) -> None:
        self.vm_id, self.kernel, self.broken, self.times = vm_id, kernel, broken, times
        self.state = GuestState()

    @property
    def boot_id(self) -> str:
        return f"{self.vm_id}-boot-{self.state.boots:04d}"

    def boot(self) -> None:
        """A (re)boot: new boot id, the newest installed kernel, no reboot pending."""
        newest = max(self.state.kernels, key=lambda k: [int(p) if p.isdigit() else p for p in k.split("-")])
        self.state = replace(self.state, boots=self.state.boots + 1, running=newest, reboot_required=False)

    def pending(self) -> list[tuple[str, str, str, str]]:
        """(name, installed, candidate, origin) of every pending update."""
        found = [
            (name, self.state.version(name), new, origin)
            for name, (new, origin) in UPGRADES.items()
            if self.state.version(name) != new
        ]
        if self.kernel and NEW_KERNEL not in self.state.kernels:
            found.append((KERNEL_PACKAGE, "", *KERNEL_UPGRADE))
        return found

    def run(self, command: str) -> tuple[int, str, str]:
        """``/bin/sh -c command``: (exit code, stdout, stderr)."""
        if self.times.command_s:
            time.sleep(self.times.command_s)
        for prefix, answer in self._answers():
            if command.startswith(prefix):
                return answer(command)
        return 127, "", f"sh: 1: {command.split()[0] if command.split() else command}: not found\n"

    def _answers(self):  # (command prefix, handler) in the order they are tried
        return (
            (OS_RELEASE_COMMAND, lambda _: (0, OS_RELEASE, "")),
            (BOOT_ID_COMMAND, lambda _: (0, self.boot_id + "\n", "")),
            (KERNELS_COMMAND, lambda _: (0, self._kernels(), "")),
            ("uname -r", lambda _: (0, self.state.running + "\n", "")),
            ("if [ -e /var/run/reboot-required ]", lambda _: (0, self._reboot_required(), "")),
            ("if command -v needrestart", lambda _: (0, "patchwave: needrestart not installed\n", "")),
            (f"mkdir -p {JOB_DIR}", self._start_job),
            (f"if [ -e {JOB_DIR}/", self._job_status),
            (f"if [ ! -e {JOB_DIR}/", self._job_status),  # the look that waits for the end: ended already
            (f"cat {JOB_DIR}/", self._job_output),
            (f"cat '{JOB_DIR}/", self._job_output),
            (f"echo '{SECTION}busy'", lambda _: (0, self._integrity(), "")),
            ("dpkg-query -W", self._dpkg_query),
            ("export DEBIAN_FRONTEND=noninteractive; apt-get", self._apt),
            ("apt-get -q -s upgrade", lambda _: (0, self._simulate(), "")),
            (HEALTH_COMMAND, lambda _: self._health()),
        )

    def _job(self, command: str) -> tuple[str, tuple[str, int, str, str] | None]:
        match = _JOB_ID.search(command)
        if match is None:
            raise ValueError(f"no job id in {command[:80]!r}")
        job = match.group(0)
        return job, next((j for j in self.state.jobs if j[0] == job), None)

    def _start_job(self, command: str) -> tuple[int, str, str]:
        job, found = self._job(command)
        if found is not None:
            return 0, "job=exists\n", ""
        inner = command.split("\n( ", 1)[1].rsplit("\n) > ", 1)[0]
        code, out, err = self.run(inner)
        self.state = replace(self.state, jobs=(*self.state.jobs, (job, code, out, err)))
        return 0, "job=started setsid\n", ""

    def _job_status(self, command: str) -> tuple[int, str, str]:
        _job, found = self._job(command)
        if found is None:
            return 0, "state=absent\n", ""
        return 0, f"state=finished\nexit={found[1]}\n", ""

    def _job_output(self, command: str) -> tuple[int, str, str]:
        _job, found = self._job(command)
        if found is None:
            return 0, "", ""
        return 0, found[2] if ".out" in command else found[3], ""

    def _integrity(self) -> str:
        """The consistency check of :meth:`Apt.integrity_command`: nobody holds dpkg, nothing half done."""
        return "".join(
            f"{SECTION}{name}\n{SECTION}exit=0\n" for name in ("busy", "audit", "states", "updates")
        )

    def _kernels(self) -> str:
        listing = "".join(f"/boot/vmlinuz-{k}\n" for k in self.state.kernels)
        return f"{self.state.running}\n---\n{listing}"

    def _reboot_required(self) -> str:
        if not self.state.reboot_required:
            return "reboot-required: no\n"
        return f"reboot-required: yes\nreboot-required-pkg: {KERNEL_PACKAGE}\n"

    def _dpkg_query(self, command: str) -> tuple[int, str, str]:
        names = shlex.split(command.split(" -- ", 1)[1]) if " -- " in command else []
        have = dict(self.state.installed)
        out = "".join(f"{n}\t{have[n]}\tii \n" for n in names if n in have)
        missing = [n for n in names if n not in have]
        err = "".join(f"dpkg-query: no packages found matching {n}\n" for n in missing)
        return (1 if missing else 0), out, err

    def _simulate(self) -> str:
        rows = [
            f"Inst {name}" + (f" [{old}]" if old else "") + f" ({new} {origin} [amd64])"
            for name, old, new, origin in self.pending()
        ]
        return "".join(r + "\n" for r in rows) + f"{len(rows)} upgraded, 0 newly installed, 0 to remove.\n"

    def _apt(self, command: str) -> tuple[int, str, str]:
        if " update >&2" in command and command.rstrip().endswith("upgrade --with-new-pkgs"):
            return 0, self._simulate(), "Reading package lists... Done\n"
        if command.rstrip().endswith("-y upgrade --with-new-pkgs"):
            return 0, self._upgrade(), ""
        if " install " in command and "--only-upgrade" not in command:
            return self._install_pins(command.split(" install ", 1)[1])
        return 100, "", "E: the scale guest knows `upgrade --with-new-pkgs` and `install name=version` only\n"

    def _install_pins(self, args: str) -> tuple[int, str, str]:
        """``apt-get install name=version ...`` (pinned promotion): each pin must be the candidate the
        guest's repository offers (the only other version it has is the installed one)."""
        pins = [t.split("=", 1) for t in shlex.split(args) if "=" in t and not t.startswith("-")]
        offered = {name: new for name, _, new, _ in self.pending()}
        for name, version in pins:
            if offered.get(name) != version and self.state.version(name) != version:
                return 100, "", f"E: Version '{version}' for '{name}' was not found\n"
        wanted = {name for name, _ in pins}
        return 0, self._upgrade(only=wanted), ""

    def _upgrade(self, only: set[str] | None = None) -> str:
        if self.times.upgrade_s:
            time.sleep(self.times.upgrade_s)
        lines, have, kernels = [], dict(self.state.installed), self.state.kernels
        for name, old, new, _ in self.pending():
            if only is not None and name not in only:
                continue
            lines.append(f"Unpacking {name} ({new})" + (f" over ({old})" if old else "") + " ...")
            if name == KERNEL_PACKAGE:
                kernels = (*kernels, NEW_KERNEL)
            have[name] = new
        self.state = replace(
            self.state, installed=tuple(sorted(have.items())), kernels=kernels,
            reboot_required=self.state.reboot_required or kernels != self.state.kernels,
        )  # fmt: skip
        return "".join(line + "\n" for line in lines)

    def _health(self) -> tuple[int, str, str]:
        if self.broken and self.state.version("demo-app") == UPGRADES["demo-app"][0]:
            return 1, "", "demo-app 1.1 is broken\n"
        return 0, "ok\n", ""
