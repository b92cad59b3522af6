"""The fact store's record of ``run --cve`` runs (migration 13): what each run set out to fix and the
proof per CVE after the patch.

* ``cve_runs``: one row per run — the CVE ids and whether ``--now`` overrode the windows;
* ``cve_targets``: the run's target set, one row per (VM, CVE, package) with the fixed version, written
  by ``plan_run`` before the run is created; ``vm_patch`` reads its VM's rows (the package selection
  is a reference to these rows, never a payload that grows with the fleet);
* ``cve_proofs``: the verdict per (VM, CVE, package) after the patch (``fixed-active``,
  ``fixed-pending-restart``, ``still-open``) with its evidence, appended by ``vm_prove_cves``; the
  latest row per key counts (a retried proof appends).

Everything is read by run in pages or as counts: nothing is loaded for the whole fleet at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import RANK_SQL
from orchestrator.model import SCHEMA_VERSION
from orchestrator.vulns.targets import CveTarget
from providers.base import VmRef

#: The verdicts, best first (``still-open`` is a failure of the VM's goal).
FIXED_ACTIVE = "fixed-active"
FIXED_PENDING_RESTART = "fixed-pending-restart"
STILL_OPEN = "still-open"
VERDICTS = (FIXED_ACTIVE, FIXED_PENDING_RESTART, STILL_OPEN)


@dataclass(frozen=True)
class CveRun:
    run_id: str
    cves: tuple[str, ...]
    now_override: bool
    created_at: str


@dataclass(frozen=True)
class CveProof:
    """The verdict on one target after the patch."""

    step_id: str
    vm: VmRef
    cve: str
    package: str
    verdict: str  # one of VERDICTS
    installed: str  # the version installed when proved ("" = not installed)
    fixed_version: str
    evidence: str  # why: "demo-app 1.1 >= 1.1; needrestart: no stale service"
    proved_at: str = ""


@dataclass(frozen=True)
class CveStatus:
    """One CVE of a run, over its VMs: the report's per-CVE section."""

    cve: str
    severity: str
    kev: bool
    published: str  # since when (the advisory's date; "" = unknown)
    affected: int  # VMs the run targeted for it
    first_assessed: str  # the earliest assessment that found it on a targeted VM
    verdicts: dict[str, int]  # verdict -> VMs (a VM counts under its worst package's verdict)
    unproven: int  # targeted VMs without a proof (not reached, or the proof could not run)
    open_on: tuple[str, ...] = ()  # a sample of the VMs where it is still open (site/name)


class CveStore:
    """``run --cve`` records, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    def save_run(
        self, run_id: str, cves: Sequence[str], *, now_override: bool, targets: Sequence[CveTarget]
    ) -> None:
        """The run's CVEs and target set, replacing an earlier attempt's (idempotent)."""
        with self._facts._tx() as db:
            db.execute("DELETE FROM cve_runs WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM cve_targets WHERE run_id = ?", (run_id,))
            db.execute(
                "INSERT INTO cve_runs (run_id, cves, now_override, created_at) VALUES (?, ?, ?, ?)",
                (run_id, json.dumps(list(cves)), int(now_override), self._facts._now()),
            )
            db.executemany(
                "INSERT INTO cve_targets (run_id, step_id, vm_site, vm_id, vm_name, cve, package, installed,"
                " fixed_version, severity, kev, published, assessed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, t.step_id, t.vm.site, t.vm.id, t.vm.name, t.cve, t.package, t.installed, t.fixed_version,
                  t.severity, int(t.kev), t.published, t.assessed_at) for t in targets],
            )  # fmt: skip

    def run(self, run_id: str) -> CveRun | None:
        row = self._facts._db().execute("SELECT * FROM cve_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return CveRun(
            row["run_id"], tuple(json.loads(row["cves"])), bool(row["now_override"]), row["created_at"]
        )

    def targets(self, run_id: str, step_id: str) -> list[CveTarget]:
        """One VM's targets in the run (what its patch installs and its proof checks)."""
        rows = self._facts._db().execute(
            "SELECT * FROM cve_targets WHERE run_id = ? AND step_id = ? ORDER BY cve, package",
            (run_id, step_id),
        )
        return [_target(r) for r in rows]

    def record_proofs(self, run_id: str, proofs: Sequence[CveProof]) -> None:
        now = self._facts._now()
        with self._facts._tx() as db:
            db.executemany(
                "INSERT INTO cve_proofs (run_id, step_id, vm_site, vm_id, vm_name, cve, package, verdict, installed,"
                " fixed_version, evidence, proved_at, schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, p.step_id, p.vm.site, p.vm.id, p.vm.name, p.cve, p.package, p.verdict, p.installed,
                  p.fixed_version, p.evidence, now, SCHEMA_VERSION) for p in proofs],
            )  # fmt: skip

    def proofs(self, run_id: str, *, step_id: str = "", offset: int = 0, limit: int = 100) -> list[CveProof]:
        """The latest proof per (VM, CVE, package) of the run (one VM's with ``step_id``), by VM and CVE."""
        where, args = ("AND p.step_id = ?", (step_id,)) if step_id else ("", ())
        rows = self._facts._db().execute(
            f"SELECT p.* FROM cve_proofs p WHERE p.run_id = ? {where} AND p.id = (SELECT MAX(i.id) FROM cve_proofs i"
            " WHERE i.run_id = p.run_id AND i.step_id = p.step_id AND i.cve = p.cve AND i.package = p.package)"
            " ORDER BY p.vm_site, p.vm_name, p.cve, p.package LIMIT ? OFFSET ?",
            (run_id, *args, limit, offset),
        )  # fmt: skip
        return [_proof(r) for r in rows]

    def summary(self, run_id: str, *, sample: int = 10) -> list[CveStatus]:
        """Per CVE of the run: VMs targeted, their verdicts (worst package per VM), since when."""
        db = self._facts._db()
        return [
            self._status(db, run_id, row, sample) for row in db.execute(_TARGETS_BY_CVE, (run_id,)).fetchall()
        ]

    def counts(self, run_id: str) -> dict[str, int]:
        """(VM, CVE) pairs per verdict, ``unproven`` included: the run's notification and status line."""
        out = dict.fromkeys((*VERDICTS, "unproven"), 0)
        for status in self.summary(run_id, sample=0):
            for verdict, n in status.verdicts.items():
                out[verdict] += n
            out["unproven"] += status.unproven
        return out

    @staticmethod
    def _status(db: sqlite3.Connection, run_id: str, row: sqlite3.Row, sample: int) -> CveStatus:
        cve = row["cve"]
        verdicts = dict.fromkeys(VERDICTS, 0)
        for verdict, n in db.execute(_WORST_BY_VM, (run_id, cve)).fetchall():
            verdicts[_VERDICT_OF_RANK.get(verdict, STILL_OPEN)] += n
        open_on = tuple(
            f"{r[0]}/{r[1]}" for r in db.execute(_OPEN_ON, (run_id, cve, sample)).fetchall()
        ) if sample else ()  # fmt: skip
        proved = sum(verdicts.values())
        return CveStatus(
            cve=cve, severity=_SEVERITY_OF_RANK.get(row["severity_rank"], "unrated"), kev=bool(row["kev"]), published=row["published"] or "",
            affected=row["vms"], first_assessed=row["first_assessed"] or "", verdicts=verdicts,
            unproven=max(0, row["vms"] - proved), open_on=open_on,
        )  # fmt: skip


#: Verdict ranks in SQL (worst = highest): a VM counts under its worst package's verdict.
_RANK_SQL = f"CASE verdict WHEN '{FIXED_ACTIVE}' THEN 0 WHEN '{FIXED_PENDING_RESTART}' THEN 1 ELSE 2 END"
_SEVERITY_OF_RANK = {5: "critical", 4: "important", 3: "moderate", 2: "low"}
_VERDICT_OF_RANK = {0: FIXED_ACTIVE, 1: FIXED_PENDING_RESTART, 2: STILL_OPEN}
_LATEST = (
    "SELECT p.* FROM cve_proofs p WHERE p.run_id = ? AND p.cve = ? AND p.id = (SELECT MAX(i.id) FROM cve_proofs i"
    " WHERE i.run_id = p.run_id AND i.step_id = p.step_id AND i.cve = p.cve AND i.package = p.package)"
)
_WORST_BY_VM = f"SELECT worst, COUNT(*) FROM (SELECT step_id, MAX({_RANK_SQL}) AS worst FROM ({_LATEST}) GROUP BY step_id) GROUP BY worst"
_OPEN_ON = (
    f"SELECT vm_site, vm_name FROM ({_LATEST}) WHERE verdict = '{STILL_OPEN}'"
    " GROUP BY step_id ORDER BY vm_site, vm_name LIMIT ?"
)
_TARGETS_BY_CVE = (
    f"SELECT cve, MAX({RANK_SQL.format(col='severity')}) AS severity_rank, MAX(kev) AS kev, MIN(NULLIF(published, '')) AS published,"
    " COUNT(DISTINCT step_id) AS vms, MIN(NULLIF(assessed_at, '')) AS first_assessed"
    " FROM cve_targets WHERE run_id = ? GROUP BY cve ORDER BY MAX(kev) DESC, cve"
)


def _target(r: sqlite3.Row) -> CveTarget:
    return CveTarget(
        step_id=r["step_id"], vm=VmRef(r["vm_site"], r["vm_id"], r["vm_name"]), cve=r["cve"], package=r["package"],
        installed=r["installed"], fixed_version=r["fixed_version"], severity=r["severity"], kev=bool(r["kev"]),
        published=r["published"], assessed_at=r["assessed_at"],
    )  # fmt: skip


def _proof(r: sqlite3.Row) -> CveProof:
    return CveProof(
        step_id=r["step_id"], vm=VmRef(r["vm_site"], r["vm_id"], r["vm_name"]), cve=r["cve"], package=r["package"],
        verdict=r["verdict"], installed=r["installed"], fixed_version=r["fixed_version"], evidence=r["evidence"],
        proved_at=r["proved_at"],
    )  # fmt: skip
