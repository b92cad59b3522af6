"""The Debian Security Tracker's JSON (https://security-tracker.debian.org/tracker/data/json).

Shape: ``{source package: {issue id: {description, scope, debianbug, releases: {codename: {status,
repositories: {suite: version}, fixed_version, urgency, nodsa, nodsa_reason}}}}}``. ``status`` is
``resolved`` (``fixed_version`` set; "0" = the release was never affected), ``open`` (no fix in the
release yet) or ``undetermined``. ``urgency`` is ``unimportant|low|medium|high`` (``**`` = taken from
NVD), ``not yet assigned`` or ``end-of-life``. ``nodsa``/``nodsa_reason`` say a fix will come by a
point release or not at all. Issue ids that are not CVEs (``TEMP-...``) are skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.osv import CVE_ID
from orchestrator.vulns.versions import VersionError, compare

STATUSES = ("resolved", "open", "undetermined")


@dataclass(frozen=True, slots=True)
class TrackerEntry:
    package: str  # source package
    cve: str
    release: str  # codename: bookworm, trixie, ...
    status: str  # resolved | open | undetermined
    fixed_version: str = ""
    urgency: str = ""
    nodsa: str = ""
    nodsa_reason: str = ""

    @property
    def note(self) -> str:
        if not self.nodsa:
            return ""
        return f"no DSA: {self.nodsa}" + (f" ({self.nodsa_reason})" if self.nodsa_reason else "")


def looks_like_tracker(data: Any) -> bool:
    """A JSON object of packages whose values are objects keyed by CVE/TEMP issue ids."""
    if not isinstance(data, Mapping) or not data or "vulnerabilities" in data or "id" in data:
        return False
    sample = next(iter(data.values()))
    return isinstance(sample, Mapping) and all(str(k).startswith(("CVE-", "TEMP-")) for k in list(sample)[:5])


def parse_tracker(
    data: Any, *, origin: str, releases: Collection[str] | None = None
) -> tuple[TrackerEntry, ...]:
    """Every (package, CVE, release) of the tracker JSON, or only those of ``releases`` (codenames)."""
    if not isinstance(data, Mapping):
        raise FeedError(origin, "not the Debian Security Tracker JSON: the top level must be an object")
    entries: list[TrackerEntry] = []
    for package, issues in data.items():
        if not isinstance(issues, Mapping):
            raise FeedError(
                origin, f"package {package!r}: expected an object of issues, got {type(issues).__name__}"
            )
        for cve, issue in issues.items():
            if CVE_ID.match(str(cve)) and isinstance(issue, Mapping):
                entries.extend(_entries(str(package), str(cve), issue.get("releases"), releases))
    return tuple(entries)


def _entries(package: str, cve: str, raw: Any, wanted: Collection[str] | None) -> list[TrackerEntry]:
    if not isinstance(raw, Mapping):  # the tracker writes [] for an issue with no release
        return []
    found = []
    for release, info in raw.items():
        if (wanted is not None and release not in wanted) or not isinstance(info, Mapping):
            continue
        found.append(
            TrackerEntry(
                package=package,
                cve=cve,
                release=str(release),
                status=str(info.get("status", "")),
                fixed_version=str(info.get("fixed_version") or ""),
                urgency=str(info.get("urgency") or ""),
                nodsa=str(info.get("nodsa") or ""),
                nodsa_reason=str(info.get("nodsa_reason") or ""),
            )
        )
    return found


def affects(entry: TrackerEntry, installed: str) -> tuple[bool, str]:
    """(is ``installed`` of the entry's package affected, the fixed version or "").

    ``open`` is affected (no fix yet); ``resolved`` is affected while ``installed`` < ``fixed_version``
    ("0": never affected); ``undetermined`` is not reported.
    """
    if entry.status == "open":
        return True, ""
    if entry.status != "resolved" or not entry.fixed_version or entry.fixed_version == "0":
        return False, ""
    try:
        return compare("dpkg", installed, entry.fixed_version) < 0, entry.fixed_version
    except VersionError:
        return False, ""


def compact(entries: Collection[TrackerEntry]) -> dict[str, Any]:
    """Entries back in the tracker's own shape (what the fact store caches, read by :func:`parse_tracker`)."""
    out: dict[str, Any] = {}
    for e in entries:
        info = {"status": e.status, "fixed_version": e.fixed_version, "urgency": e.urgency,
                "nodsa": e.nodsa, "nodsa_reason": e.nodsa_reason}  # fmt: skip
        release = out.setdefault(e.package, {}).setdefault(e.cve, {"releases": {}})["releases"]
        release[e.release] = {k: v for k, v in info.items() if v}
    return out
