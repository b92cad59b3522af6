"""apt (Debian, Ubuntu): command builders and output parsers.

* Pending updates come from ``apt-get -s upgrade --with-new-pkgs`` ``Inst`` lines, whose origin
  (``Label:Version/Archive``, e.g. ``Debian-Security:12/stable-security``) marks security updates;
  ``apt list --upgradable`` output is understood as well. apt reports no severity or advisory ids.
* Everything runs noninteractively with the safe conffile policy (keep changed conffiles, take
  new defaults for untouched ones) and waits for the dpkg lock (``DPkg::Lock::Timeout``) instead
  of failing at once.
* A half-done earlier run shows in the simulation as ``Conf`` lines without an ``Inst`` line and as
  "N not fully installed or removed": :meth:`Apt.parse_updates` raises
  :class:`~orchestrator.guests.errors.PackageDatabaseInconsistent` for it instead of reporting
  "nothing to do" (the packages are half-configured, not up to date).
* Consistency (:meth:`Apt.integrity_command`): nobody holds dpkg's locks (``/proc/locks``) and no
  apt/dpkg process runs; ``dpkg --audit`` is empty; no package is in a half state
  (``${db:Status-Abbrev}`` other than not-installed / config-files / installed, or reinst-required);
  ``/var/lib/dpkg/updates`` is empty (dpkg was interrupted mid-operation otherwise).
* Security-only has no apt switch: the command simulates the upgrade, keeps the packages whose
  candidate comes from a security archive and installs exactly those ``pkg=version`` pins.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from orchestrator.guests.errors import PackageDatabaseInconsistent, PackageManagerError, PackageManagerLocked
from orchestrator.guests.packages.base import (
    KERNEL,
    ApplyOutcome,
    InstalledPackage,
    Integrity,
    PendingUpdate,
    UpdateSelection,
    dedupe,
    is_kernel_package,
    lock_holders_command,
    parse_lock_holders,
    problem_lines,
    section_command,
    split_sections,
)
from orchestrator.model import PackageChange
from providers.base import ExecResult

# "Inst name [old] (new Origin:Ver/archive, Origin2:Ver/archive2 [arch]) [extra]"
_INST = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])? \((?P<new>\S+)(?P<origins>[^()\[]*)(?:\[(?P<arch>[^\]]*)\])?\)"
)
# "name/suite1,suite2 version arch [upgradable from: old]"
_LISTED = re.compile(
    r"^(?P<name>[^/\s]+)/(?P<suites>\S+) (?P<new>\S+) (?P<arch>\S+) \[upgradable from: (?P<old>[^\]]+)\]"
)
# "Conf name (version Origin:Ver/archive [arch])": configured by the simulated run
_CONF = re.compile(r"^Conf (?P<name>\S+) \((?P<new>\S+)")
_NOT_FULLY = re.compile(r"^(?P<count>\d+) not fully installed or removed\.")
_UNPACK = re.compile(r"^Unpacking (?P<name>\S+) \((?P<new>[^)]+)\)(?: over \((?P<old>[^)]+)\))? \.\.\.")
_REMOVE = re.compile(r"^Removing (?P<name>\S+) \((?P<old>[^)]+)\) \.\.\.")
_LOCK = re.compile(
    r"Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock the administration directory"
    r"|Unable to lock directory /var/lib/apt/lists"
)
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]*(:[A-Za-z0-9-]+)?=[A-Za-z0-9.+~:_-]+$")
#: dpkg's locks (fcntl locks: only /proc/locks shows them) and the processes that take them.
DPKG_LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock")
DPKG_PROCESSES = ("apt", "apt-get", "aptitude", "dpkg", "unattended-upgr")
#: ${db:Status-Abbrev}'s second letter -> what it means; n, c and i are the settled states.
_HALF_STATES = {
    "H": "half-installed",
    "U": "unpacked (not configured)",
    "F": "half-configured",
    "W": "awaiting triggers",
    "t": "triggers pending",
}
_STATES_FORMAT = shlex.quote(r"${db:Status-Abbrev}\t${Package}\t${Version}\n")  # dpkg-query expands \t, \n

#: Every package dpkg knows, with its source package (advisories name source packages) and state.
PACKAGES_FORMAT = "${binary:Package}\t${Version}\t${source:Package}\t${source:Version}\t${db:Status-Abbrev}\n"
#: The second letter of ``${db:Status-Abbrev}`` for a package whose files are on disk: installed, or
#: unpacked / half-configured / awaiting or pending triggers (not "c" config-files, "n" not-installed,
#: "H" half-installed).
_ON_DISK = frozenset("iUFWt")
_APT_NOISE = ("WARNING: apt does not have a stable CLI interface", "Listing...")

# A candidate is a security update when one of its origins is a security archive or label.
_AWK_SECURITY_PINS = (
    'awk \'/^Inst / { p = substr($0, index($0, "(")); p = substr(p, 1, index(p, ")"));'
    ' if (p ~ /-security[ ,)\\[]/ || p ~ /Security:/) { v = substr(p, 2); sub(/ .*/, "", v); print $2 "=" v } }\''
)


def is_security_origin(origin: str) -> bool:
    """``Debian-Security:12/stable-security``, ``Ubuntu:22.04/jammy-security``, ``bookworm-security``."""
    origin = origin.strip()
    return origin.endswith("-security") or "security:" in origin.lower() or "/security" in origin


class Apt:
    name = "apt"

    def __init__(
        self, *, lock_timeout: float = 600, refresh: bool = True, full_upgrade: bool = False
    ) -> None:
        self.lock_timeout = int(lock_timeout)
        self.refresh = refresh
        # ``dist-upgrade`` instead of ``upgrade --with-new-pkgs`` for "all": what hypervisor hosts need
        # (Proxmox VE: never `apt upgrade`), as it may also remove packages that block an upgrade.
        self.full_upgrade = full_upgrade

    @property
    def _upgrade(self) -> str:
        return "dist-upgrade" if self.full_upgrade else "upgrade --with-new-pkgs"

    # -- builders -------------------------------------------------------------------------

    def _apt_get(self) -> str:
        return (
            f"apt-get -q -o DPkg::Lock::Timeout={self.lock_timeout}"
            " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
        )

    def list_updates_command(self) -> str:
        simulate = f"apt-get -q -s {self._upgrade}"
        if not self.refresh:
            return simulate
        return f"export DEBIAN_FRONTEND=noninteractive; {self._apt_get()} update >&2 || exit $?; {simulate}"

    def apply_command(self, selection: UpdateSelection) -> str:
        base = f"export DEBIAN_FRONTEND=noninteractive; {self._apt_get()} -y"
        if selection.mode == "all":
            return f"{base} {self._upgrade}"
        if selection.mode == "security":
            return (
                f"pw_pins=$(apt-get -q -s upgrade --with-new-pkgs | {_AWK_SECURITY_PINS}) || exit $?; "
                'if [ -z "$pw_pins" ]; then echo "patchwave: no security updates pending"; exit 0; fi; '
                f"{base} install --only-upgrade $pw_pins"
            )
        if selection.mode == "packages":
            return f"{base} install --only-upgrade " + " ".join(shlex.quote(n) for n in selection.packages)
        for pin in selection.pins:
            if not _PIN.match(pin):
                raise PackageManagerError(
                    f"apt pin {pin!r} is not 'package=version'", code="invalid_selection", output=pin
                )
        return f"{base} install " + " ".join(shlex.quote(p) for p in selection.pins)

    def install_command(self, names: Sequence[str]) -> str:
        """Install ``names`` when missing (refreshing the lists first; installed ones are not upgraded)."""
        packages = " ".join(shlex.quote(n) for n in names)
        return (
            f"export DEBIAN_FRONTEND=noninteractive; {self._apt_get()} update >&2 || exit $?; "
            f"{self._apt_get()} -y install --no-upgrade {packages}"
        )

    def reboot_required_command(self) -> str:
        return (
            "if [ -e /var/run/reboot-required ]; then echo 'reboot-required: yes';"
            " sed 's/^/reboot-required-pkg: /' /var/run/reboot-required.pkgs 2>/dev/null;"
            " else echo 'reboot-required: no'; fi"
        )

    def installed_command(self, names: Sequence[str]) -> str:
        fmt = shlex.quote("${Package}\t${Version}\t${db:Status-Abbrev}\n")
        return f"dpkg-query -W -f={fmt} -- " + " ".join(shlex.quote(n) for n in names)

    def packages_command(self) -> str:
        return f"dpkg-query -W -f={shlex.quote(PACKAGES_FORMAT)}"

    def needs_restart_command(self) -> str:
        return (
            "if command -v needrestart >/dev/null 2>&1; then needrestart -b -r l;"
            " else echo 'patchwave: needrestart not installed'; fi"
        )

    def integrity_command(self) -> str:
        return "; ".join(
            [
                section_command("busy", lock_holders_command(DPKG_LOCKS, DPKG_PROCESSES)),
                section_command("audit", "dpkg --audit"),
                section_command("states", f"dpkg-query -W -f={_STATES_FORMAT}"),
                section_command("updates", "[ ! -d /var/lib/dpkg/updates ] || ls -A /var/lib/dpkg/updates"),
            ]
        )

    def restart_services_command(self, services: Sequence[str]) -> str:
        """needrestart restarts what it found itself (``-r a``: automatically; ``-l``: libraries only, no
        kernel hints); its own ``override_rc`` keeps D-Bus, logind, gettys ... running (they stay listed)."""
        return (
            "if command -v needrestart >/dev/null 2>&1; then needrestart -r a -l;"
            " else echo 'patchwave: needrestart not installed' >&2; exit 127; fi"
        )

    # -- parsers --------------------------------------------------------------------------

    def parse_updates(self, result: ExecResult) -> list[PendingUpdate]:
        self._raise_for_failure(result, "listing updates")
        updates: dict[str, PendingUpdate] = {}
        configured: dict[str, str] = {}
        not_fully = 0
        for line in result.stdout.splitlines():
            if m := _CONF.match(line):
                configured[m["name"]] = m["new"]
            elif m := _NOT_FULLY.match(line):
                not_fully = int(m["count"])
            elif m := _INST.match(line):
                origins = [o for o in m["origins"].split(",") if o.strip()]
                updates[m["name"]] = PendingUpdate(
                    name=m["name"],
                    current=m["old"] or "",
                    candidate=m["new"],
                    security=any(is_security_origin(o) for o in origins),
                    arch=(m["arch"] or "").strip(),
                )
            elif m := _LISTED.match(line):
                updates[m["name"]] = PendingUpdate(
                    name=m["name"],
                    current=m["old"].strip(),
                    candidate=m["new"],
                    security=any(s.endswith("-security") for s in m["suites"].split(",")),
                    arch=m["arch"],
                )
            elif line.startswith("Inst "):
                raise PackageManagerError("unexpected apt-get 'Inst' line", code="parse", output=line)
        _refuse_half_done(configured, updates, not_fully)
        return list(updates.values())

    def parse_integrity(self, result: ExecResult) -> Integrity:
        sections = split_sections(result.stdout)
        missing = [n for n in ("busy", "audit", "states", "updates") if n not in sections]
        if missing:
            raise PackageManagerError(
                f"no {', '.join(missing)} section in the consistency check",
                code="parse",
                output=result.stdout,
            )
        problems: list[str] = []
        audit, status = sections["audit"]
        if status != 0:
            problems.append(f"dpkg --audit could not run (exit {status})")
        if findings := problem_lines(audit):
            problems.append("dpkg --audit: " + " ".join(line.strip() for line in findings))
        states, status = sections["states"]
        if status != 0:
            problems.append(f"dpkg-query could not list the package states (exit {status})")
        problems.extend(_half_states(states))
        pending, _ = sections["updates"]
        if files := problem_lines(pending):
            problems.append(f"/var/lib/dpkg/updates is not empty ({len(files)} files): dpkg was interrupted")
        return Integrity(busy=parse_lock_holders(sections["busy"][0]), problems=tuple(problems))

    def parse_apply(self, result: ExecResult) -> ApplyOutcome:
        self._raise_for_failure(result, "applying updates")
        changes: list[PackageChange] = []
        for line in result.stdout.splitlines():
            if m := _UNPACK.match(line):
                changes.append(PackageChange(_strip_arch(m["name"]), m["old"] or "", m["new"]))
            elif m := _REMOVE.match(line):
                changes.append(PackageChange(_strip_arch(m["name"]), m["old"], ""))
        changed = dedupe(changes)
        return ApplyOutcome(changed=changed, reboot_hint=any(is_kernel_package(c.name) for c in changed))

    def parse_reboot_required(self, result: ExecResult) -> bool:
        self._raise_for_failure(result, "checking /var/run/reboot-required")
        for line in result.stdout.splitlines():
            if line.startswith("reboot-required: "):
                return line.split(":", 1)[1].strip() == "yes"
        raise PackageManagerError(
            "no reboot-required marker in the output", code="parse", output=result.stdout
        )

    def parse_installed(self, result: ExecResult) -> dict[str, str]:
        # dpkg-query exits 1 when some names are unknown ("no packages found matching"): not an error.
        if result.exit_code not in (0, 1):
            self._raise_for_failure(result, "querying installed packages")
        installed: dict[str, str] = {}
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) != 3:
                continue
            name, version, status = parts
            if status.strip().startswith("ii") or status.strip().startswith("hi"):
                installed[name] = version
        return installed

    def parse_packages(self, result: ExecResult) -> list[InstalledPackage]:
        """:data:`PACKAGES_FORMAT` lines -> the packages whose files are on disk (a multi-arch package
        installed for two architectures is listed twice, ``arch`` from its ``:arch`` qualifier)."""
        self._raise_for_failure(result, "listing installed packages")
        found = []
        for line in result.stdout.splitlines():
            parts = line.split("\t")
            if len(parts) != 5 or not parts[0] or not parts[1]:
                continue
            binary, version, source, source_version, status = parts
            if len(status) < 2 or status[1] not in _ON_DISK:
                continue
            name, _, arch = binary.partition(":")
            found.append(InstalledPackage(
                name=name, version=version, source="" if source == name else source,
                source_version="" if source_version in ("", version) else source_version, arch=arch,
            ))  # fmt: skip
        if not found and result.stdout.strip():
            raise PackageManagerError(
                "no package line in the dpkg-query output", code="parse", output=result.stdout
            )
        return found

    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]:
        found: list[str] = []
        for line in result.stdout.splitlines():
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "NEEDRESTART-SVC" and value:
                found.append(value)
            elif key == "NEEDRESTART-KSTA" and value in ("2", "3"):
                found.append(KERNEL)
        return tuple(dict.fromkeys(found))

    def parse_restart_services(self, result: ExecResult) -> None:
        if not result.ok:
            raise PackageManagerError(
                f"needrestart -r a failed (exit {result.exit_code})",
                code="apt_failed",
                output=f"{result.stdout}\n{result.stderr}",
            )

    # -- errors ---------------------------------------------------------------------------

    def _raise_for_failure(self, result: ExecResult, what: str) -> None:
        if result.ok:
            return
        text = f"{result.stdout}\n{result.stderr}"
        if _LOCK.search(text):
            raise PackageManagerLocked(
                f"apt: lock still held after {self.lock_timeout}s while {what}", output=text
            )
        raise PackageManagerError(
            f"apt failed while {what} (exit {result.exit_code})", code="apt_failed", output=text
        )


def _refuse_half_done(configured: dict[str, str], updates: dict[str, PendingUpdate], not_fully: int) -> None:
    """A simulation that configures packages it does not install, or says "N not fully installed or
    removed": an earlier dpkg run was interrupted. That is not "nothing to do"."""
    half = {name: version for name, version in configured.items() if name not in updates}
    if not half and not not_fully:
        return
    problems = tuple(f"{name} {version} is not fully configured" for name, version in half.items())
    if not_fully:
        problems += (f"{not_fully} not fully installed or removed",)
    raise PackageDatabaseInconsistent(
        "apt: the package database is half-done (an interrupted or failed dpkg run)", problems=problems
    )


def _half_states(text: str) -> list[str]:
    """``${db:Status-Abbrev}\t${Package}\t${Version}`` lines of packages not in a settled state."""
    found = []
    for line in text.splitlines():
        abbrev, _, rest = line.partition("\t")
        name, _, version = rest.partition("\t")
        if len(abbrev) < 2 or not name:
            continue
        state = _HALF_STATES.get(abbrev[1])
        if state is None and abbrev[1] not in "nci":
            state = f"in state {abbrev!r}"
        if state is None and abbrev[2:3] == "R":
            state = "reinst-required"
        if state is not None:
            found.append(f"{name} {version.strip()} is {state}")
    return found


def _strip_arch(name: str) -> str:
    return name.split(":", 1)[0]


__all__ = ["Apt", "is_security_origin"]
