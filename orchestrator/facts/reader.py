"""A read-only view of an existing fact store: what a dry run may consult without writing anything.

:class:`~orchestrator.facts.store.FactStore` creates its file and directory, migrates the schema and
switches the journal to WAL on open; a dry run must do none of that. :func:`open_reader` opens an
existing ``facts.db`` with SQLite's ``mode=ro`` and returns ``None`` when there is none (nothing is
created). While a writer has the database open (its ``-wal`` file exists) the reader goes through
the WAL like any reader; otherwise it opens the file ``immutable`` so that SQLite creates no
``-wal``/``-shm`` files next to it. Only the queries a dry run needs are here; a database that
cannot be read (locked, half-written by a concurrent checkpoint) raises :class:`FactStoreError`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from orchestrator.errors import FactStoreError
from orchestrator.facts.records import SnapshotRecord, snapshot_from_row, utc
from orchestrator.facts.vulns import risks_from
from orchestrator.vulns.risk import VmRisk


class FactReader:
    """Read-only queries over an existing fact store (one connection; not shared between threads)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "ro" if wal.exists() else "ro&immutable=1"
        try:
            self._db = sqlite3.connect(f"file:{quote(str(self.path))}?mode={mode}", uri=True, timeout=5.0)
        except sqlite3.Error as exc:
            raise _unreadable(self.path, exc) from None
        self._db.row_factory = sqlite3.Row

    def history(self, step_ids: Sequence[str], limit: int = 10) -> dict[str, list[float]]:
        """``step_id -> durations`` of the latest successful runs, as ``FactStore.history`` answers."""
        found = {sid: self._durations(sid, limit) for sid in sorted(set(step_ids))}
        return {sid: d for sid, d in found.items() if d}

    def expired_snapshots(self, now: datetime) -> list[SnapshotRecord]:
        """Snapshots a run's cleanup would delete at ``now``: still on the platform (created, kept,
        or reverted to — a rolled-back VM's snapshot expires like a kept one) and expired."""
        rows = self._query(
            "SELECT * FROM snapshots WHERE state IN ('created', 'kept', 'reverted') AND expires_at != ''"
            " ORDER BY run_id, step_id",
            (),
        )
        live = [snapshot_from_row(r) for r in rows]
        return [s for s in live if utc(s.expires_at) <= utc(now)]

    def risks(self) -> dict[str, VmRisk]:
        """``vm_step_id -> risk`` as ``VulnStore.risks`` answers ({} for a store older than migration 10)."""
        columns = {r["name"] for r in self._query("PRAGMA table_info(vuln_assessments)", ())}
        if "risk_fixable" not in columns:
            return {}
        try:
            return risks_from(self._db)
        except sqlite3.Error as exc:
            raise _unreadable(self.path, exc) from None

    def close(self) -> None:
        self._db.close()

    def _durations(self, step_id: str, limit: int) -> list[float]:
        rows = self._query(
            "SELECT duration_s FROM outcomes WHERE step_id = ? AND status = 'succeeded'"
            " AND duration_s IS NOT NULL ORDER BY id DESC LIMIT ?",
            (step_id, limit),
        )
        return [float(r["duration_s"]) for r in rows]

    def _query(self, sql: str, args: tuple[object, ...]) -> list[sqlite3.Row]:
        try:
            with closing(self._db.execute(sql, args)) as cursor:
                return cursor.fetchall()
        except sqlite3.Error as exc:
            raise _unreadable(self.path, exc) from None


def open_reader(path: Path) -> FactReader | None:
    """A reader of the fact store at ``path``, or ``None`` when it does not exist (nothing is created)."""
    return FactReader(path) if Path(path).is_file() else None


def _unreadable(path: Path, exc: sqlite3.Error) -> FactStoreError:
    return FactStoreError(
        f"cannot read the fact store {path} ({exc})",
        step="facts",
        fix="check the file's permissions, or try again once the running command has finished",
    )
