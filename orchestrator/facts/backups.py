"""The fact store's backup tables (migration 6): backups a run took, and every restore-verify.

``backups`` has one row per (run, step): the VM, the target, the platform's backup id and location,
size, checksum, its ``state`` (``intent`` before the create call, then ``created`` or ``failed``;
``deleted`` once retention or a person removed it) and the latest verification's ``verified_at`` /
``verified_how`` (``agent`` | ``heartbeat``) / ``verify_result`` (``ok`` | ``failed``; ``""`` never
verified). ``backup_verifications`` is append-only: one row per attempt, opened before the restore
(``result = "running"``) and closed with ``ok`` / ``failed`` / ``error`` (``error``: the attempt
could not judge the backup, e.g. the platform was unreachable), the probes' results as JSON.

Used through :class:`BackupStore`, which shares the :class:`~orchestrator.facts.store.FactStore`'s
connections and transactions (as :mod:`orchestrator.facts.vulns` does).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.errors import FactStoreError
from orchestrator.facts.records import scrub
from orchestrator.facts.store import FactStore
from orchestrator.model import SCHEMA_VERSION
from providers.backups import BackupInfo, ProbeResult, RestoreCheck
from providers.base import VmRef

BACKUP_STATES = ("intent", "created", "failed", "deleted")
VERIFY_RESULTS = ("running", "ok", "failed", "error")


@dataclass(frozen=True)
class BackupRecord:
    id: int
    run_id: str
    step_id: str
    vm: VmRef
    target: str
    backup_id: str  # the platform's id ("" until created)
    location: str
    size: int
    checksum: str
    state: str
    error: str
    created_at: str
    verified_at: str
    verified_how: str
    verify_result: str
    recorded_at: str
    updated_at: str

    @property
    def verified(self) -> bool:
        return self.verify_result == "ok"


@dataclass(frozen=True)
class VerificationRecord:
    id: int
    backup_row: int
    run_id: str
    step_id: str
    copy_id: str
    started_at: str
    finished_at: str
    how: str
    result: str  # running | ok | failed | error
    boot_s: float | None
    probes: tuple[dict[str, Any], ...]
    error: str

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def _backup(row: sqlite3.Row) -> BackupRecord:
    return BackupRecord(
        id=row["id"],
        run_id=row["run_id"],
        step_id=row["step_id"],
        vm=VmRef(row["vm_site"], row["vm_id"], row["vm_name"]),
        **{k: row[k] for k in ("target", "backup_id", "location", "size", "checksum", "state", "error")},
        **{k: row[k] for k in ("created_at", "verified_at", "verified_how", "verify_result")},
        recorded_at=row["recorded_at"],
        updated_at=row["updated_at"],
    )


def _verification(row: sqlite3.Row) -> VerificationRecord:
    return VerificationRecord(
        **{
            k: row[k]
            for k in ("id", "backup_row", "run_id", "step_id", "copy_id", "started_at", "finished_at")
        },
        **{k: row[k] for k in ("how", "result", "boot_s", "error")},
        probes=tuple(json.loads(row["probes"] or "[]")),
    )


class BackupStore:
    """Backups and their verifications on record, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    # ------------------------------------------------------------------ backups
    def register_intent(self, run_id: str, step_id: str, vm: VmRef, target: str) -> BackupRecord:
        """Before the create call. Idempotent: a row for (run, step) is kept (a retry is the same backup)."""
        now = self._facts._now()
        with self._facts._tx() as db:
            db.execute(
                "INSERT INTO backups (run_id, step_id, vm_site, vm_id, vm_name, target, backup_id, location, size,"
                " checksum, state, error, created_at, verified_at, verified_how, verify_result, recorded_at,"
                " updated_at, schema_version) VALUES (?, ?, ?, ?, ?, ?, '', '', 0, '', 'intent', '', '', '', '', '',"
                " ?, ?, ?) ON CONFLICT (run_id, step_id) DO NOTHING",
                (run_id, step_id, vm.site, vm.id, vm.name, target, now, now, SCHEMA_VERSION),
            )
        return self._require(run_id, step_id)

    def register_created(self, run_id: str, step_id: str, info: BackupInfo) -> BackupRecord:
        self._update(
            run_id,
            step_id,
            backup_id=info.id,
            location=info.location,
            target=info.target,
            size=info.size,
            checksum=info.checksum,
            created_at=info.created_at,
            state="created",
            error="",
        )
        return self._require(run_id, step_id)

    def register_failed(self, run_id: str, step_id: str, error: str) -> None:
        row = self.backup(run_id, step_id)
        if row is not None and row.state == "intent":
            self._update(run_id, step_id, state="failed", error=error[:2000])

    def mark_deleted(self, site: str, backup_id: str) -> None:
        with self._facts._tx() as db:
            db.execute(
                "UPDATE backups SET state = 'deleted', updated_at = ? WHERE vm_site = ? AND backup_id = ?"
                " AND state = 'created'",
                (self._facts._now(), site, backup_id),
            )

    def _update(self, run_id: str, step_id: str, **values: Any) -> None:
        columns = ", ".join(f"{key} = ?" for key in values)
        with self._facts._tx() as db:
            db.execute(
                f"UPDATE backups SET {columns}, updated_at = ? WHERE run_id = ? AND step_id = ?",  # keys are ours, values bound
                (*values.values(), self._facts._now(), run_id, step_id),
            )

    def _require(self, run_id: str, step_id: str) -> BackupRecord:
        found = self.backup(run_id, step_id)
        if found is None:
            raise FactStoreError(f"no backup record for {run_id}/{step_id}", step="facts")
        return found

    def backup(self, run_id: str, step_id: str) -> BackupRecord | None:
        row = (
            self._facts._db()
            .execute("SELECT * FROM backups WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            .fetchone()
        )
        return _backup(row) if row else None

    def by_platform_id(self, site: str, backup_id: str) -> BackupRecord | None:
        row = (
            self._facts._db()
            .execute(
                "SELECT * FROM backups WHERE vm_site = ? AND backup_id = ? ORDER BY id DESC LIMIT 1",
                (site, backup_id),
            )
            .fetchone()
        )
        return _backup(row) if row else None

    def backups(self, *, vm: VmRef | None = None, state: str | None = None) -> list[BackupRecord]:
        """Oldest first; all VMs, or ``vm``'s; any state, or ``state``."""
        sql, args = "SELECT * FROM backups WHERE 1 = 1", []
        if vm is not None:
            sql, args = sql + " AND vm_site = ? AND vm_id = ?", [vm.site, vm.id]
        if state is not None:
            sql, args = sql + " AND state = ?", [*args, state]
        rows = self._facts._db().execute(sql + " ORDER BY created_at, id", args)
        return [_backup(r) for r in rows]

    def last_verified(self) -> dict[tuple[str, str], BackupRecord]:
        """Per (site, vm id): the newest backup whose latest verification passed and that still exists."""
        latest: dict[tuple[str, str], BackupRecord] = {}
        for record in self.backups(state="created"):
            if record.verified:
                latest[(record.vm.site, record.vm.id)] = record  # oldest first: the newest wins
        return latest

    # ------------------------------------------------------------------ verifications
    def start_verification(self, backup: BackupRecord, run_id: str, step_id: str) -> int:
        """Before the restore: a ``running`` attempt; returns its id (for :meth:`finish_verification`)."""
        now = self._facts._now()
        with self._facts._tx() as db:
            cur = db.execute(
                "INSERT INTO backup_verifications (backup_row, run_id, step_id, copy_id, started_at, finished_at,"
                " how, result, boot_s, probes, error, recorded_at, schema_version)"
                " VALUES (?, ?, ?, '', ?, '', '', 'running', NULL, '[]', '', ?, ?)",
                (backup.id, run_id, step_id, now, now, SCHEMA_VERSION),
            )
            return int(cur.lastrowid or 0)

    def set_copy(self, verification_id: int, copy_id: str) -> None:
        with self._facts._tx() as db:
            db.execute("UPDATE backup_verifications SET copy_id = ? WHERE id = ?", (copy_id, verification_id))

    def finish_verification(
        self, verification_id: int, *, result: str, check: RestoreCheck | None = None, error: str = ""
    ) -> VerificationRecord:
        """Close the attempt; ``ok``/``failed`` also become the backup's latest verdict (not ``error``)."""
        if result not in VERIFY_RESULTS[1:]:
            raise FactStoreError(f"unknown verification result {result!r}", step="facts")
        now = self._facts._now()
        probes = json.dumps([scrub(asdict(p)) for p in (check.probes if check else ())], sort_keys=True)
        how = check.how if check else ""
        with self._facts._tx() as db:
            db.execute(
                "UPDATE backup_verifications SET finished_at = ?, how = ?, result = ?, boot_s = ?, probes = ?,"
                " error = ? WHERE id = ?",
                (now, how, result, check.boot_s if check else None, probes, error[:2000], verification_id),
            )
            if result in ("ok", "failed"):
                db.execute(
                    "UPDATE backups SET verified_at = ?, verified_how = ?, verify_result = ?, updated_at = ?"
                    " WHERE id = (SELECT backup_row FROM backup_verifications WHERE id = ?)",
                    (now, how or "restore", result, now, verification_id),
                )
        return self.verification(verification_id)

    def verification(self, verification_id: int) -> VerificationRecord:
        row = (
            self._facts._db()
            .execute("SELECT * FROM backup_verifications WHERE id = ?", (verification_id,))
            .fetchone()
        )
        if row is None:
            raise FactStoreError(f"no verification {verification_id}", step="facts")
        return _verification(row)

    def verifications(self, backup: BackupRecord) -> list[VerificationRecord]:
        rows = self._facts._db().execute(
            "SELECT * FROM backup_verifications WHERE backup_row = ? ORDER BY id", (backup.id,)
        )
        return [_verification(r) for r in rows]


def probe_results(records: Sequence[dict[str, Any]]) -> tuple[ProbeResult, ...]:
    """Probe results read back from a :class:`VerificationRecord`."""
    return tuple(ProbeResult(**r) for r in records)
