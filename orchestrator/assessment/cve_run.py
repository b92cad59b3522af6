"""``run --cve`` at planning time (the ``plan_run`` activity): the plan narrowed to the VMs whose
latest vulnerability assessment lists one of the CVEs with a fixed version, and the run's target set
recorded in the fact store (:mod:`orchestrator.facts.cves`) — ``vm_patch`` reads its VM's packages
from there, so the selection travels as the run id, never as a per-VM payload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.facts.cves import (
    FIXED_ACTIVE,
    FIXED_PENDING_RESTART,
    STILL_OPEN,
    CveProof,
    CveRun,
    CveStatus,
    CveStore,
)
from orchestrator.facts.store import FactStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.model import Plan, vm_step_id
from orchestrator.planning.cve import CvePlan, narrow
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.targets import CveTarget


def plan_cves(facts: FactStore, plan: Plan, cves: Sequence[str]) -> CvePlan:
    """``plan`` narrowed to the VMs affected by ``cves`` (see :func:`orchestrator.planning.cve.narrow`)."""
    store = VulnStore(facts)
    planned = {step.step_id for step in plan.vm_steps}
    findings: dict[str, list[Finding]] = {}
    for cve in cves:  # the rows of affected VMs only
        for vm, finding in store.findings_of(cve):
            step_id = vm_step_id(vm)
            if step_id in planned:
                findings.setdefault(step_id, []).append(finding)
    assessed = {
        step_id: a.taken_at for a in store.latest_assessments() if (step_id := vm_step_id(a.vm)) in planned
    }
    return narrow(plan, cves, findings, assessed)


def record_targets(facts: FactStore, run_id: str, cves: Sequence[str], *, now_override: bool, plan: Plan,
                   targets: Sequence[CveTarget]) -> None:  # fmt: skip
    """The run's CVEs and the targets of the VMs still in ``plan`` (after the leases were taken)."""
    planned = {step.step_id for step in plan.vm_steps}
    kept = [t for t in targets if t.step_id in planned]
    CveStore(facts).save_run(run_id, cves, now_override=now_override, targets=kept)


#: The notification fields of a run's CVE proofs (run_finished / run_halted).
NOTICE_FIELDS = (
    "cves",
    "cve_fixed_active",
    "cve_pending_restart",
    "cve_still_open",
    "cve_unproven",
    "cve_lines",
)


def notice_context(facts: FactStore, run_id: str) -> dict[str, str]:
    """The run's CVEs and their proofs for ``run_finished`` / ``run_halted`` ("" for a run without --cve)."""
    store = CveStore(facts)
    run = store.run(run_id)
    if run is None:
        return dict.fromkeys(NOTICE_FIELDS, "")
    summary = store.summary(run_id, sample=5)
    counts = store.counts(run_id)
    lines = [
        f"{s.cve}{' (KEV)' if s.kev else ''}: {s.affected} VM(s) affected; fixed-active {s.verdicts[FIXED_ACTIVE]}, "
        f"fixed-pending-restart {s.verdicts[FIXED_PENDING_RESTART]}, still-open {s.verdicts[STILL_OPEN]}"
        + (f" ({', '.join(s.open_on)})" if s.open_on else "") + (f", unproven {s.unproven}" if s.unproven else "")
        for s in summary
    ]  # fmt: skip
    override = " (maintenance windows overridden: --now)" if run.now_override else ""
    return {
        "cves": ", ".join(run.cves),
        "cve_fixed_active": str(counts[FIXED_ACTIVE]),
        "cve_pending_restart": str(counts[FIXED_PENDING_RESTART]),
        "cve_still_open": str(counts[STILL_OPEN]),
        "cve_unproven": str(counts["unproven"]),
        "cve_lines": f"\nPatch by CVE{override}:\n" + "\n".join(lines)
        if lines
        else f"\nPatch by CVE{override}: no VM affected",
    }


@dataclass(frozen=True)
class CveRunView:
    """What ``patchwave status RUN`` shows of a ``run --cve`` run: its CVEs, per CVE the verdicts, and
    a page of the proofs per (VM, CVE, package)."""

    run: CveRun
    cves: tuple[CveStatus, ...]
    proofs: tuple[CveProof, ...]


def run_view(facts: FactStore, run_id: str, *, page: int = 1, per_page: int = 50) -> CveRunView | None:
    store = CveStore(facts)
    run = store.run(run_id)
    if run is None:
        return None
    proofs = store.proofs(run_id, offset=(max(1, page) - 1) * per_page, limit=per_page)
    return CveRunView(run, tuple(store.summary(run_id)), tuple(proofs))
