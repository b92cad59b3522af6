"""The fact store's ``autoupdate_records`` table (migration 8): what patchwave did to, and found
about, each VM's automatic updater.

Append-only rows, one per event, grouped by ``operation`` (one ``autoupdates apply`` invocation,
or a run's pause/restore: the run id):

* ``intent`` — before ``apply`` changes a guest: the planned files (by sha256), removals, units,
  holds, mode (``ok`` is NULL);
* ``applied`` / ``failed`` — after it: what the guest reported changed, or the error;
* ``status`` — what ``autoupdates status`` found (installed/enabled, drift, last run, pause), the
  compliance report's source for the updater column;
* ``paused`` / ``restored`` — a run's pause and restore (run and step ids set).

Shares the :class:`~orchestrator.facts.store.FactStore`'s connections and transactions (like
:mod:`orchestrator.facts.vulns`); values are passed in as plain mappings (``detail``), scrubbed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.facts.records import scrub
from orchestrator.facts.store import FactStore
from orchestrator.model import SCHEMA_VERSION
from providers.base import VmRef

ACTIONS = frozenset({"intent", "applied", "failed", "status", "paused", "restored"})


@dataclass(frozen=True)
class AutoUpdateRecord:
    id: int
    operation: str
    vm: VmRef
    action: str
    mode: str
    run_id: str
    step_id: str
    ok: bool | None
    detail: Mapping[str, Any]
    recorded_at: str


class AutoUpdateJournal:
    """Records in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    def record(
        self,
        operation: str,
        vm: VmRef,
        action: str,
        *,
        mode: str,
        detail: Mapping[str, Any],
        ok: bool | None = None,
        run_id: str = "",
        step_id: str = "",
    ) -> int:
        """Append one record; returns its id."""
        if action not in ACTIONS:
            raise ValueError(f"unknown autoupdate action {action!r}; use one of {sorted(ACTIONS)}")
        text = json.dumps(scrub(dict(detail)), sort_keys=True, separators=(",", ":"))
        with self._facts._tx() as db:
            cursor = db.execute(
                "INSERT INTO autoupdate_records (operation, vm_site, vm_id, vm_name, action, mode, run_id, step_id,"
                " ok, detail, recorded_at, schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (operation, vm.site, vm.id, vm.name, action, mode, run_id, step_id,
                 None if ok is None else int(ok), text, self._facts._now(), SCHEMA_VERSION),
            )  # fmt: skip
        return int(cursor.lastrowid or 0)

    def latest(self, action: str = "status") -> list[AutoUpdateRecord]:
        """The latest ``action`` record of every VM, ordered by site and name."""
        rows = self._facts._db().execute(
            "SELECT r.* FROM autoupdate_records r WHERE r.id = (SELECT MAX(i.id) FROM autoupdate_records i"
            " WHERE i.vm_site = r.vm_site AND i.vm_id = r.vm_id AND i.action = ?) ORDER BY r.vm_site, r.vm_name",
            (action,),
        )
        return [_record(r) for r in rows]

    def of_vm(self, vm: VmRef, limit: int = 20) -> list[AutoUpdateRecord]:
        """The VM's records, newest first."""
        rows = self._facts._db().execute(
            "SELECT * FROM autoupdate_records WHERE vm_site = ? AND vm_id = ? ORDER BY id DESC LIMIT ?",
            (vm.site, vm.id, limit),
        )
        return [_record(r) for r in rows]

    def of_operation(self, operation: str) -> list[AutoUpdateRecord]:
        rows = self._facts._db().execute(
            "SELECT * FROM autoupdate_records WHERE operation = ? ORDER BY id", (operation,)
        )
        return [_record(r) for r in rows]


def _record(row: Any) -> AutoUpdateRecord:
    return AutoUpdateRecord(
        id=row["id"],
        operation=row["operation"],
        vm=VmRef(site=row["vm_site"], id=row["vm_id"], name=row["vm_name"]),
        action=row["action"],
        mode=row["mode"],
        run_id=row["run_id"],
        step_id=row["step_id"],
        ok=None if row["ok"] is None else bool(row["ok"]),
        detail=json.loads(row["detail"]),
        recorded_at=row["recorded_at"],
    )
