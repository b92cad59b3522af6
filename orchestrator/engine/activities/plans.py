"""The planning activities and the plan's slices (central queue): what keeps ``PatchRun`` bounded.

* ``plan_run`` plans from the inventories the ``discover`` activities recorded (by snapshot id),
  records the plan in rows (:mod:`orchestrator.facts.plans`) and returns a
  :class:`~orchestrator.engine.payloads.PlanSummary`; a run already recorded returns its summary.
* ``plan_waves`` / ``wave_batch`` / ``host_batch`` read a page of waves, a batch of a wave's VM steps
  (with the status each has already) and a batch of host steps (with their final outcomes).
* ``record_skips`` records the VMs a batch did not attempt (SKIPPED, with why) unless they have an
  outcome already.

Idempotent: reads, and writes that check first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity

from orchestrator.assessment.cve_run import plan_cves, record_targets
from orchestrator.context import Context
from orchestrator.engine.activities.leases import admit
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import (
    SAMPLE,
    BatchQuery,
    BatchSlice,
    HostSlice,
    PlanInput,
    PlanPage,
    PlanSummary,
    SkipRecord,
    WavePage,
)
from orchestrator.errors import FactStoreError, OrchestratorError
from orchestrator.facts.inventory import InventoryStore
from orchestrator.facts.store import FactStore
from orchestrator.model import HostOutcome, Plan, StepStatus, VmOutcome
from orchestrator.vulns.targets import CveTarget


def plan_summary(facts: FactStore, run_id: str) -> PlanSummary:
    """The recorded plan of ``run_id`` in numbers (:class:`FactStoreError` when there is none)."""
    header = facts.plan_header(run_id)
    if header is None:
        raise FactStoreError(f"no plan is recorded for run {run_id}", step="plan_run", fix="start a new run")
    size = facts.plan_size(run_id)
    sample = tuple(
        f"{b.target}: {b.reason} ({b.code})" for b in facts.plan_notes(run_id, "blocked", 0, SAMPLE)
    )
    return PlanSummary(
        plan_id=header.plan_id, sites=header.sites, vms=size.vms, hosts=size.hosts, waves=size.waves,
        failure_budget=header.failure_budget, blocked=size.blocked, blocked_sample=sample, window=header.window,
        est_s=_estimate_s(facts, run_id, header),
    )  # fmt: skip


def _estimate_s(facts: FactStore, run_id: str, header: Plan) -> int:
    """The plan's learned estimate of the work in seconds (what the live view's ETA scales): each failure
    domain's predicted span, each wave's predicted duration and soak. Window waits are not work."""
    hosts = 0
    for domain in header.host_phase:
        if domain.est_start and domain.est_end:
            span = datetime.fromisoformat(domain.est_end) - datetime.fromisoformat(domain.est_start)
            hosts += max(0, int(span.total_seconds()))
    return hosts + sum(w.est_duration_s + w.soak_s for w in facts.plan_waves(run_id))


class PlanActivities:
    """The planning and slice activities, bound to one :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan_run, self.plan_waves, self.wave_batch, self.host_batch, self.record_skips]

    @activity.defn(name=ActivityName.PLAN_RUN)
    @translated
    def plan_run(self, data: PlanInput) -> PlanSummary:
        request, facts = data.request, self.ctx.facts
        if facts.get_run(request.run_id) is None:  # else an earlier attempt planned it: that plan stands
            if request.window and request.window not in (w.name for w in self.ctx.settings.windows):
                raise OrchestratorError(  # never run a scheduled canary outside a window
                    f"the scheduled run's window {request.window!r} is not in the configuration",
                    step=request.run_id,
                    fix="define the window again, or restart `patchwave serve` so its schedules follow the file",
                )
            store = InventoryStore(facts)
            plan = self.ctx.plan(
                [store.load(ref.snapshot_id) for ref in data.inventories],
                datetime.fromisoformat(data.now),
                selection=request.selection,
                hosts=request.hosts and not request.cves,  # a CVE run patches guests only
                guests=request.guests,
                groups=request.groups,
                sites=request.sites,
                window=request.window,
                override_windows=request.now,
            )
            targets: tuple[CveTarget, ...] = ()
            if request.cves:  # a zero-day run: only the affected VMs, only the fixing packages
                cve_plan = plan_cves(facts, plan, request.cves)
                plan, targets = cve_plan.plan, cve_plan.targets
            plan = admit(facts, request, plan)  # the leases first: before any side effect
            if request.cves:
                record_targets(facts, request.run_id, request.cves, now_override=request.now, plan=plan,
                               targets=targets)  # fmt: skip
            facts.create_run(
                request.run_id,
                plan=plan,
                config_digest=request.config_digest,
                requested_by=request.requested_by,
            )
            self.ctx.log.info("run_planned", run=request.run_id, plan=plan.plan_id, vms=len(plan.vm_steps))
        InventoryStore(facts).unpin(request.run_id)
        return plan_summary(facts, request.run_id)

    @activity.defn(name=ActivityName.PLAN_WAVES)
    @translated
    def plan_waves(self, page: PlanPage) -> WavePage:
        return WavePage(tuple(self.ctx.facts.plan_waves(page.run_id, page.offset, page.limit)))

    @activity.defn(name=ActivityName.WAVE_BATCH)
    @translated
    def wave_batch(self, query: BatchQuery) -> BatchSlice:
        facts = self.ctx.facts
        steps = tuple(facts.wave_steps(query.run_id, query.wave, query.offset, query.limit))
        found = facts.latest_statuses(query.run_id, [s.step_id for s in steps])
        return BatchSlice(steps, tuple(found[s.step_id].value if s.step_id in found else "" for s in steps))

    @activity.defn(name=ActivityName.HOST_BATCH)
    @translated
    def host_batch(self, page: PlanPage) -> HostSlice:
        facts = self.ctx.facts
        steps = tuple(facts.host_steps(page.run_id, page.offset, page.limit))
        outcomes = (facts.outcome(page.run_id, step.step_id) for step in steps)
        # final, not merely concluded: a resumed run attempts the hosts it skipped
        finished = tuple(o for o in outcomes if isinstance(o, HostOutcome) and o.status.final)
        return HostSlice(steps, finished)

    @activity.defn(name=ActivityName.RECORD_SKIPS)
    @translated
    def record_skips(self, record: SkipRecord) -> None:
        facts, skipped = self.ctx.facts, []
        for step_id, reason in record.skipped:
            step = facts.plan_step(record.run_id, step_id)
            if step is not None and facts.outcome(record.run_id, step_id) is None:
                skipped.append(VmOutcome(step_id, step.vm, StepStatus.SKIPPED, error=reason))
        facts.set_outcomes(record.run_id, skipped)
