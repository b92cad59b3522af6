"""The fact store's plan tables (migration 7): a run's plan in bounded rows, read in slices.

``runs.plan_json`` holds the plan's *header* (id, time, sites, budget, window fit, failure domains
without hosts); ``plan_waves`` one row per wave (without its VMs), ``plan_steps`` one row per VM
step, ``plan_hosts`` one row per host step and ``plan_notes`` one row per blocker or warning. The
workflows never carry a whole plan: they read a page of waves (:meth:`PlanTables.plan_waves`) and a
batch of a wave's steps (:meth:`PlanTables.wave_steps`) at a time; :meth:`PlanTables.run_plan`
assembles the whole :class:`~orchestrator.model.Plan` for the few callers that want it (small runs,
notifications of the run as a whole, ``rollback`` by name).

A run recorded before migration 7 has its whole plan in ``plan_json``: the first read converts it
to rows (:meth:`PlanTables._rows_ready`), so old runs resume like new ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from orchestrator.facts.database import Database
from orchestrator.facts.records import to_json
from orchestrator.model import Blocker, HostStep, Plan, VmStep, Wave, WaveInfo

NOTE_KINDS = ("blocked", "warning")
#: "No limit" for a slice (portable: SQLite's LIMIT -1 is not Postgres').
ALL = 1 << 62


@dataclass(frozen=True)
class PlanSize:
    vms: int
    hosts: int
    waves: int
    blocked: int
    warnings: int


_T = TypeVar("_T")


def _decode(cls: type[_T], body: str) -> _T:
    from temporalio.converter import value_to_type  # the payload converter's own reading of our types

    value: _T = value_to_type(cls, json.loads(body))
    return value


def plan_header(plan: Plan) -> Plan:
    """``plan`` without its rows: no steps, no blockers or warnings, failure domains without hosts."""
    domains = tuple(replace(d, hosts=()) for d in plan.host_phase)
    return replace(plan, host_phase=domains, waves=(), blocked=(), warnings=())


def _wave_info(row: sqlite3.Row) -> WaveInfo:
    body = json.loads(row["body"])
    return WaveInfo(
        position=row["position"], wave_id=row["wave_id"], ring=row["ring"], size=row["size"],
        concurrency=body["concurrency"], soak_s=body.get("soak_s", 0), approval=body.get("approval", False),
        window=body.get("window", ""), est_duration_s=body.get("est_duration_s", 0),
        prepare_ahead=body.get("prepare_ahead", 0),
    )  # fmt: skip


def write_plan(db: sqlite3.Connection, run_id: str, plan: Plan) -> None:
    """The plan's rows (inside the caller's transaction; ``runs.plan_json`` is the caller's)."""
    for position, wave in enumerate(plan.waves):
        db.execute(
            "INSERT INTO plan_waves (run_id, position, wave_id, ring, size, body) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, position, wave.wave_id, wave.ring, len(wave.vms), to_json(replace(wave, vms=()))),
        )
        db.executemany(
            "INSERT INTO plan_steps (run_id, wave_position, position, step_id, ring, group_name, vm_site, vm_id,"
            " vm_name, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, position, i, s.step_id, s.ring, s.group, s.vm.site, s.vm.id, s.vm.name, to_json(s))
             for i, s in enumerate(wave.vms)],
        )  # fmt: skip
    hosts = [(d.domain_id, h) for d in plan.host_phase for h in d.hosts]
    db.executemany(
        "INSERT INTO plan_hosts (run_id, position, domain_id, step_id, body) VALUES (?, ?, ?, ?, ?)",
        [(run_id, i, domain, h.step_id, to_json(h)) for i, (domain, h) in enumerate(hosts)],
    )
    for kind, notes in zip(NOTE_KINDS, (plan.blocked, plan.warnings), strict=True):
        db.executemany(
            "INSERT INTO plan_notes (run_id, kind, position, target, code, reason) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, kind, i, b.target, b.code, b.reason) for i, b in enumerate(notes)],
        )


class PlanTables(Database):
    # ---------------------------------------------------------------- header and sizes
    def plan_header(self, run_id: str) -> Plan | None:
        """The run's plan without steps, blockers and warnings (see :func:`plan_header`)."""
        if not self._rows_ready(run_id):
            return None
        row = self._db().execute("SELECT plan_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _decode(Plan, row["plan_json"])

    def plan_size(self, run_id: str) -> PlanSize:
        self._rows_ready(run_id)
        db = self._db()

        def count(sql: str, *args: object) -> int:
            return int(db.execute(sql, (run_id, *args)).fetchone()[0])

        return PlanSize(
            vms=count("SELECT COUNT(*) FROM plan_steps WHERE run_id = ?"),
            hosts=count("SELECT COUNT(*) FROM plan_hosts WHERE run_id = ?"),
            waves=count("SELECT COUNT(*) FROM plan_waves WHERE run_id = ?"),
            blocked=count("SELECT COUNT(*) FROM plan_notes WHERE run_id = ? AND kind = ?", "blocked"),
            warnings=count("SELECT COUNT(*) FROM plan_notes WHERE run_id = ? AND kind = ?", "warning"),
        )

    # ---------------------------------------------------------------- slices
    def plan_waves(self, run_id: str, offset: int = 0, limit: int = ALL) -> list[WaveInfo]:
        """Waves at positions ``offset`` .. ``offset + limit - 1`` (no ``limit``: to the end)."""
        self._rows_ready(run_id)
        rows = self._db().execute(
            "SELECT position, wave_id, ring, size, body FROM plan_waves WHERE run_id = ? AND position >= ?"
            " ORDER BY position LIMIT ?",
            (run_id, offset, limit),
        )
        return [_wave_info(r) for r in rows]

    def wave_steps(self, run_id: str, wave: int, offset: int = 0, limit: int = ALL) -> list[VmStep]:
        """The VM steps of wave ``wave`` (its position) from ``offset``, in plan order."""
        self._rows_ready(run_id)
        rows = self._db().execute(
            "SELECT body FROM plan_steps WHERE run_id = ? AND wave_position = ? AND position >= ?"
            " ORDER BY position LIMIT ?",
            (run_id, wave, offset, limit),
        )
        return [_decode(VmStep, r["body"]) for r in rows]

    def host_steps(self, run_id: str, offset: int = 0, limit: int = ALL) -> list[HostStep]:
        """Host steps in plan order (domains one after another, a domain's hosts by name)."""
        self._rows_ready(run_id)
        rows = self._db().execute(
            "SELECT body FROM plan_hosts WHERE run_id = ? AND position >= ? ORDER BY position LIMIT ?",
            (run_id, offset, limit),
        )
        return [_decode(HostStep, r["body"]) for r in rows]

    def plan_notes(
        self, run_id: str, kind: str = "blocked", offset: int = 0, limit: int = ALL
    ) -> list[Blocker]:
        """Blockers (``kind`` "blocked") or warnings ("warning"), in the plan's order."""
        self._rows_ready(run_id)
        rows = self._db().execute(
            "SELECT target, code, reason FROM plan_notes WHERE run_id = ? AND kind = ? AND position >= ?"
            " ORDER BY position LIMIT ?",
            (run_id, kind, offset, limit),
        )
        return [Blocker(r["target"], r["reason"], r["code"]) for r in rows]

    def plan_step(self, run_id: str, step_id: str) -> VmStep | None:
        self._rows_ready(run_id)
        row = (
            self._db()
            .execute("SELECT body FROM plan_steps WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            .fetchone()
        )
        return _decode(VmStep, row["body"]) if row else None

    def plan_vm_names(self, run_id: str) -> list[str]:
        self._rows_ready(run_id)
        rows = self._db().execute("SELECT DISTINCT vm_name FROM plan_steps WHERE run_id = ?", (run_id,))
        return sorted(r["vm_name"] for r in rows)

    def plan_groups(self, run_ids: Sequence[str]) -> dict[str, str]:
        """step id -> group for the steps of these runs (the first run naming a step wins)."""
        found: dict[str, str] = {}
        for run_id in run_ids:
            rows = self._db().execute(
                "SELECT step_id, group_name FROM plan_steps WHERE run_id = ?", (run_id,)
            )
            for r in rows:
                found.setdefault(r["step_id"], r["group_name"])
        return found

    # ---------------------------------------------------------------- the whole plan
    def run_plan(self, run_id: str) -> Plan | None:
        """The whole plan, assembled from its rows (for small runs and run-level callers)."""
        header = self.plan_header(run_id)
        if header is None:
            return None
        steps: dict[int, list[VmStep]] = {}
        for r in self._db().execute(
            "SELECT wave_position, body FROM plan_steps WHERE run_id = ? ORDER BY wave_position, position",
            (run_id,),
        ):
            steps.setdefault(r["wave_position"], []).append(_decode(VmStep, r["body"]))
        waves = tuple(
            replace(_decode(Wave, r["body"]), vms=tuple(steps.get(r["position"], ())))
            for r in self._db().execute(
                "SELECT position, body FROM plan_waves WHERE run_id = ? ORDER BY position", (run_id,)
            )
        )
        hosts: dict[str, list[HostStep]] = {}
        for r in self._db().execute(
            "SELECT domain_id, body FROM plan_hosts WHERE run_id = ? ORDER BY position", (run_id,)
        ):
            hosts.setdefault(r["domain_id"], []).append(_decode(HostStep, r["body"]))
        domains = tuple(replace(d, hosts=tuple(hosts.get(d.domain_id, ()))) for d in header.host_phase)
        return replace(
            header, host_phase=domains, waves=waves, blocked=tuple(self.plan_notes(run_id, "blocked")),
            warnings=tuple(self.plan_notes(run_id, "warning")),
        )  # fmt: skip

    # ---------------------------------------------------------------- runs recorded before migration 7
    def _rows_ready(self, run_id: str) -> bool:
        """False when there is no such run; a whole plan in ``plan_json`` (an older patchwave's) is
        converted to rows first."""
        row = self._db().execute("SELECT plan_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return False
        if _whole(row["plan_json"]):
            with self._tx() as db:  # again inside the transaction: another thread may have converted it
                body = db.execute("SELECT plan_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
                if _whole(body):
                    plan = _decode(Plan, body)
                    write_plan(db, run_id, plan)
                    db.execute(
                        "UPDATE runs SET plan_json = ? WHERE run_id = ?", (to_json(plan_header(plan)), run_id)
                    )
        return True


def _whole(plan_json: str) -> bool:
    """The JSON is a whole plan (an older patchwave's), not a header."""
    data = json.loads(plan_json)
    if data.get("waves") or data.get("blocked") or data.get("warnings"):
        return True
    return any(d.get("hosts") for d in data.get("host_phase", ()))
