"""The fact store: what patchwave did, on record (SQLite; SQL kept portable for a Postgres backend).

* ``runs`` — one row per run (plan, config digest, status); status changes are also appended to
  ``run_events``.
* ``steps`` — append-only: an *intent* record before every side effect, a *result* record after.
* ``outcomes`` — append-only per (run, step); the latest row is the step's outcome.
* ``snapshots`` — the registry of snapshots a run made (intent recorded before the create call).
* ``maintenance`` — append-only host maintenance transitions.
* ``assessments`` — append-only: what a guest had pending before/after patching (the compliance
  report's source; :mod:`orchestrator.fact_assessments`).

Details are JSON, passed through :func:`scrub` first (no secret-looking key is ever stored).
The file is created 0600 in a 0700 directory; one connection per thread; WAL journal.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import fact_assessments
from orchestrator.errors import FactStoreError
from orchestrator.fact_records import (
    AssessmentRecord,
    MaintenanceRecord,
    RunEvent,
    RunRecord,
    SnapshotRecord,
    StepRecord,
    duration_s,
    maintenance_from_row,
    outcome_from_json,
    run_from_row,
    scrub,
    snapshot_from_row,
    step_from_row,
    to_json,
    utc,
)
from orchestrator.facts_schema import LATEST_VERSION, migrate
from orchestrator.model import SCHEMA_VERSION, HostOutcome, Plan, VmOutcome
from providers.base import SYSTEM_CLOCK, Clock, HostRef, VmRef

__all__ = ["AssessmentRecord", "FactStore", "MaintenanceRecord", "RunRecord", "SnapshotRecord", "StepRecord", "scrub"]

RUN_STATUSES = frozenset({"planned", "running", "paused", "succeeded", "halted", "failed", "cancelled"})
FINAL_STATUSES = ("succeeded", "rolled_back", "failed", "skipped")
SNAPSHOT_STATES = frozenset({"intent", "created", "reverted", "deleted", "kept", "leaked"})
MAINTENANCE_STATES = frozenset({"entering", "in", "exited"})


def _secure_file(path: Path) -> None:
    """Create ``path``'s directory (0700) and the file itself (0600) before SQLite opens it."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class FactStore:
    """Thread-safe: each thread gets its own connection; writes are short transactions."""

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            _secure_file(self.path)
        except OSError as exc:
            raise FactStoreError(
                f"cannot create the fact store {self.path} ({exc.strerror or exc})",
                step="facts",
                fix="point [state] dir at a writable directory",
            ) from None
        with self._tx() as db:
            migrate(db, path=self.path)

    # ---------------------------------------------------------------- plumbing
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _now(self) -> str:
        return self._clock.now().astimezone(UTC).isoformat(timespec="microseconds")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    @property
    def schema_version(self) -> int:
        return LATEST_VERSION

    # ---------------------------------------------------------------- runs
    def create_run(
        self, run_id: str, *, plan: Plan, config_digest: str, requested_by: str = ""
    ) -> None:
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
                (run_id, plan.plan_id, to_json(plan), config_digest, requested_by, now, now, SCHEMA_VERSION),
            )
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

    # ---------------------------------------------------------------- steps
    def record_intent(
        self,
        run_id: str,
        step_id: str,
        action: str,
        *,
        target: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Append an intent record (before the side effect); returns its record id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO steps (run_id, step_id, action, phase, target, ok, detail, error, recorded_at,"
                " schema_version) VALUES (?, ?, ?, 'intent', ?, NULL, ?, '', ?, ?)",
                (run_id, step_id, action, target, to_json(detail or {}), self._now(), SCHEMA_VERSION),
            )
            return int(cur.lastrowid or 0)

    def record_result(
        self,
        run_id: str,
        step_id: str,
        action: str,
        *,
        ok: bool,
        detail: Mapping[str, Any] | None = None,
        error: str = "",
        target: str = "",
    ) -> None:
        """Append a result record (after the side effect)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (run_id, step_id, action, phase, target, ok, detail, error, recorded_at,"
                " schema_version) VALUES (?, ?, ?, 'result', ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    step_id,
                    action,
                    target,
                    int(ok),
                    to_json(detail or {}),
                    error,
                    self._now(),
                    SCHEMA_VERSION,
                ),
            )

    def step_history(self, run_id: str, step_id: str | None = None) -> list[StepRecord]:
        sql, args = "SELECT * FROM steps WHERE run_id = ?", [run_id]
        if step_id is not None:
            sql, args = sql + " AND step_id = ?", [run_id, step_id]
        return [step_from_row(r) for r in self._db().execute(sql + " ORDER BY id", args)]

    def attempts(self, run_id: str, step_id: str, action: str) -> int:
        """How many intents were recorded for (run, step, action)."""
        row = (
            self._db()
            .execute(
                "SELECT COUNT(*) AS n FROM steps WHERE run_id = ? AND step_id = ? AND action = ? AND phase = 'intent'",
                (run_id, step_id, action),
            )
            .fetchone()
        )
        return int(row["n"])

    # ---------------------------------------------------------------- outcomes
    def set_outcome(self, run_id: str, outcome: VmOutcome | HostOutcome) -> None:
        """Idempotent: an outcome equal to the latest one for the step is not appended again."""
        kind = "vm" if isinstance(outcome, VmOutcome) else "host"
        body = to_json(outcome)
        duration = duration_s(outcome)
        with self._tx() as db:
            row = db.execute(
                "SELECT outcome FROM outcomes WHERE run_id = ? AND step_id = ? ORDER BY id DESC LIMIT 1",
                (run_id, outcome.step_id),
            ).fetchone()
            if row is not None and row["outcome"] == body:
                return
            ref = outcome.vm if isinstance(outcome, VmOutcome) else outcome.host
            db.execute(
                "INSERT INTO outcomes (run_id, step_id, kind, site, target_id, status, duration_s, outcome,"
                " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    outcome.step_id,
                    kind,
                    ref.site,
                    ref.id,
                    str(outcome.status),
                    duration,
                    body,
                    self._now(),
                ),
            )

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

    # ---------------------------------------------------------------- durations
    def vm_durations(self, vm_id: str, limit: int = 10) -> list[float]:
        """Durations (s) of the latest successful patches of the VM with platform id ``vm_id``."""
        return self._durations("kind = 'vm' AND target_id = ?", (vm_id,), limit)

    def durations(self, step_id: str, limit: int = 10) -> list[float]:
        """Durations (s) of the latest successful runs of a step id (``vm:site:id`` / ``host:site:id``)."""
        return self._durations("step_id = ?", (step_id,), limit)

    def history(self, step_ids: Sequence[str], limit: int = 10) -> dict[str, list[float]]:
        """``step_id -> durations`` for :func:`orchestrator.plan.make_plan` (steps without history omitted)."""
        found = {sid: self.durations(sid, limit) for sid in sorted(set(step_ids))}
        return {sid: d for sid, d in found.items() if d}

    def _durations(self, where: str, args: tuple[Any, ...], limit: int) -> list[float]:
        rows = self._db().execute(
            f"SELECT duration_s FROM outcomes WHERE {where} AND status = 'succeeded' AND duration_s IS NOT NULL"
            " ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [float(r["duration_s"]) for r in rows]

    # ---------------------------------------------------------------- snapshots
    def register_snapshot_intent(
        self, run_id: str, step_id: str, vm: VmRef, name: str, *, expires_at: str | datetime = ""
    ) -> None:
        """Idempotent: recorded *before* the create call; a second call for (run, step) changes nothing."""
        expires = expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        now = self._now()
        with self._tx() as db:
            row = db.execute(
                "SELECT name FROM snapshots WHERE run_id = ? AND step_id = ?", (run_id, step_id)
            ).fetchone()
            if row is not None:
                if row["name"] != name:
                    raise FactStoreError(
                        f"step {step_id} of run {run_id} already registered snapshot {row['name']!r}",
                        step=step_id,
                        fix="snapshot names are snapshot_name(run_id, step_id); do not vary them",
                    )
                return
            db.execute(
                "INSERT INTO snapshots (run_id, step_id, vm_site, vm_id, vm_name, name, snapshot_id, state,"
                " created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, '', 'intent', ?, ?, ?)",
                (run_id, step_id, vm.site, vm.id, vm.name, name, now, expires, now),
            )

    def register_snapshot_created(self, run_id: str, step_id: str, snapshot_id: str) -> None:
        """Idempotent: records the platform's snapshot id for the registered intent."""
        self._update_snapshot(
            run_id,
            step_id,
            "snapshot_id = ?, state = CASE WHEN state = 'intent' THEN 'created' ELSE state END",
            (snapshot_id,),
        )

    def mark_snapshot(self, run_id: str, step_id: str, state: str) -> None:
        """Idempotent: ``reverted`` | ``deleted`` | ``kept`` | ``leaked`` (also ``created``)."""
        if state not in SNAPSHOT_STATES - {"intent"}:
            raise ValueError(
                f"unknown snapshot state {state!r}; use one of {sorted(SNAPSHOT_STATES - {'intent'})}"
            )
        self._update_snapshot(run_id, step_id, "state = ?", (state,))

    def _update_snapshot(
        self, run_id: str, step_id: str, assignments: str, args: tuple[Any, ...]
    ) -> None:
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE snapshots SET {assignments}, updated_at = ? WHERE run_id = ? AND step_id = ?",
                (*args, self._now(), run_id, step_id),
            )
            if cur.rowcount == 0:
                raise FactStoreError(
                    f"no snapshot registered for step {step_id} of run {run_id}",
                    step=step_id,
                    fix="call register_snapshot_intent before creating the snapshot",
                )

    def snapshot(self, run_id: str, step_id: str) -> SnapshotRecord | None:
        row = (
            self._db()
            .execute("SELECT * FROM snapshots WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            .fetchone()
        )
        return snapshot_from_row(row) if row else None

    def snapshots(self, *, run_id: str | None = None, state: str | None = None) -> list[SnapshotRecord]:
        sql, args = "SELECT * FROM snapshots WHERE 1 = 1", []
        if run_id is not None:
            sql, args = sql + " AND run_id = ?", [*args, run_id]
        if state is not None:
            sql, args = sql + " AND state = ?", [*args, state]
        return [snapshot_from_row(r) for r in self._db().execute(sql + " ORDER BY run_id, step_id", args)]

    def expired_snapshots(self, now: datetime) -> list[SnapshotRecord]:
        """Snapshots still on the platform (created/kept) whose ``expires_at`` is at or before ``now``."""
        live = [s for s in self.snapshots() if s.state in ("created", "kept") and s.expires_at]
        return [s for s in live if utc(s.expires_at) <= utc(now)]

    # ---------------------------------------------------------------- host maintenance
    def record_maintenance(self, run_id: str, host: HostRef, state: str) -> None:
        """Idempotent: the same state as the host's latest record for this run is not appended again."""
        if state not in MAINTENANCE_STATES:
            raise ValueError(f"unknown maintenance state {state!r}; use one of {sorted(MAINTENANCE_STATES)}")
        with self._tx() as db:
            row = db.execute(
                "SELECT state FROM maintenance WHERE run_id = ? AND host_site = ? AND host_id = ?"
                " ORDER BY id DESC LIMIT 1",
                (run_id, host.site, host.id),
            ).fetchone()
            if row is not None and row["state"] == state:
                return
            db.execute(
                "INSERT INTO maintenance (run_id, host_site, host_id, host_name, state, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, host.site, host.id, host.name, state, self._now()),
            )

    def hosts_in_maintenance(self) -> list[MaintenanceRecord]:
        """Hosts whose latest record (any run) is ``entering`` or ``in``: patchwave put them there."""
        rows = self._db().execute(
            "SELECT m.* FROM maintenance m WHERE m.id = (SELECT MAX(i.id) FROM maintenance i"
            " WHERE i.host_site = m.host_site AND i.host_id = m.host_id) AND m.state IN ('entering', 'in')"
            " ORDER BY m.host_site, m.host_id"
        )
        return [maintenance_from_row(r) for r in rows]

    # ---------------------------------------------------------------- assessments (compliance)
    def record_assessment(
        self, run_id: str, step_id: str, vm: VmRef, assessment: Any, *, phase: str = "before",
        taken_at: str | datetime | None = None,
    ) -> None:  # fmt: skip
        """Append what ``GuestPatcher.assess()`` found (``phase``: "before" or "after" patching)."""
        if phase not in fact_assessments.PHASES:
            raise ValueError(f"unknown assessment phase {phase!r}; use one of {fact_assessments.PHASES}")
        moment = taken_at.astimezone(UTC).isoformat() if isinstance(taken_at, datetime) else taken_at
        values = fact_assessments.summarize(assessment)
        with self._tx() as db:
            fact_assessments.insert(db, run_id, step_id, vm, phase, moment or self._now(), values, self._now())

    def latest_assessments(self) -> list[AssessmentRecord]:
        """The latest assessment of every VM ever assessed (by site and platform id)."""
        return fact_assessments.latest(self._db())

    def assessments(self, vm: VmRef, limit: int = 10) -> list[AssessmentRecord]:
        """A VM's assessments, newest first."""
        return fact_assessments.of_vm(self._db(), vm, limit)

    def latest_vm_outcomes(self, *, status: str | None = None) -> list[tuple[str, str, VmOutcome]]:
        """(run_id, recorded_at, outcome): the latest final VM outcome per VM (site, platform id) across
        runs; only outcomes with ``status`` when given (e.g. "succeeded" = last patched)."""
        statuses = (status,) if status else FINAL_STATUSES
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
