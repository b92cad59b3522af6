"""The fact store's pinned-promotion tables (migration 12): what the first ring tested, the run's
frozen pin set, and what later rings held back.

* ``pin_tested`` — one row per first-ring (run, step): its OS release and the versions it installed,
  written by ``vm_patch`` before the PATCH result (replaced when the step patches again).
* ``pin_sets`` + ``pin_entries`` — the run's pin set, **frozen once**: the first later-ring VM that
  needs it computes it (:func:`orchestrator.planning.pins.compute_pin_set`) from the ``pin_tested``
  rows whose step's latest outcome is SUCCEEDED (patched and healthy: a rolled-back or failed VM
  contributes nothing) and stores it in the same ``BEGIN IMMEDIATE`` transaction, so concurrent VMs
  and a resumed run read the same set. Its id is ``<run>/<first ring>``: derived from the run id the
  VM's task already carries; no pin travels in a workflow payload.
* ``pin_held`` — one row per (run, step, package) a later-ring VM did not get as offered.

Shares the :class:`~orchestrator.facts.store.FactStore`'s connections and transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.facts.store import FactStore
from orchestrator.model import SCHEMA_VERSION, StepStatus
from orchestrator.promotion.pins import Contribution, HeldBack, PinEntry, compute_pin_set


@dataclass(frozen=True)
class PinSet:
    pin_set_id: str
    run_id: str
    ring: str  # the first ring, whose VMs contributed
    contributors: int  # first-ring VMs patched and healthy
    excluded: int  # first-ring VMs that patched but did not end healthy (rolled back, failed)
    frozen_at: str
    entries: tuple[PinEntry, ...]
    covered: tuple[str, ...] = ()  # OS releases of contributors that installed nothing

    def for_os(self, key: str) -> dict[str, str] | None:
        """name -> version for OS release ``key``; None when no contributing VM ran it."""
        if key not in self.os_keys:
            return None
        return {e.name: e.version for e in self.entries if e.os_key == key}

    @property
    def os_keys(self) -> frozenset[str]:
        return frozenset(e.os_key for e in self.entries) | frozenset(self.covered)


@dataclass(frozen=True)
class HeldRecord:
    step_id: str
    vm: str
    os_key: str
    held: HeldBack


def pin_set_id(run_id: str, ring: str) -> str:
    return f"{run_id}/{ring}"


class PinStore:
    """Pinned promotion's records, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    # -- the plan's rings -------------------------------------------------------------------

    def rings(self, run_id: str) -> tuple[str, ...]:
        """The run's rings in plan order (from its recorded waves)."""
        rows = self._facts._db().execute(
            "SELECT ring, MIN(position) AS first FROM plan_waves WHERE run_id = ? GROUP BY ring ORDER BY first",
            (run_id,),
        )
        return tuple(str(r["ring"]) for r in rows)

    # -- the first ring ---------------------------------------------------------------------

    def record_tested(
        self, run_id: str, step_id: str, *, ring: str, os_key: str, packages: Mapping[str, str]
    ) -> None:
        text = json.dumps(dict(sorted(packages.items())), separators=(",", ":"))
        with self._facts._tx() as db:
            db.execute(
                "INSERT INTO pin_tested (run_id, step_id, ring, os_key, packages, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET"
                " ring = excluded.ring, os_key = excluded.os_key, packages = excluded.packages,"
                " recorded_at = excluded.recorded_at",
                (run_id, step_id, ring, os_key, text, self._facts._now()),
            )

    # -- the frozen pin set -----------------------------------------------------------------

    def pin_set(self, run_id: str) -> PinSet | None:
        return _read(self._facts._db(), run_id)

    def freeze(self, run_id: str, ring: str) -> PinSet:
        """The run's pin set: the one recorded, else computed now from ``ring``'s patched-and-healthy
        VMs and recorded (once: concurrent callers and resumed runs get the same set)."""
        with self._facts._tx() as db:
            found = _read(db, run_id)
            if found is not None:
                return found
            tested, excluded = _contributions(db, run_id, ring)
            entries = compute_pin_set(tested)
            db.execute(
                "INSERT INTO pin_sets (run_id, pin_set_id, ring, contributors, excluded, frozen_at,"
                " schema_version) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, pin_set_id(run_id, ring), ring, len(tested), excluded, self._facts._now(),
                 SCHEMA_VERSION),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO pin_entries (run_id, os_key, name, version, tested_on) VALUES (?, ?, ?, ?, ?)",
                [(run_id, e.os_key, e.name, e.version, e.tested_on) for e in entries],
            )
            covered = sorted({t.os_key for t in tested} - {e.os_key for e in entries})
            db.executemany(  # an OS release whose contributors installed nothing: covered, no pins
                "INSERT INTO pin_entries (run_id, os_key, name, version, tested_on) VALUES (?, ?, '', '', 0)",
                [(run_id, key) for key in covered],
            )
            result = _read(db, run_id)
        assert result is not None
        return result

    # -- later rings ------------------------------------------------------------------------

    def record_held(
        self, run_id: str, step_id: str, *, vm: str, os_key: str, held: Sequence[HeldBack]
    ) -> None:
        with self._facts._tx() as db:
            db.execute("DELETE FROM pin_held WHERE run_id = ? AND step_id = ?", (run_id, step_id))
            db.executemany(
                "INSERT INTO pin_held (run_id, step_id, vm_name, os_key, name, current_version, candidate,"
                " pinned, reason, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, step_id, vm, os_key, h.name, h.current, h.candidate, h.pinned, h.reason,
                  self._facts._now()) for h in held],
            )  # fmt: skip

    def held_count(self, run_id: str) -> tuple[int, int]:
        """(held-back package versions, VMs with any) of the run."""
        row = (
            self._facts._db()
            .execute(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT step_id) AS vms FROM pin_held WHERE run_id = ?",
                (run_id,),
            )
            .fetchone()
        )
        return int(row["n"]), int(row["vms"])

    def held_names(self, run_id: str, step_id: str) -> tuple[str, ...]:
        """The names of the packages the run held back on one VM (its step), sorted."""
        rows = self._facts._db().execute(
            "SELECT DISTINCT name FROM pin_held WHERE run_id = ? AND step_id = ? ORDER BY name",
            (run_id, step_id),
        )
        return tuple(r["name"] for r in rows)

    def held(self, run_id: str, *, offset: int = 0, limit: int = 100) -> list[HeldRecord]:
        rows = self._facts._db().execute(
            "SELECT * FROM pin_held WHERE run_id = ? ORDER BY vm_name, step_id, name LIMIT ? OFFSET ?",
            (run_id, limit, offset),
        )
        return [
            HeldRecord(r["step_id"], r["vm_name"], r["os_key"],
                       HeldBack(r["name"], r["current_version"], r["candidate"], r["pinned"], r["reason"]))
            for r in rows
        ]  # fmt: skip


def _contributions(db: sqlite3.Connection, run_id: str, ring: str) -> tuple[list[Contribution], int]:
    rows = db.execute(
        "SELECT t.step_id, t.os_key, t.packages, (SELECT o.status FROM outcomes o WHERE o.run_id = t.run_id"
        " AND o.step_id = t.step_id ORDER BY o.id DESC LIMIT 1) AS status FROM pin_tested t"
        " WHERE t.run_id = ? AND t.ring = ? ORDER BY t.step_id",
        (run_id, ring),
    )
    tested, excluded = [], 0
    for row in _each(rows):
        if row["status"] == StepStatus.SUCCEEDED.value:
            tested.append(Contribution(row["step_id"], row["os_key"], json.loads(row["packages"])))
        else:
            excluded += 1
    return tested, excluded


def _each(rows: sqlite3.Cursor) -> Iterator[sqlite3.Row]:
    while batch := rows.fetchmany(500):
        yield from batch


def _read(db: sqlite3.Connection, run_id: str) -> PinSet | None:
    head = db.execute("SELECT * FROM pin_sets WHERE run_id = ?", (run_id,)).fetchone()
    if head is None:
        return None
    rows = db.execute(
        "SELECT os_key, name, version, tested_on FROM pin_entries WHERE run_id = ? ORDER BY os_key, name",
        (run_id,),
    ).fetchall()
    entries = tuple(PinEntry(r["os_key"], r["name"], r["version"], r["tested_on"]) for r in rows if r["name"])
    covered = tuple(r["os_key"] for r in rows if not r["name"])
    return PinSet(
        head["pin_set_id"], run_id, head["ring"], head["contributors"], head["excluded"], head["frozen_at"],
        entries, covered,
    )  # fmt: skip
