"""What ``plan`` shows per VM next to the plan: its risk, the updates its baseline approves, and the
CVEs installing them would fix — from the VM's latest vulnerability assessment.

The approved set is :func:`orchestrator.vulns.approval.approve` (the group's baseline for the VM's OS
family; without one, the group's ``[policy] updates``); the fixes are the findings with the fix
available whose fixed version an approved candidate reaches (:func:`~orchestrator.vulns.approval.fixes`).
A VM never assessed shows "not assessed". Computed at ``plan`` time, read-only; the plan itself
(its steps, its id) does not carry it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from orchestrator.config.settings import Settings
from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import RoundStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.model import Plan, VmStep
from orchestrator.vulns.approval import Approval, approve, fixes
from orchestrator.vulns.findings import sort_key
from orchestrator.vulns.risk import NO_RISK, VmRisk


@dataclass(frozen=True)
class VmExposure:
    step_id: str
    vm: str  # "site/name"
    assessed_at: str  # "" = never assessed
    risk: VmRisk = NO_RISK
    baseline: str = ""  # "" = the group's [policy] updates decides
    pending: int = 0
    approved: tuple[str, ...] = ()  # the pins the approved set is (apt name=version, rpm NEVRA)
    withheld: tuple[str, ...] = ()  # "name: reason" of the pending updates not approved
    fixes: tuple[str, ...] = ()  # CVE ids the approved set fixes, KEV first, then by severity
    kev_fixes: tuple[str, ...] = ()


def plan_exposure(facts: FactStore, settings: Settings, plan: Plan, today: date) -> tuple[VmExposure, ...]:
    """One :class:`VmExposure` per planned VM, in plan order."""
    return tuple(vm_exposure(facts, settings, step, today) for step in plan.vm_steps)


def vm_exposure(facts: FactStore, settings: Settings, step: VmStep, today: date) -> VmExposure:
    latest = VulnStore(facts).latest_assessment(step.vm)
    if latest is None:
        return VmExposure(step.step_id, str(step.vm), "")
    baseline = settings.baseline_for(step.group, latest.family)
    seen = RoundStore(facts).first_seen(latest.family, latest.pending)
    approval = approve(baseline, latest.pending, latest.findings, family=latest.family or "debian", today=today,
                       first_seen=seen, mode=step.policy.update_mode, pins=step.policy.pins)  # fmt: skip
    fixed = sorted(fixes(latest.findings, [d.update for d in approval.approved], latest.family), key=sort_key)
    return VmExposure(
        step.step_id, str(step.vm), latest.taken_at, latest.risk, approval.baseline, len(latest.pending),
        approval.pins, _withheld(approval), _unique(f.cve for f in fixed), _unique(f.cve for f in fixed if f.kev),
    )  # fmt: skip


def _withheld(approval: Approval) -> tuple[str, ...]:
    return tuple(f"{d.update.name}: {d.reason}" for d in approval.decisions if not d.approved)


def _unique(cves: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cves))
