"""The run-level activities: setup, discovery, bookkeeping, snapshot cleanup, rollback targets
(planning and the plan's slices: :mod:`.plans`).

Idempotent; each checks real state first (delivery is at least once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from temporalio import activity

from orchestrator import snapshots
from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import beat
from orchestrator.engine.activities.leases import readmit, workflow_id
from orchestrator.engine.activities.plans import plan_summary
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import (
    CleanupInput,
    DiscoverInput,
    FinishInput,
    InventoryRef,
    RollbackRequest,
    RollbackTargets,
    RunSetup,
    RunStatusUpdate,
    VmTask,
    WindowQuery,
    WindowSlot,
    current_limits,
)
from orchestrator.errors import ConfigChanged, LeaseHeld
from orchestrator.facts.gates import ENGINE
from orchestrator.facts.leases import LeaseTarget
from orchestrator.facts.records import SnapshotRecord
from orchestrator.facts.runs import FINISHED_STATUSES
from orchestrator.facts.store import FactStore
from orchestrator.model import CleanupResult, HostOutcome, RunRequest, RunSummary, StepStatus, VmOutcome
from orchestrator.windows import occurrence_at
from providers.base import Capability
from providers.errors import NotFound

#: Outcomes a RunSummary lists at most (failed and rolled back first; counts cover every VM).
SUMMARY_PAGE = 100


class RunActivities:
    """The run-level activities, bound to one :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def central(self) -> list[Callable[..., Any]]:
        return [
            self.run_setup,
            self.set_run_status,
            self.finish_run,
            self.rollback_targets,
            self.window_slot,
        ]

    def site(self) -> list[Callable[..., Any]]:
        return [self.discover, self.cleanup_expired_snapshots]

    # ---------------------------------------------------------------- run level (central queue)

    @activity.defn(name=ActivityName.RUN_SETUP)
    @translated
    def run_setup(self, request: RunRequest) -> RunSetup:
        settings = self.ctx.settings
        if request.config_digest and request.config_digest != settings.digest:
            raise ConfigChanged(request.run_id, request.config_digest, settings.digest)
        if self.ctx.facts.get_run(request.run_id) is None:  # a scheduled run is scoped to its site
            sites = tuple(s for s in settings.sites if not request.sites or s in request.sites)
            return RunSetup(
                sites=sites, limits=current_limits(), count_rolled_back=settings.policy.count_rolled_back
            )
        plan = plan_summary(self.ctx.facts, request.run_id)
        # a resumed run takes its own leases again for the steps without a final outcome
        whole = self.ctx.facts.run_plan(request.run_id)
        if whole is not None:
            done = [o.step_id for o in self.ctx.facts.outcomes(request.run_id) if o.status.final]
            readmit(self.ctx.facts, request, whole, done)
        return RunSetup(
            sites=plan.sites, plan=plan, limits=current_limits(),
            count_rolled_back=settings.policy.count_rolled_back, forced=self.ctx.facts.forced_rings(request.run_id),
        )  # fmt: skip

    @activity.defn(name=ActivityName.SET_RUN_STATUS)
    @translated
    def set_run_status(self, update: RunStatusUpdate) -> None:
        if self.ctx.facts.get_run(update.run_id) is not None:
            self.ctx.facts.set_run_status(update.run_id, update.status, reason=update.reason)
        if update.status in FINISHED_STATUSES:  # failed or cancelled: nothing more is done
            self.ctx.facts.release_leases(update.run_id)

    @activity.defn(name=ActivityName.FINISH_RUN)
    @translated
    def finish_run(self, data: FinishInput) -> RunSummary:
        """VMs the run did not attempt go on record (SKIPPED, with why); the run gets its status; the
        summary comes from the fact store: every VM counted, a page of outcomes listed."""
        facts, run_id = self.ctx.facts, data.run_id
        if data.skip_reason:
            facts.skip_unattempted(run_id, data.skip_reason)
        if data.refused_ring:
            facts.record_gate(
                run_id, data.refused_ring, "refused", decided_by=ENGINE, reason=data.halted_reason
            )
        facts.set_run_status(run_id, data.status, reason=data.halted_reason)
        facts.release_leases(run_id)
        summary = RunSummary(
            run_id=run_id, status=data.status, halted_reason=data.halted_reason,
            vms=tuple(o for o in facts.outcomes_page(run_id, kind="vm", limit=SUMMARY_PAGE) if isinstance(o, VmOutcome)),
            hosts=tuple(o for o in facts.outcomes_page(run_id, kind="host", limit=SUMMARY_PAGE)
                        if isinstance(o, HostOutcome)),
            counts=facts.outcome_counts(run_id, "vm"),
            hosts_failed=facts.outcome_counts(run_id, "host").get(StepStatus.FAILED.value, 0),
        )  # fmt: skip
        self.ctx.log.info(
            "run_finished",
            run=run_id,
            status=data.status,
            succeeded=summary.count(StepStatus.SUCCEEDED),
            rolled_back=summary.count(StepStatus.ROLLED_BACK),
            failed=summary.count(StepStatus.FAILED),
            skipped=summary.count(StepStatus.SKIPPED),
        )
        return summary

    @activity.defn(name=ActivityName.ROLLBACK_TARGETS)
    @translated
    def rollback_targets(self, request: RollbackRequest) -> RollbackTargets:
        record = self.ctx.facts.get_run(request.run_id)
        if record is None:
            raise NotFound(f"no run {request.run_id!r} in the fact store", code="not_found")
        tasks = []
        for snap in self.ctx.facts.snapshots(run_id=request.run_id):
            step = self.ctx.facts.plan_step(request.run_id, snap.step_id)
            if step is None or not snap.snapshot_id or snap.state == "deleted":
                continue
            if request.vm_names and step.vm.name not in request.vm_names:
                continue
            tasks.append(VmTask(request.run_id, step, snap.expires_at))
        # While the run (or anyone) still works on a VM it is not reverted under it: the
        # rollback takes the VMs' leases first (owner: the RollbackRun workflow).
        owner = workflow_id() or f"{request.run_id}-rollback"
        self.ctx.facts.acquire_leases(owner, [LeaseTarget.vm(t.step.vm) for t in tasks], operation="rollback")
        return RollbackTargets(tasks=tuple(tasks))

    @activity.defn(name=ActivityName.WINDOW_SLOT)
    @translated
    def window_slot(self, query: WindowQuery) -> WindowSlot:
        spec = self.ctx.settings.window(query.window)
        found = occurrence_at(spec, datetime.fromisoformat(query.now))
        if found is None:  # a finished RRULE, or every occurrence blacked out: the gate skips the VM
            return WindowSlot("", "", "")
        return WindowSlot(
            *(t.isoformat(timespec="seconds") for t in (found.start, found.end, found.cutoff_at))
        )

    # ---------------------------------------------------------------- site queue

    @activity.defn(name=ActivityName.DISCOVER)
    @translated
    def discover(self, data: DiscoverInput) -> InventoryRef:
        """The site's inventory goes to the fact store (pinned to the run until it has planned); the
        workflow gets its id."""
        inventory = self.ctx.inventory_of(data.site)
        snapshot = self.ctx.record_inventory(inventory, pin=data.run_id)
        hosts, vms = len(inventory.hosts), len(inventory.vms)
        self.ctx.log.info("site_discovered", site=data.site, hosts=hosts, vms=vms, snapshot=snapshot)
        return InventoryRef(site=data.site, snapshot_id=snapshot, hosts=hosts, vms=vms)

    @activity.defn(name=ActivityName.CLEANUP_EXPIRED_SNAPSHOTS)
    @translated
    def cleanup_expired_snapshots(self, data: CleanupInput) -> CleanupResult:
        provider = self.ctx.require(data.site, Capability.SNAPSHOT)
        now = datetime.fromisoformat(data.now)
        facts, owner = self.ctx.facts, workflow_id()
        due = snapshots.due(
            facts, data.site, now, run_id=data.run_id, include_unexpired=data.include_unexpired
        )
        records, kept = snapshots.not_in_use(facts, due, caller=owner)
        if owner:  # inside a run: a VM another run or operation holds is left for a later cleanup
            records, busy = _leased(facts, owner, records)
            kept += busy
        log = self.ctx.log.bind(site=data.site)
        try:
            result = snapshots.clean_up(facts, provider, records, log=log, progress=beat)
        finally:
            if owner:
                facts.release_leases(owner, [LeaseTarget.vm(r.vm) for r in records])
        return replace(result, in_use=tuple(kept))


def _leased(
    facts: FactStore, owner: str, records: list[SnapshotRecord]
) -> tuple[list[SnapshotRecord], list[str]]:
    """The records whose VM lease ``owner`` could take (one by one), and labels of the others."""
    taken: list[SnapshotRecord] = []
    busy: list[str] = []
    for record in records:
        try:
            facts.acquire_leases(owner, [LeaseTarget.vm(record.vm)], operation="cleanup")
            taken.append(record)
        except LeaseHeld as held:
            busy.append(f"{record.vm.name}/{record.snapshot_id}: {held.message}")
    return taken, busy
