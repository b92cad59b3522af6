"""The fact store's vulnerability tables (migration 3): cached feeds and per-VM assessments.

``vuln_feeds`` has one row per loaded feed (kind, source, the feed's own version, when it was loaded,
how many records); ``vuln_feed_records`` one row per record, as compact JSON in the feed's own format
(read back by the same parsers); ``vuln_feed_index`` the (ecosystem, package) names of each record, so
``assess`` loads only what one guest can match, offline. Loading a feed again from the same source
replaces its records (the old ``vuln_feeds`` row stays, ``current = 0``).

``vuln_assessments`` has one header row per (VM, assessment) and ``vuln_findings`` one row per
finding (capped at :data:`MAX_FINDINGS`): no row grows with the fleet. Since migration 10 a header also
keeps the VM's pending updates (JSON, capped at :data:`MAX_PENDING`), its OS family, its package count,
its risk (:mod:`orchestrator.vulns.risk`) and its round. Per VM only the latest
:data:`KEEP_DETAILED` assessments keep their finding rows and pending updates, and only the latest
:data:`KEEP_HEADERS` headers are kept at all: what is on record grows with the fleet, not with time.

Used through :class:`VulnStore`, which shares the :class:`~orchestrator.facts.store.FactStore`'s
connections and transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.facts.store import FactStore
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.model import SCHEMA_VERSION
from orchestrator.vulns import debian_tracker, kev, osv
from orchestrator.vulns.ecosystems import Scope
from orchestrator.vulns.feeds import Feed, Feeds
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.risk import NO_RISK, VmRisk
from orchestrator.vulns.severity import SCALE
from providers.base import VmRef

#: Finding rows kept per assessment (the header counts every finding).
MAX_FINDINGS = 5000
#: Pending updates kept per assessment (the approved set of a baseline is computed from these).
MAX_PENDING = 1000
#: Per VM: assessments that keep their findings and pending updates; headers kept at all.
KEEP_DETAILED = 3
KEEP_HEADERS = 60
_CHUNK = 500  # names per IN (...) query


@dataclass(frozen=True)
class FeedInfo:
    id: int
    kind: str
    source: str
    version: str
    loaded_at: str
    count: int


@dataclass(frozen=True)
class VulnAssessment:
    id: int
    vm: VmRef
    taken_at: str
    os: str
    feeds: Mapping[str, str]  # source -> version the findings were matched against
    total: int
    kev: int
    unfixed: int  # findings without a fixed version in the distribution
    severities: Mapping[str, int]
    findings: tuple[Finding, ...] = ()
    round_id: str = ""  # the CLI run or scheduled round that took it
    family: str = ""  # debian | rhel | suse ("" before migration 10)
    packages: int = 0  # installed packages
    pending: tuple[PendingUpdate, ...] = ()  # read by latest_assessment only
    risk: VmRisk = NO_RISK


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _records(feed: Feed) -> Iterator[tuple[str, dict[str, Any], set[tuple[str, str]]]]:
    """(key, compact payload, {(ecosystem, package)}) for each record of ``feed``."""
    for r in feed.osv:
        names = {(a.ecosystem, n) for a in r.affected for n in (a.name, *a.binaries)}
        yield r.id, osv.compact(r), names
    pairs: dict[tuple[str, str], list[debian_tracker.TrackerEntry]] = {}
    for e in feed.tracker:
        pairs.setdefault((e.package, e.cve), []).append(e)
    for (package, cve), entries in pairs.items():
        yield f"{package} {cve}", debian_tracker.compact(entries), {(e.release, package) for e in entries}
    for entry in feed.kev.entries.values() if feed.kev else ():
        yield entry.cve, kev.compact(entry), {("kev", entry.cve)}


class VulnStore:
    """Feeds and vulnerability assessments on record, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    # ------------------------------------------------------------------ feeds
    def save_feed(self, feed: Feed) -> int:
        """Cache ``feed`` (replacing an earlier load of the same kind and source); returns its id."""
        now = self._facts._now()
        with self._facts._tx() as db:
            for (old,) in db.execute(
                "SELECT id FROM vuln_feeds WHERE kind = ? AND source = ? AND current = 1",
                (feed.kind, feed.source),
            ).fetchall():
                _drop_records(db, old)
            db.execute(
                "UPDATE vuln_feeds SET current = 0 WHERE kind = ? AND source = ?", (feed.kind, feed.source)
            )
            feed_id = db.execute(
                "INSERT INTO vuln_feeds (kind, source, version, loaded_at, record_count, current, recorded_at,"
                " schema_version) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (feed.kind, feed.source, feed.version, feed.loaded_at, feed.count, now, SCHEMA_VERSION),
            ).lastrowid
            for key, payload, names in _records(feed):
                rid = db.execute(
                    "INSERT INTO vuln_feed_records (feed_id, record_key, payload) VALUES (?, ?, ?)",
                    (feed_id, key, _json(payload)),
                ).lastrowid
                db.executemany(
                    "INSERT INTO vuln_feed_index (record_id, ecosystem, package) VALUES (?, ?, ?)",
                    [(rid, eco, pkg) for eco, pkg in sorted(names)],
                )
        return int(feed_id or 0)

    def feeds(self) -> list[FeedInfo]:
        """The current feeds, by kind and source."""
        rows = self._facts._db().execute("SELECT * FROM vuln_feeds WHERE current = 1 ORDER BY kind, source")
        return [
            FeedInfo(r["id"], r["kind"], r["source"], r["version"], r["loaded_at"], r["record_count"])
            for r in rows
        ]

    def load(self, scope: Scope | None = None, packages: Iterable[str] | None = None) -> Feeds:
        """The cached feeds as :class:`Feeds`: everything, or only the records of ``scope``'s ecosystems
        (and Debian release) that name one of ``packages`` (binary or source names). KEV is always whole."""
        db = self._facts._db()
        names = None if packages is None else sorted(set(packages))
        loaded = []
        for info in self.feeds():
            if info.kind == "kev" or names is None:
                payloads = [
                    r[0]
                    for r in db.execute("SELECT payload FROM vuln_feed_records WHERE feed_id = ?", (info.id,))
                ]
            else:
                payloads = _matching(db, info, scope, names)
            loaded.append(_feed(info, [json.loads(p) for p in payloads]))
        return Feeds(tuple(loaded))

    # ------------------------------------------------------------------ assessments
    def record_assessment(self, vm: VmRef, *, taken_at: str, os: str, findings: Sequence[Finding],
                          feeds: Mapping[str, str], pending: Sequence[PendingUpdate] = (), family: str = "",
                          packages: int = 0, round_id: str = "", risk: VmRisk = NO_RISK) -> int:  # fmt: skip
        """Append one VM's assessment (header + finding rows); returns its id. Older assessments of the
        VM lose their details (see the module docstring)."""
        severities = dict.fromkeys(SCALE, 0)
        for f in findings:
            severities[f.severity if f.severity in severities else "unrated"] += 1
        with self._facts._tx() as db:
            aid = db.execute(
                "INSERT INTO vuln_assessments (vm_site, vm_id, vm_name, taken_at, os, feeds, findings, kev, unfixed,"
                " severities, recorded_at, schema_version, round_id, family, packages, pending, risk_kev,"
                " risk_severity, risk_cvss, risk_fixable) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (vm.site, vm.id, vm.name, taken_at, os, _json(dict(feeds)), len(findings),
                 sum(f.kev for f in findings), sum(not f.fixed_version for f in findings), _json(severities),
                 self._facts._now(), SCHEMA_VERSION, round_id, family, packages, _pending_json(pending),
                 risk.kev, risk.severity, risk.cvss, risk.fixable),
            ).lastrowid  # fmt: skip
            db.executemany(
                "INSERT INTO vuln_findings (assessment_id, cve, package, installed, fixed_version, severity,"
                " cvss_score, kev, kev_due, kev_ransomware, fix_available, sources, published, days_since_release,"
                " source_package, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(aid, f.cve, f.package, f.installed, f.fixed_version, f.severity, f.cvss_score, int(f.kev),
                  f.kev_due, int(f.kev_ransomware), int(f.fix_available), _json(list(f.sources)), f.published,
                  f.days_since_release, f.source_package, f.note) for f in findings[:MAX_FINDINGS]],
            )  # fmt: skip
            _prune(db, vm)
        return int(aid or 0)

    def latest_assessment(self, vm: VmRef) -> VulnAssessment | None:
        """The VM's latest assessment with its findings (in the order they were recorded)."""
        db = self._facts._db()
        row = db.execute(
            "SELECT * FROM vuln_assessments WHERE vm_site = ? AND vm_id = ? ORDER BY id DESC LIMIT 1",
            (vm.site, vm.id),
        ).fetchone()
        if row is None:
            return None
        rows = db.execute("SELECT * FROM vuln_findings WHERE assessment_id = ? ORDER BY id", (row["id"],))
        return _assessment(row, tuple(_finding(r) for r in rows), pending=True)

    def assessment(self, assessment_id: int) -> VulnAssessment | None:
        """One assessment with its findings and pending updates (those are kept for the latest few)."""
        db = self._facts._db()
        row = db.execute("SELECT * FROM vuln_assessments WHERE id = ?", (assessment_id,)).fetchone()
        if row is None:
            return None
        rows = db.execute("SELECT * FROM vuln_findings WHERE assessment_id = ? ORDER BY id", (assessment_id,))
        return _assessment(row, tuple(_finding(r) for r in rows), pending=True)

    def round_assessments(self, round_id: str) -> list[VulnAssessment]:
        """The assessments (headers) a round took, by site and name."""
        rows = self._facts._db().execute(
            "SELECT * FROM vuln_assessments WHERE round_id = ? ORDER BY vm_site, vm_name, id", (round_id,)
        )
        return [_assessment(r, ()) for r in rows]

    def latest_assessments(self) -> list[VulnAssessment]:
        """Every VM's latest assessment, headers only (counts), by site and name."""
        rows = self._facts._db().execute(
            "SELECT a.* FROM vuln_assessments a WHERE a.id = (SELECT MAX(i.id) FROM vuln_assessments i"
            " WHERE i.vm_site = a.vm_site AND i.vm_id = a.vm_id) ORDER BY a.vm_site, a.vm_name, a.vm_id"
        )
        return [_assessment(r, ()) for r in rows]

    def risks(self) -> dict[str, VmRisk]:
        """``vm_step_id -> risk`` of every VM whose latest assessment has something fixable (the
        planner's risk order; :mod:`orchestrator.vulns.risk`)."""
        return risks_from(self._facts._db())

    def findings_of(self, cve: str) -> list[tuple[VmRef, Finding]]:
        """Where ``cve`` was found in each VM's latest assessment (for ``run --cve`` and proof)."""
        rows = self._facts._db().execute(
            "SELECT f.*, a.vm_site, a.vm_id, a.vm_name FROM vuln_findings f JOIN vuln_assessments a"
            " ON a.id = f.assessment_id WHERE f.cve = ? AND a.id = (SELECT MAX(i.id) FROM vuln_assessments i"
            " WHERE i.vm_site = a.vm_site AND i.vm_id = a.vm_id) ORDER BY a.vm_site, a.vm_name, f.package",
            (cve,),
        )
        return [(VmRef(r["vm_site"], r["vm_id"], r["vm_name"]), _finding(r)) for r in rows]


#: The latest header of every VM with a fixable finding (shared with the read-only FactReader).
RISKS_SQL = (
    "SELECT a.vm_site, a.vm_id, a.risk_kev, a.risk_severity, a.risk_cvss, a.risk_fixable FROM vuln_assessments a"
    " WHERE a.id IN (SELECT MAX(i.id) FROM vuln_assessments i GROUP BY i.vm_site, i.vm_id) AND a.risk_fixable > 0"
)


def risks_from(db: sqlite3.Connection) -> dict[str, VmRisk]:
    return {
        f"vm:{r[0]}:{r[1]}": VmRisk(int(r[2]), str(r[3]), r[4], int(r[5]))
        for r in db.execute(RISKS_SQL).fetchall()
    }


def _pending_json(pending: Sequence[PendingUpdate]) -> str:
    return _json([
        {"name": u.name, "current": u.current, "candidate": u.candidate, "security": u.security,
         "severity": u.severity, "advisories": list(u.advisories), "cves": list(u.cves), "arch": u.arch}
        for u in pending[:MAX_PENDING]
    ])  # fmt: skip


def _pending(text: str) -> tuple[PendingUpdate, ...]:
    return tuple(
        PendingUpdate(p["name"], p["current"], p["candidate"], bool(p["security"]), p["severity"],
                      tuple(p["advisories"]), tuple(p["cves"]), p["arch"])
        for p in json.loads(text or "[]")
    )  # fmt: skip


def _prune(db: sqlite3.Connection, vm: VmRef) -> None:
    """Keep the VM's latest KEEP_DETAILED assessments whole and its latest KEEP_HEADERS headers."""
    older = (
        "SELECT id FROM vuln_assessments WHERE vm_site = ? AND vm_id = ? AND id < (SELECT MIN(id) FROM"
        " (SELECT id FROM vuln_assessments WHERE vm_site = ? AND vm_id = ? ORDER BY id DESC LIMIT ?) AS keep)"
    )
    detailed = (vm.site, vm.id, vm.site, vm.id, KEEP_DETAILED)
    db.execute(f"DELETE FROM vuln_findings WHERE assessment_id IN ({older})", detailed)
    db.execute(
        f"UPDATE vuln_assessments SET pending = '[]' WHERE pending != '[]' AND id IN ({older})", detailed
    )
    db.execute(
        f"DELETE FROM vuln_assessments WHERE id IN ({older})", (vm.site, vm.id, vm.site, vm.id, KEEP_HEADERS)
    )


def _drop_records(db: sqlite3.Connection, feed_id: int) -> None:
    db.execute(
        "DELETE FROM vuln_feed_index WHERE record_id IN (SELECT id FROM vuln_feed_records WHERE feed_id = ?)",
        (feed_id,),
    )
    db.execute("DELETE FROM vuln_feed_records WHERE feed_id = ?", (feed_id,))


def _matching(db: sqlite3.Connection, info: FeedInfo, scope: Scope | None, names: Sequence[str]) -> list[str]:
    if scope is None:
        return []
    found: dict[int, str] = {}
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        rows = db.execute(
            "SELECT r.id, r.payload, i.ecosystem FROM vuln_feed_index i JOIN vuln_feed_records r ON r.id = i.record_id"
            f" WHERE r.feed_id = ? AND i.package IN ({', '.join('?' * len(chunk))})",
            (info.id, *chunk),
        )
        for rid, payload, ecosystem in rows:
            wanted = (
                ecosystem == scope.tracker_release
                if info.kind == "debian-tracker"
                else scope.matches(ecosystem)
            )
            if wanted:
                found[rid] = payload
    return [found[k] for k in sorted(found)]


def _feed(info: FeedInfo, payloads: list[Any]) -> Feed:
    where = (info.source, info.loaded_at, info.version)
    if info.kind == "osv":
        return Feed("osv", *where, osv=tuple(osv.parse_record(p, origin=info.source) for p in payloads))
    if info.kind == "debian-tracker":
        merged: dict[str, Any] = {}
        for p in payloads:
            for package, issues in p.items():
                merged.setdefault(package, {}).update(issues)
        return Feed(
            "debian-tracker", *where, tracker=debian_tracker.parse_tracker(merged, origin=info.source)
        )
    catalog = {"catalogVersion": info.version, "dateReleased": "", "vulnerabilities": payloads}
    return Feed("kev", *where, kev=kev.parse_kev(catalog, origin=info.source))


def _assessment(row: sqlite3.Row, findings: tuple[Finding, ...], *, pending: bool = False) -> VulnAssessment:
    return VulnAssessment(
        id=row["id"], vm=VmRef(row["vm_site"], row["vm_id"], row["vm_name"]), taken_at=row["taken_at"],
        os=row["os"], feeds=json.loads(row["feeds"]), total=row["findings"], kev=row["kev"],
        unfixed=row["unfixed"], severities=json.loads(row["severities"]), findings=findings,
        round_id=row["round_id"], family=row["family"], packages=row["packages"],
        pending=_pending(row["pending"]) if pending else (),
        risk=VmRisk(row["risk_kev"], row["risk_severity"], row["risk_cvss"], row["risk_fixable"]),
    )  # fmt: skip


def _finding(row: sqlite3.Row) -> Finding:
    return Finding(
        cve=row["cve"], package=row["package"], installed=row["installed"], fixed_version=row["fixed_version"],
        severity=row["severity"], cvss_score=row["cvss_score"], kev=bool(row["kev"]), kev_due=row["kev_due"],
        sources=tuple(json.loads(row["sources"])), published=row["published"],
        days_since_release=row["days_since_release"], fix_available=bool(row["fix_available"]),
        source_package=row["source_package"], kev_ransomware=bool(row["kev_ransomware"]), note=row["note"],
    )  # fmt: skip
