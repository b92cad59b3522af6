"""The fact store's ``runs``, ``run_events`` and ``outcomes`` tables.

* ``runs`` — one row per run (plan, config digest, status); status changes are also appended to
  ``run_events``.
* ``outcomes`` — append-only per (run, step); the latest row is the step's outcome. Succeeded
  outcomes' durations are the planner's history. Read per step, per batch of steps
  (:meth:`RunTables.latest_statuses`), as counts or a page at a time — never all at once for a run's
  workflow.

The plan itself is in bounded rows (:mod:`.plans`): ``create_run`` writes its header and rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from orchestrator.errors import FactStoreError
from orchestrator.facts.plans import PlanTables, plan_header, write_plan
from orchestrator.facts.records import (
    RunEvent,
    RunRecord,
    duration_s,
    outcome_from_json,
    run_from_row,
    to_json,
)
from orchestrator.model import SCHEMA_VERSION, HostOutcome, Plan, StepStatus, VmOutcome
from providers.base import VmRef

RUN_STATUSES = frozenset({"planned", "running", "paused", "succeeded", "halted", "failed", "cancelled"})
#: A run with one of these stopped (it may be resumed): it holds no lease, its snapshots may expire.
FINISHED_STATUSES = frozenset({"succeeded", "halted", "failed", "cancelled"})
#: A VM's last result (the compliance report): its latest outcome that concluded, SKIPPED included.
CONCLUDED_STATUSES = tuple(s.value for s in StepStatus if s.concluded)
#: The order of a page of outcomes: what needs attention first.
_SEVERITY = "CASE status WHEN 'failed' THEN 0 WHEN 'rolled_back' THEN 1 WHEN 'skipped' THEN 2 ELSE 3 END"
_LATEST = "o.id = (SELECT MAX(i.id) FROM outcomes i WHERE i.run_id = o.run_id AND i.step_id = o.step_id)"


class RunTables(PlanTables):
    # ---------------------------------------------------------------- runs
    def create_run(self, run_id: str, *, plan: Plan, config_digest: str, requested_by: str = "") -> None:
        """Idempotent: the same run id with the same plan is a no-op; another plan is refused."""
        now = self._now()
        with self._tx() as db:
            row = db.execute("SELECT plan_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                if row["plan_id"] != plan.plan_id:
                    raise FactStoreError(
                        f"run {run_id} already exists with plan {row['plan_id'][:12]}, not {plan.plan_id[:12]}",
                        step="create_run",
                        fix="use a new run id for a new plan",
                    )
                return
            db.execute(
                "INSERT INTO runs (run_id, plan_id, plan_json, config_digest, requested_by, status, reason,"
                " created_at, updated_at, schema_version) VALUES (?, ?, ?, ?, ?, 'planned', '', ?, ?, ?)",
                (run_id, plan.plan_id, to_json(plan_header(plan)), config_digest, requested_by, now, now,
                 SCHEMA_VERSION),
            )  # fmt: skip
            write_plan(db, run_id, plan)
            db.execute(
                "INSERT INTO run_events (run_id, status, reason, recorded_at) VALUES (?, 'planned', '', ?)",
                (run_id, now),
            )

    def set_run_status(self, run_id: str, status: str, *, reason: str = "") -> None:
        """Idempotent: setting the current status (and reason) again records nothing new."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {status!r}; use one of {sorted(RUN_STATUSES)}")
        now = self._now()
        with self._tx() as db:
            row = db.execute("SELECT status, reason FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise FactStoreError(f"no run {run_id}", step="set_run_status", fix="create_run first")
            if (row["status"], row["reason"]) == (status, reason):
                return
            db.execute(
                "UPDATE runs SET status = ?, reason = ?, updated_at = ? WHERE run_id = ?",
                (status, reason, now, run_id),
            )
            db.execute(
                "INSERT INTO run_events (run_id, status, reason, recorded_at) VALUES (?, ?, ?, ?)",
                (run_id, status, reason, now),
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._db().execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return run_from_row(row) if row else None

    def run_events(self, run_id: str) -> list[RunEvent]:
        """The run's status changes, oldest first."""
        rows = self._db().execute("SELECT * FROM run_events WHERE run_id = ? ORDER BY id", (run_id,))
        return [RunEvent(r["run_id"], r["status"], r["reason"], r["recorded_at"]) for r in rows]

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self._db().execute(
            "SELECT * FROM runs ORDER BY created_at DESC, run_id DESC LIMIT ?", (limit,)
        )
        return [run_from_row(r) for r in rows]

    # ---------------------------------------------------------------- outcomes
    def set_outcome(self, run_id: str, outcome: VmOutcome | HostOutcome) -> None:
        """Idempotent: an outcome equal to the latest one for the step is not appended again."""
        kind = "vm" if isinstance(outcome, VmOutcome) else "host"
        body = to_json(outcome)
        ref = outcome.vm if isinstance(outcome, VmOutcome) else outcome.host
        with self._tx() as db:
            row = db.execute(
                "SELECT outcome FROM outcomes WHERE run_id = ? AND step_id = ? ORDER BY id DESC LIMIT 1",
                (run_id, outcome.step_id),
            ).fetchone()
            if row is not None and row["outcome"] == body:
                return
            db.execute(
                "INSERT INTO outcomes (run_id, step_id, kind, site, target_id, status, duration_s, outcome,"
                " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, outcome.step_id, kind, ref.site, ref.id, str(outcome.status), duration_s(outcome), body,
                 self._now()),
            )  # fmt: skip

    def outcome(self, run_id: str, step_id: str) -> VmOutcome | HostOutcome | None:
        row = (
            self._db()
            .execute(
                "SELECT kind, outcome FROM outcomes WHERE run_id = ? AND step_id = ? ORDER BY id DESC LIMIT 1",
                (run_id, step_id),
            )
            .fetchone()
        )
        return outcome_from_json(row["kind"], json.loads(row["outcome"])) if row else None

    def outcomes(self, run_id: str) -> list[VmOutcome | HostOutcome]:
        """The latest outcome of every step of the run, ordered by step id."""
        rows = self._db().execute(
            "SELECT o.kind, o.outcome FROM outcomes o WHERE o.run_id = ? AND o.id = (SELECT MAX(i.id) FROM"
            " outcomes i WHERE i.run_id = o.run_id AND i.step_id = o.step_id) ORDER BY o.step_id",
            (run_id,),
        )
        return [outcome_from_json(r["kind"], json.loads(r["outcome"])) for r in rows]

    def set_outcomes(self, run_id: str, outcomes: Sequence[VmOutcome | HostOutcome]) -> None:
        """:meth:`set_outcome` for each (a batch's skipped VMs, say)."""
        for outcome in outcomes:
            self.set_outcome(run_id, outcome)

    def latest_statuses(self, run_id: str, step_ids: Sequence[str]) -> dict[str, StepStatus]:
        """step id -> the status of its latest outcome, for the steps that have one."""
        found: dict[str, StepStatus] = {}
        for start in range(0, len(step_ids), 500):
            chunk = list(step_ids[start : start + 500])
            marks = ", ".join("?" for _ in chunk)
            rows = self._db().execute(
                f"SELECT step_id, status FROM outcomes WHERE run_id = ? AND step_id IN ({marks}) ORDER BY id",
                (run_id, *chunk),
            )
            found.update((r["step_id"], StepStatus(r["status"])) for r in rows)
        return found

    def outcome_counts(self, run_id: str, kind: str = "vm") -> dict[str, int]:
        """status -> number of ``kind`` ("vm" | "host") steps whose latest outcome has it."""
        rows = self._db().execute(
            f"SELECT o.status, COUNT(*) AS n FROM outcomes o WHERE o.run_id = ? AND o.kind = ? AND {_LATEST}"
            " GROUP BY o.status",
            (run_id, kind),
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def outcomes_page(
        self, run_id: str, *, kind: str = "vm", offset: int = 0, limit: int = 50
    ) -> list[VmOutcome | HostOutcome]:
        """A page of the run's latest ``kind`` outcomes: failed, rolled back, skipped, then the rest
        (each by step id)."""
        rows = self._db().execute(
            f"SELECT o.kind, o.outcome FROM outcomes o WHERE o.run_id = ? AND o.kind = ? AND {_LATEST}"
            f" ORDER BY {_SEVERITY}, o.step_id LIMIT ? OFFSET ?",
            (run_id, kind, limit, offset),
        )
        return [outcome_from_json(r["kind"], json.loads(r["outcome"])) for r in rows]

    def skip_unattempted(self, run_id: str, reason: str) -> int:
        """A SKIPPED outcome (``reason``) for every planned VM step that has no outcome at all;
        returns how many were recorded."""
        now = self._now()
        with self._tx() as db:
            rows = db.execute(
                "SELECT ps.step_id, ps.vm_site, ps.vm_id, ps.vm_name FROM plan_steps ps WHERE ps.run_id = ? AND"
                " NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.run_id = ps.run_id AND o.step_id = ps.step_id)"
                " ORDER BY ps.wave_position, ps.position",
                (run_id,),
            ).fetchall()
            skipped = [
                VmOutcome(r["step_id"], VmRef(r["vm_site"], r["vm_id"], r["vm_name"]), StepStatus.SKIPPED,
                          error=reason)
                for r in rows
            ]  # fmt: skip
            db.executemany(
                "INSERT INTO outcomes (run_id, step_id, kind, site, target_id, status, duration_s, outcome,"
                " recorded_at) VALUES (?, ?, 'vm', ?, ?, 'skipped', NULL, ?, ?)",
                [(run_id, o.step_id, o.vm.site, o.vm.id, to_json(o), now) for o in skipped],
            )
        return len(skipped)

    def latest_vm_outcomes(self, *, status: str | None = None) -> list[tuple[str, str, VmOutcome]]:
        """(run_id, recorded_at, outcome): the latest concluded VM outcome (:attr:`StepStatus.concluded`)
        per VM (site, platform id) across runs; only outcomes with ``status`` when given (e.g.
        "succeeded" = last patched)."""
        statuses = (status,) if status else CONCLUDED_STATUSES
        marks = ", ".join("?" for _ in statuses)
        rows = self._db().execute(
            f"SELECT o.run_id, o.recorded_at, o.outcome FROM outcomes o WHERE o.kind = 'vm' AND o.id = ("
            f"SELECT MAX(i.id) FROM outcomes i WHERE i.kind = 'vm' AND i.site = o.site AND i.target_id = o.target_id"
            f" AND i.status IN ({marks})) ORDER BY o.site, o.target_id",
            statuses,
        )
        found = []
        for r in rows:
            outcome = outcome_from_json("vm", json.loads(r["outcome"]))
            assert isinstance(outcome, VmOutcome)
            found.append((r["run_id"], r["recorded_at"], outcome))
        return found

    # ---------------------------------------------------------------- durations
    def durations(self, step_id: str, limit: int = 10) -> list[float]:
        """Durations (s) of the latest successful runs of a step id (``vm:site:id`` / ``host:site:id``)."""
        rows = self._db().execute(
            "SELECT duration_s FROM outcomes WHERE step_id = ? AND status = 'succeeded' AND duration_s IS NOT NULL"
            " ORDER BY id DESC LIMIT ?",
            (step_id, limit),
        )
        return [float(r["duration_s"]) for r in rows]

    def history(self, step_ids: Sequence[str], limit: int = 10) -> dict[str, list[float]]:
        """``step_id -> durations`` for :func:`orchestrator.planning.planner.make_plan` (steps without history omitted)."""
        found = {sid: self.durations(sid, limit) for sid in sorted(set(step_ids))}
        return {sid: d for sid, d in found.items() if d}
