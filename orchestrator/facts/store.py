"""The fact store: what patchwave did, on record (SQLite embedded, or PostgreSQL shared by a cluster).

One :class:`FactStore` over the tables, grouped by module:

* :mod:`.runs` — ``runs`` (plan header, config digest, status) with ``run_events``; ``outcomes``,
  append-only per (run, step), the latest row being the step's outcome.
* :mod:`.plans` — a run's plan in bounded rows (waves, VM steps, host steps, blockers), read in slices.
* :mod:`.journal` — ``steps``, append-only: an *intent* record before every side effect, a
  *result* record after, with the typed detail of its :class:`~orchestrator.facts.actions.Action`.
* :mod:`.registry` — ``snapshots`` (the snapshots a run made, intent recorded before the create
  call) and ``maintenance`` (append-only host maintenance transitions).
* :mod:`.assessments` — ``assessments``, append-only: what a guest had pending before/after
  patching (the compliance report's source).
* :mod:`.leases` — ``leases``: which run or operation works on a VM or host right now (one row
  per leased target; taken before the first side effect, renewed, released).
* :mod:`.gates` — ``ring_gates``, append-only: a ring gate's refusal, approvals, forced approvals (who, when).

Details are JSON, passed through :func:`scrub` first (no secret-looking key is ever stored).
The store is the SQLite file ``<[state] dir>/facts.db`` (created 0600 in a 0700 directory; one
connection per thread; WAL journal), or with ``[facts] url`` a PostgreSQL database shared by every
worker of a cluster (:mod:`.database`, :mod:`.engines`); :func:`open_store` picks it from settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.facts.assessments import AssessmentTables
from orchestrator.facts.engines.postgres import PostgresTarget
from orchestrator.facts.gates import GateRecord, GateTables
from orchestrator.facts.journal import StepJournal
from orchestrator.facts.leases import Lease, LeaseTables, LeaseTarget
from orchestrator.facts.records import (
    AssessmentRecord,
    MaintenanceRecord,
    RunRecord,
    SnapshotRecord,
    StepRecord,
    scrub,
)
from orchestrator.facts.registry import RegistryTables
from orchestrator.facts.runs import RunTables
from providers.timing import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings

__all__ = [
    "AssessmentRecord",
    "FactStore",
    "GateRecord",
    "Lease",
    "LeaseTarget",
    "MaintenanceRecord",
    "RunRecord",
    "SnapshotRecord",
    "StepRecord",
    "open_store",
    "scrub",
]


class FactStore(RunTables, StepJournal, RegistryTables, AssessmentTables, LeaseTables, GateTables):
    """Thread-safe: each thread gets its own connection; writes are short transactions."""


def store_location(settings: Settings) -> Path | PostgresTarget:
    """Where ``settings`` keep the fact store: the SQLite file, or ``[facts] url``'s database."""
    facts = settings.facts
    if not facts.url:
        return settings.state.facts_path
    password = facts.password.reveal() if facts.password is not None else ""
    return PostgresTarget(facts.url, password=password, pool_size=facts.pool_size)


def open_store(settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> FactStore:
    """The fact store of ``settings`` (opened and migrated; close it when done)."""
    return FactStore(store_location(settings), clock=clock)
