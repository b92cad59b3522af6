"""Reads of the fact store's history for the compliance report, each bounded by the fleet or by a number
of runs: the hosts' latest outcomes and read-only assessments, the fleet's compliance history (a
baseline per machine and the events of a time window, streamed in time order), and the VMs of one run
worth drawing on a timeline. The SQL the report needs lives here, next to the tables it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.facts.fleet import fleet_sql, uninventoried_sites
from orchestrator.facts.records import outcome_from_json
from orchestrator.facts.runs import CONCLUDED_STATUSES
from orchestrator.facts.store import FactStore
from orchestrator.model import HostOutcome, VmOutcome

#: Drawn first on a run's timeline: the VMs that went wrong.
_STATUS_ORDER = (
    "CASE o.status WHEN 'rolled_back' THEN 0 WHEN 'failed' THEN 1 WHEN 'succeeded' THEN 2 ELSE 3 END"
)


# ------------------------------------------------------------------------------------------- hosts
def latest_host_outcomes(
    facts: FactStore, *, patched: bool = False
) -> dict[tuple[str, str], tuple[str, str, HostOutcome]]:
    """(site, host id) -> (run_id, recorded_at, outcome): each host's latest final outcome; ``patched``:
    its latest succeeded one that was not report-only (``[hosts] patch = "none"`` lists, never installs)."""
    statuses = ("succeeded",) if patched else CONCLUDED_STATUSES
    marks = ", ".join("?" for _ in statuses)
    patched_only = " AND json_extract(i.outcome, '$.detail') NOT LIKE 'report only%'" if patched else ""
    rows = facts._db().execute(
        "SELECT o.run_id, o.site, o.target_id, o.recorded_at, o.outcome FROM outcomes o WHERE o.id IN (SELECT"
        f" MAX(i.id) FROM outcomes i WHERE i.kind = 'host' AND i.status IN ({marks}){patched_only}"
        " GROUP BY i.site, i.target_id)",
        statuses,
    )
    found = {}
    for r in rows:
        outcome = outcome_from_json("host", json.loads(r["outcome"]))
        assert isinstance(outcome, HostOutcome)
        found[(r["site"], r["target_id"])] = (r["run_id"], r["recorded_at"], outcome)
    return found


def host_assessments(facts: FactStore, run_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Host step id -> (recorded_at, detail) of its latest read-only assessment (``host_assess`` result)
    in the runs ``run_ids`` (the recent ones: the journal is read by run)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for run_id in run_ids:
        rows = facts._db().execute(
            "SELECT step_id, recorded_at, detail FROM steps WHERE run_id = ? AND step_id >= 'host:'"
            " AND step_id < 'host;' AND action = 'host_assess' AND phase = 'result' AND ok = 1 ORDER BY id",
            (run_id,),
        )
        for r in rows:
            if r["step_id"] not in found or found[r["step_id"]][0] < r["recorded_at"]:
                found[r["step_id"]] = (r["recorded_at"], json.loads(r["detail"]))
    return found


# ------------------------------------------------------------------------------------------- compliance history
@dataclass(frozen=True)
class MachineState:
    """A fleet machine at some moment: its latest assessment's figures, its latest succeeded patch."""

    site: str
    vm_id: str
    assessed: bool = False
    critical: int = 0
    security: int = 0
    patched_at: str = ""  # ISO, "" = never


@dataclass(frozen=True)
class HistoryEvent:
    at: str  # ISO
    site: str
    vm_id: str
    kind: str  # "assessed" (critical, security are its figures) | "patched"
    critical: int = 0
    security: int = 0


def fleet_before(facts: FactStore, since: str) -> list[MachineState]:
    """Every fleet machine (as :mod:`orchestrator.facts.fleet` defines the fleet) as it stood before ``since``."""
    fleet, names = fleet_sql(uninventoried_sites(facts))
    rows = facts._db().execute(
        f"{fleet} SELECT f.site, f.vm_id, a.id AS assessment, a.security,"
        " COALESCE(CAST(json_extract(a.severities, '$.critical') AS INTEGER), 0) AS critical,"
        " (SELECT o.recorded_at FROM outcomes o WHERE o.step_id = 'vm:' || f.site || ':' || f.vm_id"
        "  AND o.status = 'succeeded' AND o.recorded_at < :since ORDER BY o.id DESC LIMIT 1) AS patched"
        " FROM fleet f LEFT JOIN assessments a ON a.id = (SELECT i.id FROM assessments i WHERE i.vm_site = f.site"
        "  AND i.vm_id = f.vm_id AND i.taken_at < :since ORDER BY i.taken_at DESC, i.id DESC LIMIT 1)",
        {**names, "since": since},
    )
    return [
        MachineState(r["site"], r["vm_id"], r["assessment"] is not None, int(r["critical"] or 0),
                     int(r["security"] or 0), r["patched"] or "")
        for r in rows
    ]  # fmt: skip


def events_between(facts: FactStore, since: str, until: str) -> Iterator[HistoryEvent]:
    """Assessments taken and VM patches that succeeded in [since, until), in time order (streamed)."""
    rows = facts._db().execute(
        "SELECT taken_at AS at, vm_site AS site, vm_id, 'assessed' AS kind, security,"
        " COALESCE(CAST(json_extract(severities, '$.critical') AS INTEGER), 0) AS critical FROM assessments"
        " WHERE taken_at >= :since AND taken_at < :until"
        " UNION ALL SELECT recorded_at, site, target_id, 'patched', 0, 0 FROM outcomes"
        " WHERE status = 'succeeded' AND kind = 'vm' AND recorded_at >= :since AND recorded_at < :until"
        " ORDER BY at",
        {"since": since, "until": until},
    )
    for r in rows:
        yield HistoryEvent(
            r["at"], r["site"], r["vm_id"], r["kind"], int(r["critical"] or 0), int(r["security"] or 0)
        )


# ------------------------------------------------------------------------------------------- run timelines
def run_vm_outcomes(facts: FactStore, run_id: str, limit: int) -> tuple[int, list[VmOutcome]]:
    """(VMs with an outcome in the run, up to ``limit`` of their latest outcomes: rolled back and failed first)."""
    db = facts._db()
    latest = "SELECT MAX(i.id) FROM outcomes i WHERE i.run_id = :run AND i.kind = 'vm' GROUP BY i.step_id"
    total = int(db.execute(f"SELECT COUNT(*) FROM ({latest}) AS latest", {"run": run_id}).fetchone()[0])
    rows = db.execute(
        f"SELECT o.outcome FROM outcomes o WHERE o.id IN ({latest}) ORDER BY {_STATUS_ORDER}, o.step_id LIMIT :limit",
        {"run": run_id, "limit": limit},
    )
    found = [outcome_from_json("vm", json.loads(r["outcome"])) for r in rows]
    return total, [o for o in found if isinstance(o, VmOutcome)]
