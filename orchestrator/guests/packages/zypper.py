"""zypper (SLES, openSUSE): command builders and parsers.

Listing runs, each in a ``### patchwave:`` section: ``--xmlout list-updates`` (packages with
``edition`` and, on zypper >= 1.14, ``edition-old``), ``--xmlout list-patches`` (patches with category,
severity and CVE/bugzilla issues), ``info -t patch <needed patches>`` (which packages each patch
updates: its ``Conflicts`` list) and ``rpm -qa`` (current versions for old zyppers).
Applying uses ``--xmlout`` too, whose install summary names old and new editions.

With ``refresh=False`` (a dry run) every call runs with ``--no-refresh``: zypper uses the metadata
it has and never refreshes a repository; one it then skips (exit 106: no usable local metadata)
makes the listing incomplete, reported as code ``metadata_not_cached``.

The zypp lock is waited for by libzypp itself: ``ZYPP_LOCK_TIMEOUT=<seconds>``. Exit statuses are
zypper's documented ones: 7 = locked, 102 = reboot needed, 103 = the package manager itself was
updated (run again), 106 = some repositories were skipped (results may be partial).
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TypedDict

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
    ARCHES,
    RPM_LOCKS,
    parse_nevra,
    parse_rpm_packages,
    parse_rpm_versions,
    rpm_integrity_sections,
    rpm_packages_command,
    rpm_query_all_command,
    rpm_query_command,
    rpm_verify_command,
)
from orchestrator.model import PackageChange
from providers.base import ExecResult

EXIT_LOCKED = 7
EXIT_REBOOT_NEEDED = 102
EXIT_RESTART_ZYPPER = 103
EXIT_REPOS_SKIPPED = 106
_OK_APPLY = {0, EXIT_REBOOT_NEEDED, EXIT_RESTART_ZYPPER, EXIT_REPOS_SKIPPED}
_SEVERITY_RANK = {"critical": 4, "important": 3, "moderate": 2, "low": 1}
_CONFLICT = re.compile(r"^\s*(?P<name>[^\s<>=]+)\s*(<|<=|=)\s*(?P<version>\S+)\s*$")
_LOCK_TEXT = "System management is locked"


class _Patch(TypedDict):
    """One ``<update kind="patch">`` of ``zypper --xmlout list-patches``."""

    name: str
    category: str
    severity: str
    status: str
    cves: tuple[str, ...]


_VERIFIED = "Dependencies of all installed packages are satisfied."
_ZYPPER_NOISE = ("Loading repository data...", "Reading installed packages...")


class Zypper:
    name = "zypper"

    def __init__(self, *, lock_timeout: float = 600, root: str = "", refresh: bool = True) -> None:
        self.lock_timeout = int(lock_timeout)
        self.root = root  # an alternative root (offline image); "" = the running system
        self.refresh = refresh  # False: never refresh a repository (--no-refresh)

    # -- builders -------------------------------------------------------------------------

    def _zypper(self) -> str:
        root = f" --root {shlex.quote(self.root)}" if self.root else ""
        cached = "" if self.refresh else " --no-refresh"
        return f"ZYPP_LOCK_TIMEOUT={self.lock_timeout} zypper{root} --non-interactive{cached}"

    def list_updates_command(self) -> str:
        z = self._zypper()
        names = (
            "pw_names=$(printf '%s\\n' \"$pw_lp\" | grep -o '<update [^>]*>' | grep 'kind=\"patch\"'"
            ' | sed \'s/.* name="\\([^"]*\\)".*/\\1/\')'
        )
        return "; ".join(
            [
                "set -f",
                section_command("list-updates", f"{z} --xmlout list-updates"),
                f"pw_lp=$({z} --xmlout list-patches 2>&1)",
                "pw_rc=$?",
                "echo '### patchwave:list-patches'",
                "printf '%s\\n' \"$pw_lp\"",
                'echo "### patchwave:exit=$pw_rc"',
                names,
                'if [ -n "$pw_names" ]; then '
                + section_command("patch-info", f"{z} info -t patch $pw_names")
                + "; fi",
                section_command("rpm", rpm_query_all_command(root=self.root)),
            ]
        )

    def apply_command(self, selection: UpdateSelection) -> str:
        z = f"{self._zypper()} --xmlout"
        if selection.mode == "all":
            return f"{z} update --auto-agree-with-licenses"
        if selection.mode == "security":
            patch = f"{z} patch --category security --with-interactive --auto-agree-with-licenses"
            # 103: the patch updated zypper itself; the remaining patches need a second run.
            return f'{patch}; pw_rc=$?; if [ "$pw_rc" -eq {EXIT_RESTART_ZYPPER} ]; then {patch}; pw_rc=$?; fi; exit "$pw_rc"'
        if selection.mode == "packages":  # `update NAME` updates installed packages only
            names = " ".join(shlex.quote(n) for n in selection.packages)
            return f"{z} update --auto-agree-with-licenses {names}"
        caps = []
        for pin in selection.pins:
            nevra = parse_nevra(pin)
            if nevra is None:
                raise PackageManagerError(
                    f"zypper pin {pin!r} is not a NEVRA", code="invalid_selection", output=pin
                )
            caps.append(
                f"{nevra.name}.{nevra.arch}={nevra.evr}" if nevra.arch else f"{nevra.name}={nevra.evr}"
            )
        return f"{z} install --auto-agree-with-licenses " + " ".join(shlex.quote(c) for c in caps)

    def reboot_required_command(self) -> str:
        return (
            section_command("needs-rebooting", f"{self._zypper()} needs-rebooting")
            + "; if [ -e /run/reboot-needed ] || [ -e /var/run/reboot-needed ]; then echo 'reboot-needed-file: yes'; fi"
        )

    def installed_command(self, names: Sequence[str]) -> str:
        return rpm_query_command(names, root=self.root)

    def packages_command(self) -> str:
        return rpm_packages_command(root=self.root)

    def needs_restart_command(self) -> str:
        return f"{self._zypper()} ps -s"

    def integrity_command(self) -> str:
        zypp_lock = (
            'p=$(cat /run/zypp.pid 2>/dev/null); [ -n "$p" ] && kill -0 "$p" 2>/dev/null'
            ' && echo "lock /run/zypp.pid pid $p"'
        )
        busy = f"{lock_holders_command(RPM_LOCKS, ('zypper', 'rpm'))}; {zypp_lock}; true"
        return "; ".join(
            [
                section_command("busy", busy),
                section_command("rpm-verify", rpm_verify_command(root=self.root)),
                section_command("verify", f"{self._zypper()} --no-refresh verify --dry-run"),
            ]
        )

    def restart_services_command(self, services: Sequence[str]) -> str:
        """``systemctl restart`` of the listed services, except those kept running (``KEEP_RUNNING``)."""
        return restart_units_command(services)

    # -- parsers --------------------------------------------------------------------------

    def parse_updates(self, result: ExecResult) -> list[PendingUpdate]:
        sections = split_sections(result.stdout)
        if "list-updates" not in sections:
            raise PackageManagerError(
                "no list-updates section in the output", code="parse", output=result.stdout
            )
        packages = self._packages(*sections["list-updates"])
        patches = self._patches(*sections.get("list-patches", ("", 0)))
        owners = _parse_patch_info(sections.get("patch-info", ("", 0))[0])
        current = parse_rpm_versions(sections.get("rpm", ("", 0))[0])
        updates = []
        for pkg in packages:
            mine = [patches[p] for p in owners.get(pkg["name"], ()) if p in patches]
            security = [p for p in mine if p["category"] == "security"]
            updates.append(
                PendingUpdate(
                    name=pkg["name"],
                    current=pkg["old"] or current.get(pkg["name"], ""),
                    candidate=pkg["new"],
                    security=bool(security),
                    severity=max(
                        (p["severity"] for p in security), key=lambda s: _SEVERITY_RANK.get(s, 0), default=""
                    ),
                    advisories=tuple(p["name"] for p in mine),
                    cves=tuple(dict.fromkeys(c for p in security for c in p["cves"])),
                    arch=pkg["arch"],
                )
            )
        return updates

    def parse_list_updates(self, result: ExecResult) -> list[PendingUpdate]:
        """A bare ``zypper [--xmlout] list-updates`` (XML or the text table): packages only."""
        return [
            PendingUpdate(
                name=p["name"], current=p["old"], candidate=p["new"], security=False, arch=p["arch"]
            )
            for p in self._packages(result.stdout + "\n" + result.stderr, result.exit_code)
        ]

    def parse_list_patches(self, result: ExecResult) -> list[dict[str, object]]:
        """A bare ``zypper --xmlout list-patches``: the patches with category, severity and CVEs."""
        return [
            {**p, "cves": list(p["cves"])}
            for p in self._patches(result.stdout + "\n" + result.stderr, result.exit_code).values()
        ]

    def parse_patch_info(self, result: ExecResult) -> dict[str, list[str]]:
        self._raise_for_failure(result.exit_code, result.stdout + result.stderr, "reading patch info", ok={0})
        return {pkg: list(p) for pkg, p in _parse_patch_info(result.stdout).items()}

    def parse_apply(self, result: ExecResult) -> ApplyOutcome:
        text = result.stdout + "\n" + result.stderr
        self._raise_for_failure(result.exit_code, text, "applying updates", ok=_OK_APPLY)
        root = _xml(text)
        changes: list[PackageChange] = []
        if root is not None:
            for summary in root.iter("install-summary"):
                for group in summary:
                    for s in group.iter("solvable"):
                        if s.get("type", "package") != "package":
                            continue
                        name, new, old = s.get("name", ""), s.get("edition", ""), s.get("edition-old", "")
                        if group.tag == "to-remove":
                            changes.append(PackageChange(name, new, ""))
                        elif group.tag in ("to-upgrade", "to-downgrade", "to-install", "to-reinstall"):
                            changes.append(PackageChange(name, old, new))
        changed = dedupe(changes)
        reboot = result.exit_code == EXIT_REBOOT_NEEDED or any(is_kernel_package(c.name) for c in changed)
        return ApplyOutcome(changed=changed, reboot_hint=reboot)

    def parse_reboot_required(self, result: ExecResult) -> bool:
        sections = split_sections(result.stdout)
        body, status = sections.get("needs-rebooting", (result.stdout + result.stderr, result.exit_code))
        if "reboot-needed-file: yes" in result.stdout or status == EXIT_REBOOT_NEEDED:
            return True
        if status == 0:
            return False
        if status == EXIT_LOCKED:
            raise PackageManagerLocked("zypper: lock held while checking needs-rebooting", output=body)
        if status in (1, 2, 3):  # zypper too old to know needs-rebooting: only the file counts
            return False
        raise PackageManagerError(
            f"zypper needs-rebooting failed (exit {status})", code="zypper_failed", output=body
        )

    def parse_installed(self, result: ExecResult) -> dict[str, str]:
        return parse_rpm_versions(result.stdout)

    def parse_packages(self, result: ExecResult) -> list[InstalledPackage]:
        if result.exit_code != 0:
            raise PackageManagerError(
                f"rpm failed while listing installed packages (exit {result.exit_code})",
                code="zypper_failed", output=f"{result.stdout}\n{result.stderr}",
            )  # fmt: skip
        return parse_rpm_packages(result.stdout)

    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]:
        """``zypper ps -s``: the Service column, or the Command where no service is named."""
        names: list[str] = []
        header: list[str] | None = None
        for line in result.stdout.splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) < 5:
                continue
            if header is None:
                header = [c.lower() for c in cells]
                continue
            row = dict(zip(header, cells, strict=False))
            name = row.get("service") or row.get("command", "").replace(" (deleted)", "")
            if name and not set(name) <= {"-", "+"}:
                names.append(name)
        return tuple(dict.fromkeys(names))

    def parse_restart_services(self, result: ExecResult) -> None:
        if not result.ok:
            raise PackageManagerError(
                f"systemctl restart failed (exit {result.exit_code})",
                code="zypper_failed",
                output=f"{result.stdout}\n{result.stderr}",
            )

    # -- helpers --------------------------------------------------------------------------

    def parse_integrity(self, result: ExecResult) -> Integrity:
        """``rpm -Va`` lines and ``zypper verify --dry-run``: satisfied, or what it would fix."""
        sections, problems = rpm_integrity_sections(result.stdout, "verify")
        body, status = sections["verify"]
        if _VERIFIED not in body or status not in (0, None):
            lines = [line.strip() for line in body.splitlines() if line.strip() and line not in _ZYPPER_NOISE]
            problems.append("zypper verify: " + (" ".join(lines)[-600:] or f"exit {status}"))
        return Integrity(busy=parse_lock_holders(sections["busy"][0]), problems=tuple(problems))

    def _packages(self, text: str, status: int | None) -> list[dict[str, str]]:
        if not self.refresh and status == EXIT_REPOS_SKIPPED:
            raise PackageManagerError(
                "zypper skipped repositories without usable local metadata (listing without a refresh)",
                code="metadata_not_cached",
                output=text,
            )
        self._raise_for_failure(status, text, "listing updates", ok={0, EXIT_REPOS_SKIPPED})
        if "<stream" in text or "<?xml" in text:
            root = _xml(text)
            if root is None:
                raise PackageManagerError("zypper XML output is not well-formed", code="parse", output=text)
            return [
                {
                    "name": u.get("name", ""),
                    "new": u.get("edition", ""),
                    "old": u.get("edition-old", ""),
                    "arch": u.get("arch", ""),
                }
                for u in root.iter("update")
                if u.get("kind", "package") == "package" and u.get("name")
            ]
        return _parse_update_table(text)

    def _patches(self, text: str, status: int | None) -> dict[str, _Patch]:
        self._raise_for_failure(status, text, "listing patches", ok={0, 100, 101, EXIT_REPOS_SKIPPED})
        if not text.strip():
            return {}
        root = _xml(text)
        if root is None:
            raise PackageManagerError("zypper list-patches XML is not well-formed", code="parse", output=text)
        patches: dict[str, _Patch] = {}
        for u in root.iter("update"):
            if u.get("kind") != "patch" or not u.get("name"):
                continue
            cves = [i.get("id", "") for i in u.iter("issue") if i.get("type") == "cve" and i.get("id")]
            patches[u.get("name", "")] = {
                "name": u.get("name", ""),
                "category": u.get("category", ""),
                "severity": "" if u.get("severity", "") in ("none", "unspecified") else u.get("severity", ""),
                "status": u.get("status", ""),
                "cves": tuple(cves),
            }
        return patches

    def _raise_for_failure(self, status: int | None, text: str, what: str, *, ok: set[int]) -> None:
        if status in ok:
            return
        if status == EXIT_LOCKED or _LOCK_TEXT in text:
            raise PackageManagerLocked(
                f"zypper: lock still held after {self.lock_timeout}s while {what}", output=text
            )
        raise PackageManagerError(
            f"zypper failed while {what} (exit {status})", code="zypper_failed", output=text
        )


def _xml(text: str) -> ET.Element | None:
    """The ``<stream>`` document inside ``text`` (zypper may print other lines around it)."""
    start = text.find("<stream")
    end = text.rfind("</stream>")
    if start < 0 or end < start:
        return None
    body = text[start : end + len("</stream>")]
    if "<!DOCTYPE" in body or "<!ENTITY" in body:  # zypper never emits these; refuse entity tricks
        return None
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _parse_update_table(text: str) -> list[dict[str, str]]:
    """``zypper lu`` table: ``S | Repository | Name | Current Version | Available Version | Arch``."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4:
            continue
        if header is None:
            header = [c.lower() for c in cells]
            continue
        row = dict(zip(header, cells, strict=False))
        if set(cells[0]) <= {"-", "+"}:
            continue
        name = row.get("name", "")
        new = row.get("available version") or row.get("version", "")
        if name and new:
            rows.append(
                {"name": name, "new": new, "old": row.get("current version", ""), "arch": row.get("arch", "")}
            )
    return rows


def _parse_patch_info(text: str) -> dict[str, tuple[str, ...]]:
    """``zypper info -t patch`` blocks -> {package name: patches that update it} from ``Conflicts``."""
    owners: dict[str, list[str]] = {}
    patch = ""
    in_conflicts = False
    for line in text.splitlines():
        if line.startswith("Information for patch "):
            patch = line[len("Information for patch ") :].rstrip(":").strip()
            in_conflicts = False
            continue
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" ") and key.strip():
            in_conflicts = key.strip() == "Conflicts"
            entries = [] if value.strip().startswith("[") else [value]
        elif in_conflicts and line.startswith(" "):
            entries = [line]
        else:
            entries = []
            in_conflicts = in_conflicts and bool(line.strip())
        for entry in entries:
            m = _CONFLICT.match(entry)
            if m and patch:
                name, _, arch = m["name"].rpartition(".")
                pkg = name if arch in ARCHES and name else m["name"]
                owners.setdefault(pkg, [])
                if patch not in owners[pkg]:
                    owners[pkg].append(patch)
    return {k: tuple(v) for k, v in owners.items()}
