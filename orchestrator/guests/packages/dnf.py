"""dnf (RHEL 8+, Fedora, Rocky, Alma, Oracle, Amazon Linux 2023): command builders and parsers.

Listing runs several dnf queries in one shell command, each in a ``### patchwave:`` section:
``check-update`` (candidates; exit 100 = updates pending), ``updateinfo list --updates`` (advisory
id and type/severity per package: ``RHSA-2024:1234 Important/Sec. openssl-1:3.0.7-25.el9.x86_64``),
``updateinfo info --security --updates`` (CVE ids per advisory) and ``rpm -qa`` (current versions).

With ``refresh=False`` (a dry run) every query runs ``--cacheonly`` (``-C``): dnf answers from the
metadata it already has, even expired, and downloads nothing; without cached metadata it refuses
("Cache-only enabled but no cache for ..."), reported as code ``metadata_not_cached``.

dnf waits for its lock forever by default. We run it with ``exit_on_lock=True`` (exit status 200 when
the lock is held) inside a shell loop that retries until the lock timeout, so the wait is bounded.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.guests.errors import PackageManagerError, PackageManagerLocked
from orchestrator.guests.packages.base import (
    ApplyOutcome,
    InstalledPackage,
    Integrity,
    PendingUpdate,
    UpdateSelection,
    dedupe,
    is_kernel_package,
    lock_holders_command,
    parse_lock_holders,
    restart_units_command,
    section_command,
    split_sections,
)
from orchestrator.guests.packages.rpm import (
    RPM_LOCKS,
    parse_nevra,
    parse_rpm_packages,
    parse_rpm_query,
    parse_rpm_versions,
    rpm_integrity_sections,
    rpm_packages_command,
    rpm_query_all_command,
    rpm_query_command,
    rpm_verify_command,
)
from orchestrator.model import PackageChange
from providers.base import ExecResult

LOCKED_EXIT = 200  # dnf's exit status for "lock held" (ProcessLockError / LockError)
_SEVERITY_RANK = {"critical": 4, "important": 3, "moderate": 2, "low": 1}
_CVE = re.compile(r"CVE-\d{4}-\d{4,}")
_TXN = re.compile(
    r"^\s*(?P<op>Upgrading|Upgraded|Installing|Cleanup|Erasing|Removing|Downgrading|Obsoleting|Reinstalling)"
    r"\s*: (?P<nevra>\S+)\s+\d+/\d+\s*$"
)
_INFO_KEY = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z ]*?)?\s*: (?P<value>.*)$")
_NO_CACHE = "Cache-only enabled but no cache for"  # dnf 4 and dnf 5, with -C and no cached metadata
_CHECK_SKIP = ("Last metadata expiration check", "Security:", "Waiting for process", "Failed to set locale")


@dataclass(frozen=True, slots=True)
class _Advisory:
    id: str
    kind: str  # "Important/Sec.", "bugfix", "enhancement", ...
    name: str
    arch: str

    @property
    def security(self) -> bool:
        return self.kind.endswith("/Sec.") or self.kind.lower() == "security"

    @property
    def severity(self) -> str:
        sev = self.kind.split("/", 1)[0] if self.kind.endswith("/Sec.") else ""
        return "" if sev.lower() in ("unknown", "none") else sev


#: The processes that take rpm's lock on dnf/yum systems.
DNF_PROCESSES = ("dnf", "dnf5", "yum", "rpm", "microdnf", "dnf-automatic")


class Dnf:
    name = "dnf"

    def __init__(self, *, lock_timeout: float = 600, root: str = "", refresh: bool = True) -> None:
        self.lock_timeout = int(lock_timeout)
        self.root = root  # an installroot (offline image); "" = the running system
        self.refresh = refresh  # False: list from the cached metadata only (-C), never download it

    # -- builders -------------------------------------------------------------------------

    def _prelude(self) -> str:
        root = f" --installroot={shlex.quote(self.root)}" if self.root else ""
        t = self.lock_timeout
        return (
            "pw_dnf() { pw_end=$(( $(date +%s) + " + str(t) + " )); while :; do"
            f' dnf{root} --setopt=exit_on_lock=True "$@"; pw_rc=$?;'
            f' [ "$pw_rc" -ne {LOCKED_EXIT} ] && return "$pw_rc";'
            f' [ "$(date +%s)" -ge "$pw_end" ] && {{ echo "patchwave: dnf lock still held after {t}s" >&2;'
            f" return {LOCKED_EXIT}; }}; sleep 5; done; }}; "
        )

    def list_updates_command(self) -> str:
        fresh, cached = ("--refresh ", "") if self.refresh else ("-C ", "-C ")
        return self._prelude() + "; ".join(
            [
                section_command("check-update", f"pw_dnf -q {fresh}check-update"),
                section_command("updateinfo-list", f"pw_dnf -q {cached}updateinfo list --updates"),
                section_command("updateinfo-info", f"pw_dnf -q {cached}updateinfo info --security --updates"),
                section_command("rpm", rpm_query_all_command(root=self.root)),
            ]
        )

    def apply_command(self, selection: UpdateSelection) -> str:
        if selection.mode == "all":
            return self._prelude() + "pw_dnf -y upgrade"
        if selection.mode == "security":
            return self._prelude() + "pw_dnf -y upgrade --security"
        if selection.mode == "packages":  # `upgrade NAME` upgrades an installed package, installs nothing
            return (
                self._prelude() + "pw_dnf -y upgrade " + " ".join(shlex.quote(n) for n in selection.packages)
            )
        for pin in selection.pins:
            if parse_nevra(pin) is None:
                raise PackageManagerError(
                    f"dnf pin {pin!r} is not a NEVRA", code="invalid_selection", output=pin
                )
        return self._prelude() + "pw_dnf -y install " + " ".join(shlex.quote(p) for p in selection.pins)

    def install_command(self, names: Sequence[str]) -> str:
        """Install ``names`` when missing (dnf leaves installed ones as they are)."""
        return self._prelude() + "pw_dnf -y install " + " ".join(shlex.quote(n) for n in names)

    def reboot_required_command(self) -> str:
        return (
            "if command -v needs-restarting >/dev/null 2>&1; then "
            + section_command("needs-restarting", "needs-restarting -r")
            + "; elif dnf -q needs-restarting --help >/dev/null 2>&1; then "
            + section_command("needs-restarting", "dnf -q needs-restarting -r")
            + "; else echo '### patchwave:needs-restarting-missing'; fi"
        )

    def installed_command(self, names: Sequence[str]) -> str:
        return rpm_query_command(names, root=self.root)

    def packages_command(self) -> str:
        return rpm_packages_command(root=self.root)

    def needs_restart_command(self) -> str:
        return (
            "if command -v needs-restarting >/dev/null 2>&1; then needs-restarting -s;"
            " elif dnf -q needs-restarting --help >/dev/null 2>&1; then dnf -q needs-restarting -s;"
            " else echo 'patchwave: needs-restarting not installed'; fi"
        )

    def integrity_command(self) -> str:
        root = f" --installroot={shlex.quote(self.root)}" if self.root else ""
        return "; ".join(
            [
                section_command("busy", lock_holders_command(RPM_LOCKS, DNF_PROCESSES)),
                section_command("rpm-verify", rpm_verify_command(root=self.root)),
                section_command("dnf-check", f"dnf{root} -q -C check"),
            ]
        )

    def restart_services_command(self, services: Sequence[str]) -> str:
        """``systemctl restart`` of the listed services, except those kept running (``KEEP_RUNNING``)."""
        return restart_units_command(services)

    # -- parsers --------------------------------------------------------------------------

    def parse_updates(self, result: ExecResult) -> list[PendingUpdate]:
        sections = split_sections(result.stdout)
        if "check-update" not in sections:
            raise PackageManagerError(
                "no check-update section in the output", code="parse", output=result.stdout
            )
        body, status = sections["check-update"]
        candidates = self._parse_check_update_text(body, status)
        advisories = _parse_updateinfo_list(self._section_ok(sections, "updateinfo-list"))
        cves = _parse_updateinfo_info(self._section_ok(sections, "updateinfo-info"))
        current = parse_rpm_query(self._section_ok(sections, "rpm"))
        updates = []
        for (name, arch), candidate in candidates.items():
            mine = [a for a in advisories if a.name == name and a.arch in (arch, "", "noarch")]
            security = [a for a in mine if a.security]
            severity = max(
                (a.severity for a in security), key=lambda s: _SEVERITY_RANK.get(s.lower(), 0), default=""
            )
            updates.append(
                PendingUpdate(
                    name=name,
                    current=current.get((name, arch), ""),
                    candidate=candidate,
                    security=bool(security),
                    severity=severity,
                    advisories=tuple(dict.fromkeys(a.id for a in mine)),
                    cves=tuple(dict.fromkeys(c for a in security for c in cves.get(a.id, ()))),
                    arch=arch,
                )
            )
        return updates

    def parse_check_update(self, result: ExecResult) -> list[PendingUpdate]:
        """A bare ``dnf check-update`` (no sections): candidates only, no security data."""
        candidates = self._parse_check_update_text(result.stdout + "\n" + result.stderr, result.exit_code)
        return [
            PendingUpdate(name=n, current="", candidate=c, security=False, arch=a)
            for (n, a), c in candidates.items()
        ]

    def parse_updateinfo_list(self, result: ExecResult) -> list[dict[str, object]]:
        self._raise_for_failure(result.exit_code, result.stdout + result.stderr, "listing advisories")
        return [
            {
                "id": a.id,
                "type": a.kind,
                "name": a.name,
                "arch": a.arch,
                "security": a.security,
                "severity": a.severity,
            }
            for a in _parse_updateinfo_list(result.stdout)
        ]

    def parse_updateinfo_info(self, result: ExecResult) -> dict[str, list[str]]:
        self._raise_for_failure(result.exit_code, result.stdout + result.stderr, "reading advisories")
        return {k: list(v) for k, v in _parse_updateinfo_info(result.stdout).items()}

    def parse_apply(self, result: ExecResult) -> ApplyOutcome:
        self._raise_for_failure(result.exit_code, result.stdout + "\n" + result.stderr, "applying updates")
        changes: list[PackageChange] = []
        olds: dict[tuple[str, str], str] = {}
        for line in result.stdout.splitlines():
            m = _TXN.match(line)
            nevra = parse_nevra(m["nevra"]) if m else None
            if m is None or nevra is None:
                continue
            key, op = (nevra.name, nevra.arch), m["op"]
            if op in ("Upgrading", "Installing", "Downgrading"):
                changes.append(PackageChange(nevra.name, olds.get(key, ""), nevra.evr))
            elif op in ("Cleanup", "Upgraded"):
                olds.setdefault(key, nevra.evr)
            elif op in ("Erasing", "Removing", "Obsoleting"):
                changes.append(PackageChange(nevra.name, nevra.evr, ""))
        # Cleanup lines come after the Upgrading lines; fill the old versions in now.
        filled = [
            PackageChange(c.name, c.old or next((v for (n, _), v in olds.items() if n == c.name), ""), c.new)
            for c in changes
        ]
        changed = dedupe(
            [c for c in filled if not (c.new == "" and any(d.name == c.name and d.new for d in filled))]
        )
        return ApplyOutcome(changed=changed, reboot_hint=any(is_kernel_package(c.name) for c in changed))

    def parse_reboot_required(self, result: ExecResult) -> bool:
        sections = split_sections(result.stdout)
        if "needs-restarting-missing" in sections:
            return False
        if "needs-restarting" in sections:
            body, status = sections["needs-restarting"]
        else:  # bare `needs-restarting -r` output
            body, status = result.stdout + "\n" + result.stderr, result.exit_code
        if status == 1 and "Reboot is required" in body or status == 1 and "Reboot should not" not in body:
            return True
        if status == 0:
            return False
        raise PackageManagerError(
            f"needs-restarting -r failed (exit {status})", code="dnf_failed", output=body
        )

    def parse_installed(self, result: ExecResult) -> dict[str, str]:
        # rpm -q exits with the number of packages not installed: not an error here.
        return parse_rpm_versions(result.stdout)

    def parse_packages(self, result: ExecResult) -> list[InstalledPackage]:
        if result.exit_code != 0:
            raise PackageManagerError(
                f"rpm failed while listing installed packages (exit {result.exit_code})",
                code="dnf_failed", output=f"{result.stdout}\n{result.stderr}",
            )  # fmt: skip
        return parse_rpm_packages(result.stdout)

    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]:
        names = [
            line.strip()
            for line in result.stdout.splitlines()
            if line.strip()
            and not line.startswith(("patchwave:", "Updating Subscription", "Last metadata"))
            and " " not in line.strip()
        ]
        return tuple(dict.fromkeys(names))

    def parse_restart_services(self, result: ExecResult) -> None:
        if not result.ok:
            raise PackageManagerError(
                f"systemctl restart failed (exit {result.exit_code})",
                code="dnf_failed",
                output=f"{result.stdout}\n{result.stderr}",
            )

    # -- helpers --------------------------------------------------------------------------

    def parse_integrity(self, result: ExecResult) -> Integrity:
        """``rpm -Va`` and ``dnf check`` (duplicates, missing requires, conflicts): any line is a problem."""
        sections, problems = rpm_integrity_sections(result.stdout, "dnf-check")
        body, status = sections["dnf-check"]
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        problems += [f"dnf check: {line}" for line in lines]
        if status not in (0, None) and not lines:
            problems.append(f"dnf check could not run (exit {status})")
        return Integrity(busy=parse_lock_holders(sections["busy"][0]), problems=tuple(problems))

    def _section_ok(self, sections: dict[str, tuple[str, int | None]], name: str) -> str:
        body, status = sections.get(name, ("", 0))
        self._raise_for_failure(status, body, name)
        return body

    def _parse_check_update_text(self, text: str, status: int | None) -> dict[tuple[str, str], str]:
        if status not in (0, 100):
            self._raise_for_failure(status, text, "checking for updates")
        found: dict[tuple[str, str], str] = {}
        pending: list[str] = []
        for line in text.splitlines():
            if line.startswith("Obsoleting Packages"):
                break
            if not line.strip() or line.startswith(_CHECK_SKIP):
                continue
            tokens = pending + line.split()
            if len(tokens) < 3 and "." in tokens[0]:
                pending = tokens  # a long name wrapped onto its own line
                continue
            pending = []
            if len(tokens) == 3 and "." in tokens[0]:
                name, _, arch = tokens[0].rpartition(".")
                found[(name, arch)] = tokens[1]
        if status == 100 and not found:
            raise PackageManagerError(
                "check-update reported updates but none could be parsed", code="parse", output=text
            )
        return found

    def _raise_for_failure(self, status: int | None, text: str, what: str) -> None:
        if status == 0:
            return
        if status == LOCKED_EXIT:
            raise PackageManagerLocked(
                f"dnf: lock still held after {self.lock_timeout}s while {what}", output=text
            )
        if not self.refresh and _NO_CACHE in text:
            raise PackageManagerError(
                f"dnf has no cached metadata for {what} without a refresh",
                code="metadata_not_cached",
                output=text,
            )
        raise PackageManagerError(f"dnf failed while {what} (exit {status})", code="dnf_failed", output=text)


def _parse_updateinfo_list(text: str) -> list[_Advisory]:
    found = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith(("Last", "Updates", "Waiting")):
            continue
        if parts[0] in ("i", "I") and len(parts) >= 4:  # "--all" marks installed advisories
            parts = parts[1:]
        nevra = parse_nevra(parts[2])
        if nevra is None:
            continue
        found.append(_Advisory(id=parts[0], kind=parts[1], name=nevra.name, arch=nevra.arch))
    return found


def _parse_updateinfo_info(text: str) -> dict[str, tuple[str, ...]]:
    """``updateinfo info`` blocks -> {advisory id: CVE ids}."""
    result: dict[str, list[str]] = {}
    current: str | None = None
    key = ""
    for line in text.splitlines():
        m = _INFO_KEY.match(line)
        if m is None:
            continue
        key = (m["key"] or key).strip()
        value = m["value"].strip()
        if key == "Update ID":
            current = value
            result.setdefault(current, [])
        elif key == "CVEs" and current is not None:
            result[current].extend(_CVE.findall(value))
    return {k: tuple(dict.fromkeys(v)) for k, v in result.items()}
