"""The fact store's ``ring_gates`` table: what happened at a run's ring gates, and who decided.

Append-only, one row per decision: the run, the ring, the decision and who made it —

* ``refused``: the ring gate refused promotion (a VM of the ring failed, was rolled back or is
  unhealthy); the run halted. Decided by ``patchwave`` (``finish_run`` records it);
* ``approved``: an operator's ``patchwave approve RUN`` was accepted while the ring's gate was open;
* ``forced``: ``patchwave approve RUN --ring X --force`` let the ring past a gate that refused it.

``reason`` is the refusal (for ``forced``: the one it overrode). A resumed run reads its forced rings
here (``run_setup``): their gate lets the run pass.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from orchestrator.facts.database import Database

DECISIONS = ("refused", "approved", "forced")
#: Who decided a refusal (the engine, not a person).
ENGINE = "patchwave"


@dataclass(frozen=True)
class GateRecord:
    run_id: str
    ring: str
    decision: str  # "refused" | "approved" | "forced"
    decided_by: str  # the OS user of `approve`; "patchwave" for a refusal
    reason: str
    decided_at: str  # ISO UTC


class GateTables(Database):
    def record_gate(
        self, run_id: str, ring: str, decision: str, *, decided_by: str, reason: str = ""
    ) -> None:
        """Append a decision; the same decision as the run's latest one is not recorded twice (a
        retried activity)."""
        if decision not in DECISIONS:
            raise ValueError(f"unknown gate decision {decision!r}; use one of {DECISIONS}")
        with self._tx() as db:
            last = db.execute(
                "SELECT ring, decision, decided_by, reason FROM ring_gates WHERE run_id = ? ORDER BY id DESC LIMIT 1",
                (run_id,),
            ).fetchone()
            if last is not None and tuple(last) == (ring, decision, decided_by, reason):
                return
            db.execute(
                "INSERT INTO ring_gates (run_id, ring, decision, decided_by, reason, decided_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, ring, decision, decided_by, reason, self._now()),
            )

    def _latest(self, sql: str, args: Sequence[object]) -> list[Any]:
        """Rows as committed now, on a connection of its own: a decision another process recorded
        (`approve --force`) must be seen by the next gate, and a long-lived thread connection of this
        store was seen returning an older snapshot in the end-to-end test."""
        if self._pg is not None:  # PostgreSQL: every statement reads what is committed now
            return list(self._db().execute(sql, tuple(args)))
        with closing(sqlite3.connect(self.path, timeout=30.0)) as db:
            db.row_factory = sqlite3.Row
            return list(db.execute(sql, tuple(args)))

    def gate_records(self, run_id: str) -> list[GateRecord]:
        """The run's gate decisions, oldest first (a few per ring at most)."""
        rows = self._latest("SELECT * FROM ring_gates WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            GateRecord(r["run_id"], r["ring"], r["decision"], r["decided_by"], r["reason"], r["decided_at"])
            for r in rows
        ]

    def forced_rings(self, run_id: str) -> tuple[str, ...]:
        """The rings of ``run_id`` an operator forced past their gate (sorted, each once)."""
        rows = self._latest(
            "SELECT DISTINCT ring FROM ring_gates WHERE run_id = ? AND decision = 'forced' ORDER BY ring",
            (run_id,),
        )
        return tuple(r["ring"] for r in rows)
