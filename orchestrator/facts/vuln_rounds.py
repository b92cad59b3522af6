"""The fact store's fleet-assessment tables (migration 10): rounds, their targets, alerts, candidates.

* ``vuln_rounds`` — one row per round (a CLI ``patchwave assess`` or a scheduled fleet assessment):
  when it ran, how many VMs it took, assessed and could not assess, how many alerts it raised.
* ``vuln_round_targets`` — the round's VMs per site, in a fixed order, written once by the site's
  ``assess_targets`` step; a batch of the round reads a slice of them by position and marks each one
  (``assessed`` with its assessment id, or ``failed`` with a note). A retried batch skips what is
  marked: the workflow passes positions, never VM lists. Only the latest :data:`KEEP_ROUNDS` rounds
  keep their target rows.
* ``vuln_alerts`` — each critical or known-exploited CVE as it first appeared in the fleet, and when
  ``vuln_found`` was delivered for it (never twice for one CVE).
* ``vuln_candidates`` — when a candidate version was first seen pending anywhere (the age of an update
  no advisory dates, for baselines' ``approve_after``).

Also the per-CVE view of the fleet or of one round (:meth:`RoundStore.cve_summary`), aggregated in SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.facts.store import FactStore
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.model import SCHEMA_VERSION
from providers.base import VmRef

#: Rounds whose target rows are kept (the round headers are kept).
KEEP_ROUNDS = 20
_CHUNK = 500
#: A severity's rank in SQL (as orchestrator.vulns.severity.rank).
RANK_SQL = (
    "CASE {col} WHEN 'critical' THEN 5 WHEN 'important' THEN 4 WHEN 'moderate' THEN 3 WHEN 'low' THEN 2"
    " WHEN 'unrated' THEN 1 ELSE 0 END"
)
_SCALE = {5: "critical", 4: "important", 3: "moderate", 2: "low", 1: "unrated", 0: "unrated"}
#: Every VM's latest assessment.
_LATEST = "a.id IN (SELECT MAX(i.id) FROM vuln_assessments i GROUP BY i.vm_site, i.vm_id)"


@dataclass(frozen=True)
class RoundRecord:
    id: str
    requested_by: str
    started_at: str
    finished_at: str  # "" while it runs
    targets: int
    assessed: int
    failed: int
    alerts: int


@dataclass(frozen=True)
class RoundTarget:
    site: str
    position: int
    vm: VmRef
    address: str  # the first IP address the platform reported ("" = none)
    state: str  # pending | assessed | failed
    note: str = ""


@dataclass(frozen=True)
class CveSummary:
    """One CVE over a set of assessments: the per-CVE view."""

    cve: str
    severity: str  # the worst rating any machine's finding has
    cvss: float | None
    kev: bool
    kev_due: str
    machines: int
    fixable: int  # machines with the fix available
    fixed_version: str  # the one fixed version, or "" when unknown
    fixed_versions: int  # distinct fixed versions (releases differ)
    published: str
    days_since_release: int | None
    package: str  # one affected package (the first by name)
    packages: int  # distinct affected packages


@dataclass(frozen=True)
class Alert:
    cve: str
    severity: str
    kev: bool
    machines: int
    first_seen: str
    round_id: str
    notified_at: str  # "" = not delivered yet


class RoundStore:
    """Rounds, alerts and candidates on record, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    # ------------------------------------------------------------------ rounds
    def start(self, round_id: str, *, requested_by: str) -> RoundRecord:
        """Record the round (idempotent: a started round is returned as it is)."""
        now = self._facts._now()
        with self._facts._tx() as db:
            db.execute(
                "INSERT INTO vuln_rounds (id, requested_by, started_at, finished_at, targets, assessed, failed,"
                " alerts, recorded_at, schema_version) VALUES (?, ?, ?, '', 0, 0, 0, 0, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (round_id, requested_by, now, now, SCHEMA_VERSION),
            )
            db.execute(
                "DELETE FROM vuln_round_targets WHERE round_id NOT IN (SELECT id FROM vuln_rounds"
                " ORDER BY started_at DESC, id DESC LIMIT ?)",
                (KEEP_ROUNDS,),
            )
        found = self.get(round_id)
        assert found is not None
        return found

    def get(self, round_id: str) -> RoundRecord | None:
        row = self._facts._db().execute("SELECT * FROM vuln_rounds WHERE id = ?", (round_id,)).fetchone()
        return None if row is None else _round(row)

    def latest(self, limit: int = 10) -> list[RoundRecord]:
        rows = self._facts._db().execute(
            "SELECT * FROM vuln_rounds ORDER BY started_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [_round(r) for r in rows]

    def finish(self, round_id: str, *, alerts: int = 0) -> RoundRecord:
        """The round's counts from its targets, and its end (idempotent)."""
        counts = self.counts(round_id)
        with self._facts._tx() as db:
            db.execute(
                "UPDATE vuln_rounds SET finished_at = CASE WHEN finished_at = '' THEN ? ELSE finished_at END,"
                " targets = ?, assessed = ?, failed = ?, alerts = alerts + ? WHERE id = ?",
                (self._facts._now(), sum(counts.values()), counts.get("assessed", 0), counts.get("failed", 0),
                 alerts, round_id),
            )  # fmt: skip
        found = self.get(round_id)
        assert found is not None
        return found

    # ------------------------------------------------------------------ targets
    def add_targets(self, round_id: str, site: str, targets: Sequence[tuple[VmRef, str]]) -> int:
        """Write the site's targets of the round once; a second call keeps the first list. Returns
        how many the round has on the site."""
        with self._facts._tx() as db:
            have = self._count(db, round_id, site)
            if have:
                return have
            db.executemany(
                "INSERT INTO vuln_round_targets (round_id, site, position, vm_id, vm_name, address, state, note,"
                " assessment_id) VALUES (?, ?, ?, ?, ?, ?, 'pending', '', NULL)",
                [(round_id, site, i, vm.id, vm.name, address) for i, (vm, address) in enumerate(targets)],
            )
            return len(targets)

    def targets(self, round_id: str, site: str, start: int, count: int) -> list[RoundTarget]:
        rows = self._facts._db().execute(
            "SELECT * FROM vuln_round_targets WHERE round_id = ? AND site = ? AND position >= ? AND position < ?"
            " ORDER BY position",
            (round_id, site, start, start + count),
        )
        return [_target(r) for r in rows]

    def failed(self, round_id: str) -> list[RoundTarget]:
        """The round's targets that could not be assessed (with the reason), by site and name."""
        rows = self._facts._db().execute(
            "SELECT * FROM vuln_round_targets WHERE round_id = ? AND state = 'failed' ORDER BY site, vm_name",
            (round_id,),
        )
        return [_target(r) for r in rows]

    def mark(self, round_id: str, target: RoundTarget, state: str, *, note: str = "",
             assessment_id: int | None = None) -> None:  # fmt: skip
        with self._facts._tx() as db:
            db.execute(
                "UPDATE vuln_round_targets SET state = ?, note = ?, assessment_id = ? WHERE round_id = ?"
                " AND site = ? AND position = ?",
                (state, note[:500], assessment_id, round_id, target.site, target.position),
            )

    def counts(self, round_id: str, site: str = "") -> dict[str, int]:
        """state -> targets of the round (on ``site``, or every site)."""
        sql = "SELECT state, COUNT(*) FROM vuln_round_targets WHERE round_id = ?"
        args: tuple[str, ...] = (round_id,)
        if site:
            sql, args = sql + " AND site = ?", (round_id, site)
        rows = self._facts._db().execute(sql + " GROUP BY state", args)
        return {r[0]: int(r[1]) for r in rows}

    @staticmethod
    def _count(db: sqlite3.Connection, round_id: str, site: str) -> int:
        row = db.execute(
            "SELECT COUNT(*) FROM vuln_round_targets WHERE round_id = ? AND site = ?", (round_id, site)
        ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ candidates
    def record_candidates(self, family: str, pending: Sequence[PendingUpdate]) -> None:
        """Note what is pending on a ``family`` machine now as seen now, unless it was seen before."""
        now = self._facts._now()
        with self._facts._tx() as db:
            db.executemany(
                "INSERT INTO vuln_candidates (family, package, version, first_seen) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (family, package, version) DO NOTHING",
                sorted({(family, u.name, u.candidate, now) for u in pending if u.candidate}),
            )

    def first_seen(self, family: str, pending: Sequence[PendingUpdate]) -> dict[tuple[str, str], str]:
        """(package, candidate) -> when patchwave first saw it pending on a ``family`` machine."""
        pairs = {(u.name, u.candidate) for u in pending if u.candidate}
        names = sorted({name for name, _ in pairs})
        found: dict[tuple[str, str], str] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            rows = self._facts._db().execute(
                "SELECT package, version, first_seen FROM vuln_candidates WHERE family = ?"
                f" AND package IN ({', '.join('?' * len(chunk))})",
                (family, *chunk),
            )
            found.update(((r[0], r[1]), r[2]) for r in rows if (r[0], r[1]) in pairs)
        return found

    # ------------------------------------------------------------------ views and alerts
    def cve_summary(self, *, round_id: str = "", assessment_ids: Sequence[int] | None = None,
                    cves: Sequence[str] = ()) -> list[CveSummary]:  # fmt: skip
        """Per CVE over every VM's latest assessment, or over one round's (``round_id``), or over the
        given assessments; KEV first, then by severity, CVSS, machines and id."""
        where, args = _scope(round_id, assessment_ids)
        if cves:
            where += f" AND f.cve IN ({', '.join('?' * len(cves))})"
            args += tuple(cves)
        rank = RANK_SQL.format(col="f.severity")
        rows = self._facts._db().execute(
            f"SELECT f.cve, MAX({rank}) AS rank, MAX(f.cvss_score) AS cvss, MAX(f.kev) AS kev,"
            " MAX(f.kev_due) AS kev_due, COUNT(DISTINCT a.id) AS machines,"
            " COUNT(DISTINCT CASE WHEN f.fix_available = 1 THEN a.id END) AS fixable,"
            " MIN(f.fixed_version) AS fixed, COUNT(DISTINCT f.fixed_version) AS fixed_versions,"
            " MIN(CASE WHEN f.published != '' THEN f.published END) AS published,"
            " MAX(f.days_since_release) AS days, MIN(f.package) AS package, COUNT(DISTINCT f.package) AS packages"
            f" FROM vuln_findings f JOIN vuln_assessments a ON a.id = f.assessment_id WHERE {where} GROUP BY f.cve",
            args,
        )
        found = [_summary(r) for r in rows]
        return sorted(
            found, key=lambda c: (not c.kev, -_rank(c.severity), -(c.cvss or -1.0), -c.machines, c.cve)
        )

    def machines_with(self, cve: str, *, limit: int = 10, round_id: str = "",
                      assessment_ids: Sequence[int] | None = None) -> list[VmRef]:  # fmt: skip
        """Up to ``limit`` VMs (by site and name) with ``cve``: in their latest assessment, or in the
        round's, or in the given assessments."""
        where, args = _scope(round_id, assessment_ids)
        rows = self._facts._db().execute(
            "SELECT DISTINCT a.vm_site, a.vm_id, a.vm_name FROM vuln_findings f JOIN vuln_assessments a"
            f" ON a.id = f.assessment_id WHERE f.cve = ? AND {where} ORDER BY a.vm_site, a.vm_name LIMIT ?",
            (cve, *args, limit),
        )
        return [VmRef(r[0], r[1], r[2]) for r in rows]

    def raise_alerts(self, round_id: str, *, min_rank: int) -> list[Alert]:
        """Record every CVE of the fleet's latest assessments that is known exploited or rated at least
        ``min_rank`` and not on record yet (first seen in ``round_id``); returns the alerts not
        delivered yet (new ones and earlier ones whose delivery failed), oldest first."""
        now = self._facts._now()
        rank = RANK_SQL.format(col="f.severity")
        with self._facts._tx() as db:
            rows = db.execute(
                f"SELECT f.cve, MAX({rank}) AS rank, MAX(f.kev) AS kev, COUNT(DISTINCT a.id) AS machines"
                f" FROM vuln_findings f JOIN vuln_assessments a ON a.id = f.assessment_id WHERE {_LATEST}"
                f" AND (f.kev = 1 OR {rank} >= ?) GROUP BY f.cve",
                (min_rank,),
            ).fetchall()
            db.executemany(
                "INSERT INTO vuln_alerts (cve, severity, kev, machines, first_seen, round_id, notified_at)"
                " VALUES (?, ?, ?, ?, ?, ?, '') ON CONFLICT (cve) DO NOTHING",
                [(r["cve"], _SCALE[r["rank"]], r["kev"], r["machines"], now, round_id) for r in rows],
            )
            pending = db.execute(
                "SELECT * FROM vuln_alerts WHERE notified_at = '' ORDER BY first_seen, cve"
            ).fetchall()
        return [_alert(r) for r in pending]

    def mark_notified(self, cves: Iterable[str]) -> None:
        now = self._facts._now()
        with self._facts._tx() as db:
            db.executemany(
                "UPDATE vuln_alerts SET notified_at = ? WHERE cve = ? AND notified_at = ''",
                [(now, cve) for cve in cves],
            )

    def alerts(self) -> list[Alert]:
        rows = self._facts._db().execute("SELECT * FROM vuln_alerts ORDER BY first_seen, cve")
        return [_alert(r) for r in rows]


def _scope(round_id: str, assessment_ids: Sequence[int] | None) -> tuple[str, tuple[object, ...]]:
    if assessment_ids is not None:
        ids = tuple(assessment_ids) or (-1,)
        return f"a.id IN ({', '.join('?' * len(ids))})", ids
    if round_id:
        return "a.round_id = ?", (round_id,)
    return _LATEST, ()


def _rank(severity: str) -> int:
    return next((k for k, v in _SCALE.items() if v == severity), 0)


def _round(row: sqlite3.Row) -> RoundRecord:
    return RoundRecord(row["id"], row["requested_by"], row["started_at"], row["finished_at"], row["targets"],
                       row["assessed"], row["failed"], row["alerts"])  # fmt: skip


def _target(r: sqlite3.Row) -> RoundTarget:
    vm = VmRef(r["site"], r["vm_id"], r["vm_name"])
    return RoundTarget(r["site"], r["position"], vm, r["address"], r["state"], r["note"])


def _summary(row: sqlite3.Row) -> CveSummary:
    return CveSummary(
        cve=row["cve"], severity=_SCALE[row["rank"]], cvss=row["cvss"], kev=bool(row["kev"]),
        kev_due=row["kev_due"] or "", machines=row["machines"], fixable=row["fixable"],
        fixed_version=row["fixed"] if row["fixed_versions"] == 1 else "", fixed_versions=row["fixed_versions"],
        published=row["published"] or "", days_since_release=row["days"], package=row["package"],
        packages=row["packages"],
    )  # fmt: skip


def _alert(row: sqlite3.Row) -> Alert:
    return Alert(row["cve"], row["severity"], bool(row["kev"]), row["machines"], row["first_seen"],
                 row["round_id"], row["notified_at"])  # fmt: skip
