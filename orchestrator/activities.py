"""Temporal activities: all of patchwave's I/O. Idempotent; each checks real state first.

This module holds the run-level activities (setup, discovery, planning, bookkeeping, snapshot
cleanup, rollback targets) and assembles the per-VM (:mod:`orchestrator.vm_activities`) and
per-host (:mod:`orchestrator.host_activities`) ones. Which queue runs what:

* ``patchwave`` (central): run_setup, plan_run, set_run_status, finish_run, rollback_targets,
  window_slot, notify_setup, notify (:mod:`orchestrator.notify_activities`)
* ``patchwave-site-<site>``: discover, cleanup_expired_snapshots and every vm_*/host_* activity
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from orchestrator.activity_support import beat, translated
from orchestrator.context import Context
from orchestrator.errors import ConfigChanged
from orchestrator.host_activities import HostActivities
from orchestrator.messages import (
    CleanupInput,
    CleanupResult,
    PlanInput,
    RollbackRequest,
    RollbackTargets,
    RunSetup,
    RunStatusUpdate,
    VmTask,
    WindowQuery,
    WindowSlot,
)
from orchestrator.model import HostOutcome, Plan, RunRequest, RunSummary, StepStatus, VmOutcome
from orchestrator.notify_activities import NotifyActivities
from orchestrator.planning import plan_from
from orchestrator.vm_activities import VmActivities
from orchestrator.windows import NoWindow, best_window
from providers.base import Capability, Inventory, NotFound, ProviderError

FINAL = (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK, StepStatus.FAILED)


class Activities:
    """Every activity, bound to one :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.vms = VmActivities(ctx)
        self.hosts = HostActivities(ctx)
        self.notices = NotifyActivities(ctx)

    def central(self) -> list:
        return [
            self.run_setup,
            self.plan_run,
            self.set_run_status,
            self.finish_run,
            self.rollback_targets,
            self.window_slot,
            *self.notices.all(),
        ]

    def site(self) -> list:
        return [self.discover, self.cleanup_expired_snapshots, *self.vms.all(), *self.hosts.all()]

    # ---------------------------------------------------------------- run level (central queue)

    @activity.defn(name="run_setup")
    @translated
    def run_setup(self, request: RunRequest) -> RunSetup:
        settings = self.ctx.settings
        if request.config_digest and request.config_digest != settings.digest:
            raise ConfigChanged(request.run_id, request.config_digest, settings.digest)
        record = self.ctx.facts.get_run(request.run_id)
        if record is None:  # a scheduled run is scoped to its site
            return RunSetup(sites=tuple(s for s in settings.sites if not request.sites or s in request.sites))
        plan = record.plan()
        vms, hosts = [], []
        for step_id in [s.step_id for s in plan.vm_steps] + [h.step_id for h in plan.host_steps]:
            outcome = self.ctx.facts.outcome(request.run_id, step_id)
            if isinstance(outcome, VmOutcome) and outcome.status in FINAL:
                vms.append(outcome)
            elif isinstance(outcome, HostOutcome) and outcome.status in FINAL:
                hosts.append(outcome)
        return RunSetup(sites=plan.sites, plan=plan, finished_vms=tuple(vms), finished_hosts=tuple(hosts))

    @activity.defn(name="plan_run")
    @translated
    def plan_run(self, data: PlanInput) -> Plan:
        request = data.request
        recorded = self.ctx.facts.get_run(request.run_id)
        if recorded is not None:  # an earlier attempt planned and recorded it: that plan stands
            return recorded.plan()
        plan = plan_from(
            self.ctx,
            data.inventories,
            datetime.fromisoformat(data.now),
            selection=request.selection,
            hosts=request.hosts,
            guests=request.guests,
            groups=request.groups,
            sites=request.sites,
        )
        self.ctx.facts.create_run(
            request.run_id, plan=plan, config_digest=request.config_digest, requested_by=request.requested_by
        )
        self.ctx.log.info("run_planned", run=request.run_id, plan=plan.plan_id, vms=len(plan.vm_steps))
        return plan

    @activity.defn(name="set_run_status")
    @translated
    def set_run_status(self, update: RunStatusUpdate) -> None:
        if self.ctx.facts.get_run(update.run_id) is not None:
            self.ctx.facts.set_run_status(update.run_id, update.status, reason=update.reason)

    @activity.defn(name="finish_run")
    @translated
    def finish_run(self, summary: RunSummary) -> None:
        for vm in summary.vms:  # VMs the run did not attempt (halted, dry run): on record too
            if vm.status is StepStatus.SKIPPED and self.ctx.facts.outcome(summary.run_id, vm.step_id) is None:
                self.ctx.facts.set_outcome(summary.run_id, vm)
        self.ctx.facts.set_run_status(summary.run_id, summary.status, reason=summary.halted_reason)
        self.ctx.log.info(
            "run_finished",
            run=summary.run_id,
            status=summary.status,
            succeeded=summary.count(StepStatus.SUCCEEDED),
            rolled_back=summary.count(StepStatus.ROLLED_BACK),
            failed=summary.count(StepStatus.FAILED),
            skipped=summary.count(StepStatus.SKIPPED),
        )

    @activity.defn(name="rollback_targets")
    @translated
    def rollback_targets(self, request: RollbackRequest) -> RollbackTargets:
        record = self.ctx.facts.get_run(request.run_id)
        if record is None:
            raise NotFound(f"no run {request.run_id!r} in the fact store", code="not_found")
        steps = {s.step_id: s for s in record.plan().vm_steps}
        tasks = []
        for snap in self.ctx.facts.snapshots(run_id=request.run_id):
            step = steps.get(snap.step_id)
            if step is None or not snap.snapshot_id or snap.state == "deleted":
                continue
            if request.vm_names and step.vm.name not in request.vm_names:
                continue
            tasks.append(VmTask(request.run_id, step, snap.expires_at))
        return RollbackTargets(tasks=tuple(tasks))

    @activity.defn(name="window_slot")
    @translated
    def window_slot(self, query: WindowQuery) -> WindowSlot:
        spec = self.ctx.settings.window(query.window)
        try:
            start, end = best_window(spec, datetime.fromisoformat(query.now))
        except NoWindow:  # a finished RRULE, or every occurrence blacked out: the gate skips the VM
            return WindowSlot("", "", "")
        iso = [t.isoformat(timespec="seconds") for t in (start, end, end - spec.cutoff)]
        return WindowSlot(*iso)

    # ---------------------------------------------------------------- site queue

    @activity.defn(name="discover")
    @translated
    def discover(self, site: str) -> Inventory:
        inventory = self.ctx.require(site, Capability.INVENTORY).inventory()
        self.ctx.log.info("site_discovered", site=site, hosts=len(inventory.hosts), vms=len(inventory.vms))
        return inventory

    @activity.defn(name="cleanup_expired_snapshots")
    @translated
    def cleanup_expired_snapshots(self, data: CleanupInput) -> CleanupResult:
        facts, provider = self.ctx.facts, self.ctx.require(data.site, Capability.SNAPSHOT)
        now = datetime.fromisoformat(data.now)
        if data.include_unexpired:
            records = [
                r for r in facts.snapshots(run_id=data.run_id) if r.state in ("created", "kept", "reverted")
            ]
        else:  # a rolled-back VM's snapshot expires like a kept one
            reverted = [r for r in facts.snapshots(state="reverted") if r.expires_at]
            records = facts.expired_snapshots(now) + [
                r for r in reverted if datetime.fromisoformat(r.expires_at) <= now
            ]
        deleted, gone, refused = [], [], []
        for rec in records:
            if rec.vm.site != data.site or (data.run_id and rec.run_id != data.run_id) or not rec.snapshot_id:
                continue
            beat(f"cleaning {rec.vm.name}")
            label = f"{rec.vm.name}/{rec.snapshot_id}"
            try:
                found = {s.id: s for s in provider.list_snapshots(rec.vm)}.get(rec.snapshot_id)
            except NotFound:
                found = None
            if found is None:
                facts.mark_snapshot(rec.run_id, rec.step_id, "deleted")
                gone.append(label)
                continue
            owner = found.ownership
            if owner is None or (owner.run_id, owner.step_id) != (rec.run_id, rec.step_id):
                facts.mark_snapshot(rec.run_id, rec.step_id, "leaked")
                refused.append(label)
                continue
            try:
                provider.delete_snapshot(rec.vm, rec.snapshot_id)
            except ProviderError as exc:
                self.ctx.log.warning(
                    "snapshot_delete_failed", vm=str(rec.vm), snapshot=rec.snapshot_id, error=str(exc)
                )
                if exc.retryable:
                    raise
                continue
            facts.mark_snapshot(rec.run_id, rec.step_id, "deleted")
            deleted.append(label)
        self.ctx.log.info(
            "snapshots_cleaned", site=data.site, deleted=len(deleted), gone=len(gone), refused=len(refused)
        )
        return CleanupResult(tuple(deleted), tuple(gone), tuple(refused))
