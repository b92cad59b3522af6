"""The fact store's registry of what runs left on the platforms: ``snapshots`` and ``maintenance``.

* ``snapshots`` — the snapshots a run made (intent recorded before the create call), one row per
  (run, step) whose state moves on: intent -> created -> reverted | deleted | kept | leaked.
* ``maintenance`` — append-only host maintenance transitions (entering, in, exited).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.errors import FactStoreError
from orchestrator.facts.database import Database
from orchestrator.facts.records import (
    MaintenanceRecord,
    SnapshotRecord,
    maintenance_from_row,
    snapshot_from_row,
    utc,
)
from providers.base import HostRef, VmRef

SNAPSHOT_STATES = frozenset({"intent", "created", "reverted", "deleted", "kept", "leaked"})
MAINTENANCE_STATES = frozenset({"entering", "in", "exited"})


class RegistryTables(Database):
    # ---------------------------------------------------------------- snapshots
    def register_snapshot_intent(
        self, run_id: str, step_id: str, vm: VmRef, name: str, *, expires_at: str | datetime = ""
    ) -> None:
        """Idempotent: recorded *before* the create call; a second call for (run, step) changes nothing
        — unless that snapshot was deleted (a VM prepared ahead and released, now taken again by a
        resumed run): then the intent is recorded anew."""
        expires = expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        now = self._now()
        with self._tx() as db:
            row = db.execute(
                "SELECT name, state FROM snapshots WHERE run_id = ? AND step_id = ?", (run_id, step_id)
            ).fetchone()
            if row is not None:
                if row["name"] != name:
                    raise FactStoreError(
                        f"step {step_id} of run {run_id} already registered snapshot {row['name']!r}",
                        step=step_id,
                        fix="snapshot names are snapshot_name(run_id, step_id); do not vary them",
                    )
                if row["state"] == "deleted":
                    db.execute(
                        "UPDATE snapshots SET snapshot_id = '', state = 'intent', created_at = ?, expires_at = ?,"
                        " updated_at = ? WHERE run_id = ? AND step_id = ?",
                        (now, expires, now, run_id, step_id),
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

    def _update_snapshot(self, run_id: str, step_id: str, assignments: str, args: tuple[Any, ...]) -> None:
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
        sql = "SELECT * FROM snapshots WHERE 1 = 1"
        args: list[str] = []
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
