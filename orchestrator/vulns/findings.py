"""One machine's vulnerability findings: every feed matched against what it has installed and pending.

Input: the guest's :class:`~orchestrator.guests.osinfo.OsInfo`, its installed packages
(:class:`InstalledPackage`: binary name, version, and the source package where the distribution
names advisories by source, as Debian and Ubuntu do), its pending updates
(:class:`~orchestrator.guests.packages.base.PendingUpdate`, whose dnf/zypper advisories carry CVEs
and a severity) and the loaded :class:`~orchestrator.vulns.feeds.Feeds`.

Output: one :class:`Finding` per (CVE, installed package), KEV first, then by severity and CVSS.
:class:`InstalledPackage` is the guest layer's (``PackageManager.parse_packages``), re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import InstalledPackage, PendingUpdate
from orchestrator.vulns import debian_tracker, severity
from orchestrator.vulns.ecosystems import Scope, scope_for
from orchestrator.vulns.feeds import Feeds
from orchestrator.vulns.osv import OsvRecord, affected_by, is_withdrawn
from orchestrator.vulns.versions import Ordering, at_least, compare, ordering_for


def installed_from(
    versions: Mapping[str, str], sources: Mapping[str, str] | None = None
) -> tuple[InstalledPackage, ...]:
    """From ``PackageManager.parse_installed`` ({name: version}) and, on dpkg, {binary: source}."""
    sources = sources or {}
    return tuple(InstalledPackage(n, v, sources.get(n, "")) for n, v in sorted(versions.items()))


@dataclass(frozen=True, slots=True)
class Finding:
    cve: str
    package: str  # the installed binary package
    installed: str
    fixed_version: str  # "" when the distribution has no fix (yet)
    severity: str  # critical | important | moderate | low | unrated
    cvss_score: float | None
    kev: bool
    kev_due: str  # KEV dueDate, "" when not in KEV
    sources: tuple[str, ...]  # OSV ids, DSA/USN/ALSA ids, "debian-tracker", dnf/zypper advisory ids
    published: str  # earliest publication date of the sources, "" when unknown
    days_since_release: int | None
    fix_available: bool  # a pending candidate >= fixed_version
    source_package: str = ""
    kev_ransomware: bool = False
    note: str = ""  # e.g. the tracker's "no DSA: Minor issue (postponed)"


def sort_key(f: Finding) -> tuple[bool, int, float, str, str]:
    """KEV first, then severity, then CVSS score, then CVE id and package (deterministic)."""
    return (not f.kev, -severity.rank(f.severity), -(f.cvss_score or -1.0), f.cve, f.package)


def assess(os_info: OsInfo, installed: Iterable[InstalledPackage], pending: Iterable[PendingUpdate],
           feeds: Feeds, *, today: date, ubuntu_pro: bool = False) -> tuple[Finding, ...]:  # fmt: skip
    """The findings of one machine (see the module docstring); empty for a distribution no feed covers."""
    scope = scope_for(os_info, ubuntu_pro=ubuntu_pro)
    pending = tuple(pending)
    packages = tuple(installed)
    hits: list[Finding] = list(_native(pending))
    if scope is not None:
        hits += _osv(scope, packages, feeds.osv)
        hits += _tracker(scope, packages, feeds.tracker)
    ordering = ordering_for(os_info)
    done = [_finish(f, pending, feeds, ordering, today) for f in _merge(hits, ordering)]
    return tuple(sorted(done, key=sort_key))


__all__ = ["Finding", "InstalledPackage", "assess", "installed_from", "sort_key"]


def _hit(cve: str, pkg: InstalledPackage, fixed: str, rating: str, score: float | None, source: str,
         published: str = "", note: str = "") -> Finding:  # fmt: skip
    return Finding(cve=cve, package=pkg.name, installed=pkg.version, fixed_version=fixed, severity=rating,
                   cvss_score=score, kev=False, kev_due="", sources=(source,), published=published,
                   days_since_release=None, fix_available=False, source_package=pkg.source, note=note)  # fmt: skip


def _record_rating(record: OsvRecord, cve: str, ratings: Mapping[str, str], entry_rating: str,
                   score: float | None) -> str:  # fmt: skip
    """The distribution's own rating where it gives one, else the CVSS score's bucket."""
    words = [ratings.get(cve, ""), entry_rating, record.rating, *record.words]
    rated = severity.worst(*(severity.bucket(w) for w in words if w))
    return rated if rated != "unrated" else severity.score_bucket(score)


def _osv(scope: Scope, packages: Sequence[InstalledPackage], records: Sequence[OsvRecord]) -> list[Finding]:
    by_name: dict[str, list[InstalledPackage]] = {}
    for pkg in packages:
        by_name.setdefault(pkg.source_name, []).append(pkg)
        if pkg.source:
            by_name.setdefault(pkg.name, []).append(pkg)
    hits = []
    for record in records:
        if is_withdrawn(record) or not record.cves:
            continue
        scores = [s for v in record.vectors if (s := severity.cvss_score(v)) is not None]
        score = max(scores, default=None)
        for entry in record.affected:
            if not scope.matches(entry.ecosystem):
                continue
            targets = {id(p): p for n in (entry.name, *entry.binaries) for p in by_name.get(n, ())}
            for pkg in targets.values():
                by_source = pkg.source_name == entry.name
                version = (pkg.source_version or pkg.version) if by_source else pkg.version
                hit, fixed = affected_by(entry, version, scope.ordering)
                if not hit:
                    continue
                ratings = dict(entry.cve_ratings)
                for cve in record.cves:
                    rating = _record_rating(record, cve, ratings, entry.rating, score)
                    hits.append(_hit(cve, pkg, fixed, rating, score, record.id, record.published[:10]))
    return hits


def _tracker(scope: Scope, packages: Sequence[InstalledPackage], entries: Sequence[debian_tracker.TrackerEntry]) -> list[Finding]:  # fmt: skip
    if not scope.tracker_release:
        return []
    by_source: dict[str, list[InstalledPackage]] = {}
    for pkg in packages:
        by_source.setdefault(pkg.source_name, []).append(pkg)
    hits = []
    for entry in entries:
        if entry.release != scope.tracker_release:
            continue
        for pkg in by_source.get(entry.package, ()):
            hit, fixed = debian_tracker.affects(entry, pkg.source_version or pkg.version)
            if hit:
                rating = severity.bucket(entry.urgency)
                hits.append(_hit(entry.cve, pkg, fixed, rating, None, "debian-tracker", note=entry.note))
    return hits


def _native(pending: Sequence[PendingUpdate]) -> list[Finding]:
    """dnf updateinfo / zypper patches: each CVE of a pending security update, fixed by its candidate."""
    hits = []
    for u in pending:
        if not u.security:
            continue
        pkg = InstalledPackage(u.name, u.current)
        for cve in u.cves:
            for advisory in u.advisories or ("updateinfo",):
                hits.append(_hit(cve, pkg, u.candidate, severity.bucket(u.severity or ""), None, advisory))
    return hits


def _merge(hits: Sequence[Finding], ordering: Ordering | None) -> list[Finding]:
    """One finding per (CVE, package): union of sources, worst rating, highest score and fix."""
    merged: dict[tuple[str, str], Finding] = {}
    for h in hits:
        prev = merged.get((h.cve, h.package))
        if prev is None:
            merged[(h.cve, h.package)] = h
            continue
        scores = [s for s in (prev.cvss_score, h.cvss_score) if s is not None]
        merged[(h.cve, h.package)] = replace(
            prev,
            fixed_version=_higher(prev.fixed_version, h.fixed_version, ordering),
            severity=severity.worst(prev.severity, h.severity),
            cvss_score=max(scores, default=None),
            sources=tuple(dict.fromkeys(prev.sources + h.sources)),
            published=min((p for p in (prev.published, h.published) if p), default=""),
            installed=prev.installed or h.installed,
            note=prev.note or h.note,
        )
    return list(merged.values())


def _higher(one: str, two: str, ordering: Ordering | None) -> str:
    """The later of two fixed versions (a fix for every source); "" only when neither knows one."""
    if not one or not two or ordering is None:
        return one or two
    return two if compare(ordering, two, one) > 0 else one


def _finish(f: Finding, pending: Sequence[PendingUpdate], feeds: Feeds, ordering: Ordering | None,
            today: date) -> Finding:  # fmt: skip
    kev = feeds.kev(f.cve)
    candidate = next((u.candidate for u in pending if u.name == f.package and u.candidate), "")
    fix = bool(f.fixed_version and candidate and ordering and at_least(ordering, candidate, f.fixed_version))
    days = _days_since(f.published, today)
    return replace(f, kev=kev is not None, kev_due=kev.due_date if kev else "",
                   kev_ransomware=bool(kev and kev.ransomware), fix_available=fix, days_since_release=days)  # fmt: skip


def _days_since(published: str, today: date) -> int | None:
    try:
        return (today - date.fromisoformat(published[:10])).days
    except ValueError:
        return None
