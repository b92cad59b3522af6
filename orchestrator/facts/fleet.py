"""Fleet-wide figures aggregated in SQL (the metrics' source): what a read costs grows with the fleet,
never with the history, and only aggregates (a few hundred rows at most) come back to Python.

**The fleet** is the VMs of every site's current inventory snapshot (:mod:`orchestrator.facts.inventory`),
with the group and ring the configuration gave them; for a site never inventoried, every VM on record
there (assessed, or with an outcome), in group and ring ``-``. Per machine, its latest assessment,
latest final outcome and latest succeeded outcome are found by index seeks.

**Non-compliance** — one rule, written here twice (SQL for the fleet, :func:`noncompliant` for one
machine; a test holds them equal): a machine is *non-compliant* when its latest assessment

* lists a pending **critical** security update, or
* lists any pending **security** update while its last successful patch by patchwave finished more
  than ``grace_s`` ago ([compliance] grace, 30 days by default) — or it was never patched by patchwave.

A machine never assessed is *unassessed*: neither compliant nor non-compliant. The rest is *compliant*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator.facts.records import SEVERITIES, utc
from orchestrator.facts.store import FactStore

#: Journal actions whose intent -> result time is a step duration (one place to follow the typed journal).
TIMED_ACTIONS = ("snapshot", "patch", "reboot", "revert", "host_patch", "host_reboot")
#: Snapshot states counted (``deleted`` ones are gone from the platform and not counted).
COUNTED_SNAPSHOTS = ("intent", "created", "kept", "reverted", "leaked")
FINAL = ("succeeded", "rolled_back", "failed", "skipped")
UNPLACED = "-"


def noncompliant(critical: int, security: int, last_patched: str, now: datetime, grace_s: float) -> bool:
    """The rule of the module docstring for one assessed machine (``last_patched``: ISO, "" = never)."""
    patched = utc(last_patched).timestamp() if last_patched else None
    return noncompliant_at(critical, security, patched, utc(now).timestamp() - grace_s)


def noncompliant_at(critical: int, security: int, patched: float | None, cutoff_ts: float) -> bool:
    """:func:`noncompliant` with epoch seconds: ``patched`` (None = never) and the oldest tolerated patch."""
    return critical > 0 or (security > 0 and (patched is None or patched < cutoff_ts))


def cutoff(now: datetime, grace_s: float) -> str:
    """The oldest last-patch time that is still within the grace period, as the store writes times."""
    return (utc(now) - timedelta(seconds=grace_s)).isoformat(timespec="microseconds")


#: The rule in SQL over ``a`` (the latest assessment) and ``p`` (the latest succeeded outcome).
NONCOMPLIANT_SQL = (
    "(COALESCE(CAST(json_extract(a.severities, '$.critical') AS INTEGER), 0) > 0"
    " OR (a.security > 0 AND (p.recorded_at IS NULL OR p.recorded_at < :cutoff)))"
)

_FINAL_LIST = ", ".join(f"'{s}'" for s in FINAL)
#: Per fleet machine: the ids of its latest assessment, latest succeeded and latest final outcome.
_STATE_SQL = f"""state AS (
    SELECT f.site, f.vm_id, f.grp, f.ring,
        (SELECT MAX(i.id) FROM assessments i WHERE i.vm_site = f.site AND i.vm_id = f.vm_id) AS assessment,
        (SELECT MAX(o.id) FROM outcomes o WHERE o.step_id = 'vm:' || f.site || ':' || f.vm_id
            AND o.status = 'succeeded') AS patched,
        (SELECT MAX(o.id) FROM outcomes o WHERE o.step_id = 'vm:' || f.site || ':' || f.vm_id
            AND o.status IN ({_FINAL_LIST})) AS result
    FROM fleet f
)"""
#: Distinct values of an indexed column, one index seek each (a loose index scan).
_DISTINCT_SQL = """WITH RECURSIVE d(v) AS (SELECT MIN({column}) FROM {table}
    UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > d.v) FROM d WHERE d.v IS NOT NULL)
SELECT v FROM d WHERE v IS NOT NULL"""


def uninventoried_sites(facts: FactStore) -> list[str]:
    """Sites with machines on record (assessments, outcomes) but no current inventory snapshot."""
    db = facts._db()
    on_record = {r[0] for r in db.execute(_DISTINCT_SQL.format(column="vm_site", table="assessments"))}
    on_record |= {r[0] for r in db.execute(_DISTINCT_SQL.format(column="site", table="outcomes"))}
    inventoried = {r[0] for r in db.execute("SELECT site FROM inventory_snapshots WHERE current = 1")}
    return sorted(on_record - inventoried)


def fleet_sql(orphans: list[str]) -> tuple[str, dict[str, str]]:
    """``WITH fleet AS (...), state AS (...)`` and its parameters: the fleet of the module docstring
    (``orphans``: :func:`uninventoried_sites`) and each machine's latest record ids."""
    names = {f"o{i}": site for i, site in enumerate(orphans)}
    sql = (
        "WITH fleet AS (SELECT m.site, m.machine_id AS vm_id, m.group_name AS grp, m.ring FROM inventory_machines m"
        " JOIN inventory_snapshots s ON m.snapshot_id = s.id WHERE s.current = 1 AND m.kind = 'vm'"
    )
    if names:
        marks = ", ".join(f":{n}" for n in names)
        sql += (
            f" UNION SELECT vm_site, vm_id, '{UNPLACED}', '{UNPLACED}' FROM assessments WHERE vm_site IN ({marks})"
            f" UNION SELECT site, target_id, '{UNPLACED}', '{UNPLACED}' FROM outcomes WHERE kind = 'vm'"
            f" AND site IN ({marks})"
        )
    return f"{sql}),\n{_STATE_SQL}", names


_SEVERITY_SUMS = ", ".join(
    f"COALESCE(SUM(CAST(json_extract(a.severities, '$.{s}') AS INTEGER)), 0) AS pending_{s}"
    for s in SEVERITIES
)
_FIGURES_SQL = f"""
SELECT s.grp, s.site, s.ring, r.status, COUNT(*) AS machines, SUM(CASE WHEN a.id IS NULL THEN 1 ELSE 0 END) AS unassessed,
    SUM(CASE WHEN a.id IS NOT NULL AND {NONCOMPLIANT_SQL} THEN 1 ELSE 0 END) AS noncompliant,
    COALESCE(SUM(a.reboot_required), 0) AS reboot_required, {_SEVERITY_SUMS}
FROM state s LEFT JOIN assessments a ON a.id = s.assessment LEFT JOIN outcomes p ON p.id = s.patched
    LEFT JOIN outcomes r ON r.id = s.result
GROUP BY s.grp, s.site, s.ring, r.status"""


@dataclass(frozen=True)
class GroupFigures:
    group: str
    machines: int = 0
    unassessed: int = 0
    noncompliant: int = 0
    reboot_required: int = 0
    pending: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))


@dataclass(frozen=True)
class FleetFigures:
    groups: tuple[GroupFigures, ...]  # by group name
    outcomes: Mapping[
        tuple[str, str, str], int
    ]  # (status, site, ring) -> VMs whose latest final outcome it is


def fleet_figures(facts: FactStore, now: datetime, grace_s: float) -> FleetFigures:
    """Per group: machines, unassessed, non-compliant, reboots and pending updates; per (status, site,
    ring): the VMs whose latest final outcome has that status. One query."""
    fleet, names = fleet_sql(uninventoried_sites(facts))
    rows = facts._db().execute(fleet + _FIGURES_SQL, {**names, "cutoff": cutoff(now, grace_s)}).fetchall()
    groups: dict[str, GroupFigures] = {}
    outcomes: dict[tuple[str, str, str], int] = {}
    for r in rows:
        g = groups.get(r["grp"], GroupFigures(r["grp"]))
        groups[r["grp"]] = GroupFigures(
            group=g.group,
            machines=g.machines + int(r["machines"]),
            unassessed=g.unassessed + int(r["unassessed"] or 0),
            noncompliant=g.noncompliant + int(r["noncompliant"] or 0),
            reboot_required=g.reboot_required + int(r["reboot_required"] or 0),
            pending={s: g.pending.get(s, 0) + int(r[f"pending_{s}"] or 0) for s in SEVERITIES},
        )
        if r["status"] is not None:
            key = (r["status"], r["site"], r["ring"])
            outcomes[key] = outcomes.get(key, 0) + int(r["machines"])
    return FleetFigures(groups=tuple(g for _, g in sorted(groups.items())), outcomes=outcomes)


def runs_by_status(facts: FactStore) -> dict[str, int]:
    rows = facts._db().execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
    return {r["status"]: int(r["n"]) for r in rows}


@dataclass(frozen=True)
class SnapshotFigures:
    state: str
    count: int
    oldest_created_at: str  # ISO


def snapshot_figures(facts: FactStore) -> list[SnapshotFigures]:
    """Snapshots per registry state (those in :data:`COUNTED_SNAPSHOTS`) with the oldest creation time."""
    marks = ", ".join("?" for _ in COUNTED_SNAPSHOTS)
    rows = facts._db().execute(
        f"SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM snapshots WHERE state IN ({marks})"
        " GROUP BY state ORDER BY state",
        COUNTED_SNAPSHOTS,
    )
    return [SnapshotFigures(r["state"], int(r["n"]), r["oldest"]) for r in rows]


@dataclass(frozen=True)
class DurationFigures:
    """Step durations of one action: ``buckets[i]`` steps took at most ``bounds[i]`` seconds."""

    count: int
    total_s: float
    buckets: tuple[int, ...]


def journal_end(facts: FactStore) -> int:
    """The id of the journal's last record (0 when empty)."""
    return int(facts._db().execute("SELECT COALESCE(MAX(id), 0) FROM steps").fetchone()[0])


def step_durations(
    facts: FactStore, bounds: tuple[float, ...], *, after_id: int = 0, limit: int = 250_000
) -> tuple[int, dict[str, DurationFigures]]:
    """Durations (result time - its intent's time) of the journal's results with ids after ``after_id``
    (at most ``limit`` ids further), per action of :data:`TIMED_ACTIONS`; returns the last id read too
    (pass it as ``after_id`` next time: when it is below :func:`journal_end`, there is more to read).
    A result pairs with the latest intent of the same (run, step, action) before it, unless another
    result lies between them (a result without an intent of its own, e.g. "nothing to patch", is not timed).
    """
    db = facts._db()
    last = min(journal_end(facts), after_id + limit)
    if last <= after_id:
        return after_id, {}
    marks = ", ".join("?" for _ in TIMED_ACTIONS)
    le = ", ".join(
        f"SUM(CASE WHEN d <= {float(b)!r} THEN 1 ELSE 0 END) AS le{i}" for i, b in enumerate(bounds)
    )
    rows = db.execute(
        f"SELECT action, COUNT(*) AS n, SUM(d) AS total, {le} FROM ("
        " SELECT r.action, MAX(0.0, ROUND((julianday(r.recorded_at) - julianday(i.recorded_at)) * 86400.0, 3)) AS d"
        " FROM steps r JOIN steps i ON i.id = (SELECT MAX(x.id) FROM steps x WHERE x.run_id = r.run_id"
        "  AND x.step_id = r.step_id AND x.action = r.action AND x.phase = 'intent' AND x.id < r.id)"
        f" WHERE r.id > ? AND r.id <= ? AND r.phase = 'result' AND r.ok = 1 AND r.action IN ({marks})"
        "  AND NOT EXISTS (SELECT 1 FROM steps y WHERE y.run_id = r.run_id AND y.step_id = r.step_id"
        "   AND y.action = r.action AND y.phase = 'result' AND y.id > i.id AND y.id < r.id)"
        ") AS timed GROUP BY action",
        (after_id, last, *TIMED_ACTIONS),
    )
    found = {
        r["action"]: DurationFigures(int(r["n"]), float(r["total"] or 0.0),
                                     tuple(int(r[f"le{i}"] or 0) for i in range(len(bounds))))
        for r in rows
    }  # fmt: skip
    return last, found
