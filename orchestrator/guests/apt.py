"""apt (Debian, Ubuntu): command builders and output parsers.

* Pending updates come from ``apt-get -s upgrade --with-new-pkgs`` ``Inst`` lines, whose origin
  (``Label:Version/Archive``, e.g. ``Debian-Security:12/stable-security``) marks security updates;
  ``apt list --upgradable`` output is understood as well. apt reports no severity or advisory ids.
* Everything runs noninteractively with the safe conffile policy (keep changed conffiles, take
  new defaults for untouched ones) and waits for the dpkg lock (``DPkg::Lock::Timeout``) instead
  of failing at once.
* Security-only has no apt switch: the command simulates the upgrade, keeps the packages whose
  candidate comes from a security archive and installs exactly those ``pkg=version`` pins.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from providers.base import ExecResult

from .errors import PackageManagerError, PackageManagerLocked
from .packages import (
    ApplyOutcome,
    PackageChange,
    PendingUpdate,
    UpdateSelection,
    dedupe,
    is_kernel_package,
)

# "Inst name [old] (new Origin:Ver/archive, Origin2:Ver/archive2 [arch]) [extra]"
_INST = re.compile(
    r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]*)\])? \((?P<new>\S+)(?P<origins>[^()\[]*)(?:\[(?P<arch>[^\]]*)\])?\)"
)
# "name/suite1,suite2 version arch [upgradable from: old]"
_LISTED = re.compile(
    r"^(?P<name>[^/\s]+)/(?P<suites>\S+) (?P<new>\S+) (?P<arch>\S+) \[upgradable from: (?P<old>[^\]]+)\]"
)
_UNPACK = re.compile(r"^Unpacking (?P<name>\S+) \((?P<new>[^)]+)\)(?: over \((?P<old>[^)]+)\))? \.\.\.")
_REMOVE = re.compile(r"^Removing (?P<name>\S+) \((?P<old>[^)]+)\) \.\.\.")
_LOCK = re.compile(
    r"Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock the administration directory"
    r"|Unable to lock directory /var/lib/apt/lists"
)
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]*(:[A-Za-z0-9-]+)?=[A-Za-z0-9.+~:_-]+$")
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
        for pin in selection.pins:
            if not _PIN.match(pin):
                raise PackageManagerError(
                    f"apt pin {pin!r} is not 'package=version'", code="invalid_selection", output=pin
                )
        return f"{base} install " + " ".join(shlex.quote(p) for p in selection.pins)

    def reboot_required_command(self) -> str:
        return (
            "if [ -e /var/run/reboot-required ]; then echo 'reboot-required: yes';"
            " sed 's/^/reboot-required-pkg: /' /var/run/reboot-required.pkgs 2>/dev/null;"
            " else echo 'reboot-required: no'; fi"
        )

    def installed_command(self, names: Sequence[str]) -> str:
        fmt = shlex.quote("${Package}\t${Version}\t${db:Status-Abbrev}\n")
        return f"dpkg-query -W -f={fmt} -- " + " ".join(shlex.quote(n) for n in names)

    def needs_restart_command(self) -> str:
        return (
            "if command -v needrestart >/dev/null 2>&1; then needrestart -b -r l;"
            " else echo 'patchwave: needrestart not installed'; fi"
        )

    # -- parsers --------------------------------------------------------------------------

    def parse_updates(self, result: ExecResult) -> list[PendingUpdate]:
        self._raise_for_failure(result, "listing updates")
        updates: dict[str, PendingUpdate] = {}
        for line in result.stdout.splitlines():
            if m := _INST.match(line):
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
        return list(updates.values())

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

    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]:
        found: list[str] = []
        for line in result.stdout.splitlines():
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "NEEDRESTART-SVC" and value:
                found.append(value)
            elif key == "NEEDRESTART-KSTA" and value in ("2", "3"):
                found.append("kernel")
        return tuple(dict.fromkeys(found))

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


def _strip_arch(name: str) -> str:
    return name.split(":", 1)[0]


__all__ = ["Apt", "is_security_origin"]
