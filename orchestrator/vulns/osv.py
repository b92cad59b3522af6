"""OSV records (the OpenSSF Vulnerability format, schema 1.x) and matching one installed version.

Read: ``id``, ``aliases``/``upstream``/``related`` (where the distributions put CVE ids), ``published``,
``modified``, ``withdrawn``, ``summary``, ``severity[]``, ``database_specific.severity``, and per
``affected[]``: ``package{ecosystem,name,purl}``, ``ranges[]{type,events}``, ``versions``,
``ecosystem_specific`` (Debian ``urgency``, Ubuntu ``ubuntu_priority`` and ``binaries``) and Ubuntu's
``database_specific.cves_map`` (a rating per CVE). Prose (``details``, ``references``) is not kept.

Matching follows the schema's evaluation rules for ``ECOSYSTEM`` ranges under the distribution's
version ordering; ``GIT`` ranges (commits) are ignored. :func:`compact` writes a record back as a
smaller valid OSV record (what the fact store caches), read again by :func:`parse_record`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.versions import Ordering, VersionError, compare

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")
_DISTRO_CVE = re.compile(r"^(?:UBUNTU|DEBIAN|ALPINE)-(CVE-\d{4}-\d{4,})$")
_SUMMARY_RATING = re.compile(r"^(Critical|Important|Moderate|Low):")
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # one of EVENT_KINDS
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM | SEMVER | GIT
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str
    name: str
    purl: str = ""
    ranges: tuple[Range, ...] = ()
    versions: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()  # binary packages built from ``name`` (Ubuntu, SUSE)
    rating: str = ""  # the distribution's word: Debian urgency, Ubuntu priority
    cve_ratings: tuple[tuple[str, str], ...] = ()  # (CVE, word) from Ubuntu's cves_map


@dataclass(frozen=True, slots=True)
class OsvRecord:
    id: str
    modified: str
    published: str = ""
    withdrawn: str = ""
    summary: str = ""
    aliases: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    severity: tuple[tuple[str, str], ...] = ()  # (type, score): CVSS_V3 vectors, "Ubuntu" words...
    rating: str = ""  # database_specific.severity, else the "Important:" of a Red Hat-style summary
    affected: tuple[Affected, ...] = ()

    @property
    def cves(self) -> tuple[str, ...]:
        """The CVE ids this record is about (its own id, aliases, upstream, related), in order."""
        found: list[str] = []
        for ident in (self.id, *self.aliases, *self.upstream, *self.related):
            m = _DISTRO_CVE.match(ident)
            cve = m.group(1) if m else ident
            if CVE_ID.match(cve) and cve not in found:
                found.append(cve)
        return tuple(found)

    @property
    def vectors(self) -> tuple[str, ...]:
        return tuple(score for kind, score in self.severity if kind.startswith("CVSS_"))

    @property
    def words(self) -> tuple[str, ...]:
        """Rating words in the record-level ``severity`` (e.g. Ubuntu's ``{"type": "Ubuntu"}``)."""
        return tuple(score for kind, score in self.severity if not kind.startswith("CVSS_"))


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _binaries(specific: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for item in specific.get("binaries") or ():
        if isinstance(item, Mapping) and "binary_name" in item:
            names.append(str(item["binary_name"]))
        elif isinstance(item, Mapping):  # SUSE: {"<product>": {"<binary>": "<arch>"}}
            for value in item.values():
                if isinstance(value, Mapping):
                    names.extend(str(k) for k in value)
    return tuple(dict.fromkeys(names))


def _cve_ratings(database: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    cves = (database.get("cves_map") or {}).get("cves") or ()
    ratings = []
    for cve in cves:
        words = [
            s.get("score", "") for s in cve.get("severity") or () if not s.get("type", "").startswith("CVSS")
        ]
        if cve.get("id") and words:
            ratings.append((str(cve["id"]), str(words[0])))
    return tuple(ratings)


def _range(raw: Mapping[str, Any], where: str) -> Range:
    events = []
    for event in raw.get("events") or ():
        kinds = [k for k in EVENT_KINDS if k in event]
        if len(kinds) != 1:
            raise FeedError(
                where, f"a range event must have exactly one of {EVENT_KINDS}, got {sorted(event)}"
            )
        events.append(Event(kinds[0], str(event[kinds[0]])))
    return Range(str(raw.get("type", "")), tuple(events))


def _affected(raw: Mapping[str, Any], where: str) -> Affected:
    package = raw.get("package") or {}
    specific = raw.get("ecosystem_specific") or {}
    database = raw.get("database_specific") or {}
    return Affected(
        ecosystem=str(package.get("ecosystem", "")),
        name=str(package.get("name", "")),
        purl=str(package.get("purl", "")),
        ranges=tuple(_range(r, where) for r in raw.get("ranges") or ()),
        versions=_strings(raw.get("versions")),
        binaries=_binaries(specific) if isinstance(specific, Mapping) else (),
        rating=str(specific.get("urgency") or specific.get("ubuntu_priority") or "") if isinstance(specific, Mapping) else "",
        cve_ratings=_cve_ratings(database) if isinstance(database, Mapping) else (),
    )  # fmt: skip


def parse_record(data: Any, *, origin: str) -> OsvRecord:
    """One OSV record (a decoded JSON object); ``origin`` names the file for errors."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str) or not data["id"]:
        raise FeedError(origin, 'not an OSV record: a JSON object with an "id" string is required')
    where = f"{origin} ({data['id']})"
    database = data.get("database_specific") or {}
    summary = str(data.get("summary") or "")
    rating = database.get("severity", "") if isinstance(database, Mapping) else ""
    if not rating and (m := _SUMMARY_RATING.match(summary)):
        rating = m.group(1)
    try:
        return OsvRecord(
            id=data["id"], modified=str(data.get("modified") or ""), published=str(data.get("published") or ""),
            withdrawn=str(data.get("withdrawn") or ""), summary=summary, aliases=_strings(data.get("aliases")),
            upstream=_strings(data.get("upstream")), related=_strings(data.get("related")),
            severity=tuple((str(s.get("type", "")), str(s.get("score", ""))) for s in data.get("severity") or ()),
            rating=str(rating or ""), affected=tuple(_affected(a, where) for a in data.get("affected") or ()),
        )  # fmt: skip
    except (AttributeError, TypeError) as exc:
        raise FeedError(where, f"not in the OSV schema ({exc})") from None


def is_withdrawn(record: OsvRecord) -> bool:
    """Withdrawn records are kept out of every match (Debian writes the zero time for "never")."""
    return bool(record.withdrawn) and not record.withdrawn.startswith("0001-01-01")


# -- matching -------------------------------------------------------------------------------


def _sort_events(events: Sequence[Event], ordering: Ordering) -> list[Event]:
    def cmp(a: Event, b: Event) -> int:
        if a.version == b.version:
            return 0
        if a.kind == "introduced" and a.version == "0":
            return -1
        if b.kind == "introduced" and b.version == "0":
            return 1
        return compare(ordering, a.version, b.version)

    return sorted(events, key=cmp_to_key(cmp))


def _in_range(events: Sequence[Event], version: str, ordering: Ordering) -> tuple[bool, str]:
    """(affected, the first fix after ``version`` or "") by the schema's evaluation algorithm."""
    affected = False
    for event in _sort_events(events, ordering):
        if event.kind == "introduced":
            affected = affected or event.version == "0" or compare(ordering, version, event.version) >= 0
        else:  # fixed and limit end a range at the version, last_affected just after it
            at_or_after = compare(ordering, version, event.version)
            affected = affected and (at_or_after < 0 if event.kind != "last_affected" else at_or_after <= 0)
    if not affected:
        return False, ""
    fixes = [
        e
        for e in _sort_events(events, ordering)
        if e.kind == "fixed" and compare(ordering, e.version, version) > 0
    ]
    return True, fixes[0].version if fixes else ""


def affected_by(affected: Affected, version: str, ordering: Ordering) -> tuple[bool, str]:
    """Is ``version`` affected by this entry, and the version that fixes it ("" when none is known).

    Listed ``versions`` count as affected; then each ``ECOSYSTEM`` (or ``SEMVER``) range is evaluated.
    A version the ordering cannot read is not affected (never a guess).
    """
    try:
        hit, fixed = version in affected.versions, ""
        for rng in affected.ranges:
            if rng.type == "GIT":
                continue
            in_range, fix = _in_range(rng.events, version, ordering)
            hit, fixed = hit or in_range, fixed or fix
        return hit, fixed
    except VersionError:
        return False, ""


# -- the cached form ------------------------------------------------------------------------


def compact(record: OsvRecord) -> dict[str, Any]:
    """The record as a valid OSV object without prose: what :func:`parse_record` reads back."""
    out: dict[str, Any] = {"id": record.id, "modified": record.modified}
    for key in ("published", "withdrawn", "summary"):
        if getattr(record, key):
            out[key] = getattr(record, key)
    for key in ("aliases", "upstream", "related"):
        if getattr(record, key):
            out[key] = list(getattr(record, key))
    if record.severity:
        out["severity"] = [{"type": t, "score": s} for t, s in record.severity]
    if record.rating:
        out["database_specific"] = {"severity": record.rating}
    out["affected"] = [_compact_affected(a) for a in record.affected]
    return out


def _compact_affected(a: Affected) -> dict[str, Any]:
    out: dict[str, Any] = {"package": {"ecosystem": a.ecosystem, "name": a.name}}
    if a.purl:
        out["package"]["purl"] = a.purl
    out["ranges"] = [
        {"type": r.type, "events": [{e.kind: e.version} for e in r.events]}
        for r in a.ranges
        if r.type != "GIT"
    ]
    if a.versions:
        out["versions"] = list(a.versions)
    specific: dict[str, Any] = {}
    if a.binaries:
        specific["binaries"] = [{"binary_name": b} for b in a.binaries]
    if a.rating:
        specific["urgency"] = a.rating
    if specific:
        out["ecosystem_specific"] = specific
    if a.cve_ratings:
        cves = [{"id": c, "severity": [{"type": "rating", "score": w}]} for c, w in a.cve_ratings]
        out["database_specific"] = {"cves_map": {"ecosystem": a.ecosystem, "cves": cves}}
    return out
