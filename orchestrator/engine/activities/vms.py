"""Per-VM activities. Each one asks reality (and the fact store) first and does only what is missing.

Delivery is at least once: a worker may die after the side effect and before Temporal heard of
it, so every activity here is check-then-act:

* ``vm_snapshot`` reuses a snapshot whose ownership says (run, step); otherwise it records the
  intent in the fact store *before* creating one, and the platform id after.
* ``vm_patch`` skips when the fact store says this (run, step) was patched and the guest's
  installed versions agree; a patch in flight (intent, no result) is carried on with the detached
  job it started; otherwise it assesses, and applies only when updates are pending. Done means
  the package manager finished and is consistent (:mod:`.patching`).
* ``vm_reboot`` records the guest's boot id before rebooting; a re-run whose guest already has a
  new boot id only confirms it, one whose guest is not back yet only waits for it (no second
  reboot). The wait ends at the first REBOOT intent + ``policy.reboot_timeout`` (raised by the VM's
  learned reboot durations): :class:`RebootTimedOut`, and VmPatch reverts.
* ``vm_revert`` reverts only the snapshot id recorded for this (run, step) — never "the latest".
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from orchestrator import snapshots
from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.patching import PatchStep
from orchestrator.engine.activities.translation import OwnershipError, translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import (
    PatchResult,
    RebootResult,
    RevertResult,
    SnapshotRelease,
    SnapshotResult,
    VmOutcomeRecord,
    VmTask,
)
from orchestrator.engine.retry import LEARNED_REBOOT_FACTOR
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import (
    HealthDetail,
    RebootDetail,
    SnapshotDetail,
    SnapshotIntent,
)
from orchestrator.facts.leases import LeaseTarget
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import RebootTimedOut
from orchestrator.guests.patcher import GuestPatcher
from orchestrator.guests.reboot import (
    RebootOutcome,
    confirm_reboot,
    read_boot_id,
    reboot_and_wait,
    wait_for_new_boot_id,
)
from orchestrator.health import run_checks, wait_healthy
from orchestrator.model import HealthReport, StepStatus, VmOutcome
from providers.base import Capability, PowerState, SnapshotOwnership, VmInfo, snapshot_name
from providers.errors import ProviderError
from providers.timing import utc_now_iso


class VmActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.vm_recorded_outcome,
            self.vm_baseline_health,
            self.vm_snapshot,
            self.vm_patch,
            self.vm_reboot,
            self.vm_verify_health,
            self.vm_revert,
            self.vm_release_snapshot,
            self.vm_record_outcome,
            self.vm_assess,
        ]

    def _info(self, task: VmTask) -> VmInfo:
        return self.ctx.provider(task.step.vm.site).get_vm(task.step.vm)

    # ---------------------------------------------------------------- bookkeeping

    @activity.defn(name=ActivityName.VM_RECORDED_OUTCOME)
    @translated
    def vm_recorded_outcome(self, task: VmTask) -> VmOutcome | None:
        outcome = self.ctx.facts.outcome(task.run_id, task.step.step_id)
        return outcome if isinstance(outcome, VmOutcome) else None

    @activity.defn(name=ActivityName.VM_RECORD_OUTCOME)
    @translated
    def vm_record_outcome(self, record: VmOutcomeRecord) -> None:
        run_id, outcome = record.run_id, record.outcome
        self.ctx.facts.set_outcome(run_id, outcome)
        if outcome.status is StepStatus.SUCCEEDED and outcome.snapshot_id:
            self.ctx.facts.mark_snapshot(run_id, outcome.step_id, "kept")
        self.ctx.facts.release_leases(run_id, [LeaseTarget.vm(outcome.vm)])  # the run is done with it
        self.ctx.log.info(
            "vm_outcome", run=run_id, vm=str(outcome.vm), status=outcome.status.value, error=outcome.error
        )

    # ---------------------------------------------------------------- health

    @activity.defn(name=ActivityName.VM_BASELINE_HEALTH)
    @translated
    def vm_baseline_health(self, task: VmTask) -> HealthReport:
        info = self._info(task)
        target = self.ctx.health_target(task.step.vm, info)
        try:
            with heartbeating("baseline health"):
                # strict: a guest the checks cannot reach (or trust) fails the activity — it was
                # not found unhealthy, it was not checked (VmPatch: FAILED, not touched)
                report = run_checks(self.ctx.health_checks(), target, clock=self.ctx.clock, strict=True)
        finally:
            target.close()
        self._record_health(task, Action.BASELINE_HEALTH, report)
        return report

    @activity.defn(name=ActivityName.VM_VERIFY_HEALTH)
    @translated
    def vm_verify_health(self, task: VmTask) -> HealthReport:
        info = self._info(task)
        target = self.ctx.health_target(task.step.vm, info)
        try:
            with heartbeating(f"waiting for {task.step.vm} to be healthy"):
                report = wait_healthy(
                    self.ctx.health_checks(),
                    target,
                    deadline_s=task.step.policy.health_deadline_s,
                    clock=self.ctx.clock,
                )
        finally:
            target.close()
        self._record_health(task, Action.VERIFY_HEALTH, report)
        return report

    def _record_health(self, task: VmTask, action: Action, report: HealthReport) -> None:
        detail = HealthDetail(checks=report.results)
        self.ctx.facts.record_result(task.run_id, task.step.step_id, action, ok=report.ok, detail=detail)

    # ---------------------------------------------------------------- snapshot

    @activity.defn(name=ActivityName.VM_SNAPSHOT)
    @translated
    def vm_snapshot(self, task: VmTask) -> SnapshotResult:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        provider = self.ctx.require(vm.site, Capability.SNAPSHOT)
        for snap in provider.list_snapshots(vm):
            if snap.owned_by(run_id, step_id):
                self.ctx.facts.register_snapshot_created(run_id, step_id, snap.id)
                self.ctx.log.info("snapshot_reused", run=run_id, vm=str(vm), snapshot=snap.id)
                return SnapshotResult(snapshot_id=snap.id)
        name = snapshot_name(run_id, step_id)
        self.ctx.facts.register_snapshot_intent(
            run_id, step_id, vm, name, expires_at=task.snapshot_expires_at
        )
        self.ctx.facts.record_intent(
            run_id, step_id, Action.SNAPSHOT, target=str(vm), detail=SnapshotIntent(name)
        )
        owner = SnapshotOwnership(run_id, step_id, utc_now_iso(self.ctx.clock), task.snapshot_expires_at)
        policy = task.step.policy
        with heartbeating(f"creating snapshot {name}"):
            snap = provider.create_snapshot(
                vm,
                name,
                owner.to_description(),
                memory=policy.snapshot_memory,
                quiesce=policy.snapshot_quiesce,
            )
        self.ctx.facts.register_snapshot_created(run_id, step_id, snap.id)
        self.ctx.facts.record_result(
            run_id, step_id, Action.SNAPSHOT, ok=True, detail=SnapshotDetail(snap.id)
        )
        self.ctx.log.info("snapshot_created", run=run_id, vm=str(vm), snapshot=snap.id)
        return SnapshotResult(snapshot_id=snap.id)

    @activity.defn(name=ActivityName.VM_REVERT)
    @translated
    def vm_revert(self, task: VmTask) -> RevertResult:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        records = [
            s for s in self.ctx.facts.snapshots(run_id=run_id) if s.step_id == step_id and s.snapshot_id
        ]
        if not records:
            raise OwnershipError(
                f"no snapshot is recorded for {vm} in run {run_id}; refusing to revert anything"
            )
        snapshot_id = records[-1].snapshot_id
        provider = self.ctx.require(vm.site, Capability.SNAPSHOT)
        if snapshots.owned(provider, vm, snapshot_id, run_id, step_id) is None:
            raise OwnershipError(
                f"snapshot {snapshot_id!r} of {vm} is gone or not owned by run {run_id}; not reverting"
            )
        self.ctx.facts.record_intent(
            run_id, step_id, Action.REVERT, target=str(vm), detail=SnapshotDetail(snapshot_id)
        )
        with heartbeating(f"reverting {vm} to {snapshot_id}"):
            provider.revert_snapshot(vm, snapshot_id)
            self._power_on_if_stopped(task)
        self.ctx.facts.mark_snapshot(run_id, step_id, "reverted")
        self.ctx.facts.record_result(
            run_id, step_id, Action.REVERT, ok=True, detail=SnapshotDetail(snapshot_id)
        )
        self.ctx.log.info("snapshot_reverted", run=run_id, vm=str(vm), snapshot=snapshot_id)
        return RevertResult(snapshot_id=snapshot_id)

    @activity.defn(name=ActivityName.VM_RELEASE_SNAPSHOT)
    @translated
    def vm_release_snapshot(self, task: VmTask) -> SnapshotRelease:
        """A VM prepared ahead of its concurrency slot that will not be patched now (the failure budget
        halted the run, its window no longer admits it, the run was cancelled): delete the snapshots
        owned by (run, step). The guest was never changed — a revert would only throw away what it
        wrote since. Refused when the journal has a patch intent for (run, step): a patched VM keeps its
        rollback point. Idempotent: a snapshot already gone is released."""
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        if any(
            r.phase is Phase.INTENT for r in self.ctx.facts.step_history(run_id, step_id, action=Action.PATCH)
        ):
            raise OwnershipError(
                f"{vm} has a patch on record in run {run_id}; its snapshot is its rollback point, not released"
            )
        provider = self.ctx.require(vm.site, Capability.SNAPSHOT)
        record = self.ctx.facts.snapshot(run_id, step_id)
        owned = [s.id for s in provider.list_snapshots(vm) if s.owned_by(run_id, step_id)]
        ids = list(
            dict.fromkeys(([record.snapshot_id] if record is not None and record.snapshot_id else []) + owned)
        )
        for snapshot_id in ids:
            self.ctx.facts.record_intent(
                run_id, step_id, Action.RELEASE_SNAPSHOT, target=str(vm), detail=SnapshotDetail(snapshot_id)
            )
            with heartbeating(f"deleting snapshot {snapshot_id} of {vm}"):
                removal = snapshots.remove(
                    self.ctx.facts, provider, vm, snapshot_id, run_id=run_id, step_id=step_id
                )
            if removal is snapshots.Removal.REFUSED:
                raise OwnershipError(
                    f"snapshot {snapshot_id!r} of {vm} is not owned by run {run_id}; not deleted"
                )
            self.ctx.facts.record_result(
                run_id, step_id, Action.RELEASE_SNAPSHOT, ok=True, detail=SnapshotDetail(snapshot_id)
            )
            self.ctx.log.info(
                "snapshot_released", run=run_id, vm=str(vm), snapshot=snapshot_id, removal=removal
            )
        if record is not None and not record.snapshot_id:  # an intent whose create never returned an id
            self.ctx.facts.mark_snapshot(run_id, step_id, "deleted")
        return SnapshotRelease(snapshot_ids=tuple(ids))

    def _power_on_if_stopped(self, task: VmTask) -> None:
        """A disk-only snapshot reverts to a stopped VM: start it again."""
        provider = self.ctx.provider(task.step.vm.site)
        if (
            provider.get_vm(task.step.vm).power is PowerState.STOPPED
            and Capability.POWER in provider.capabilities
        ):
            self.ctx.require(task.step.vm.site, Capability.POWER).power_on(task.step.vm)

    # ---------------------------------------------------------------- patch and reboot

    @activity.defn(name=ActivityName.VM_PATCH)
    @translated
    def vm_patch(self, task: VmTask) -> PatchResult:
        """Patch as a detached job, wait (until the deadline), verify: :class:`PatchStep`."""
        channel = self.ctx.guest_channel(task.step.vm, self._info(task))
        try:
            return PatchStep(self.ctx, task, GuestPatcher(channel, clock=self.ctx.clock)).run()
        finally:
            channel.close()

    @activity.defn(name=ActivityName.VM_ASSESS)
    @translated
    def vm_assess(self, task: VmTask) -> None:
        """What the guest has pending once its patch is done (or reverted): the compliance report's
        "after" assessment. Read-only."""
        vm = task.step.vm
        channel = self.ctx.guest_channel(vm, self._info(task))
        try:
            with heartbeating(f"assessing {vm}"):
                assessment = GuestPatcher(channel, clock=self.ctx.clock).assess()
        finally:
            channel.close()
        self.ctx.facts.record_assessment(task.run_id, task.step.step_id, vm, assessment, phase="after")

    @activity.defn(name=ActivityName.VM_REBOOT)
    @translated
    def vm_reboot(self, task: VmTask) -> RebootResult:
        """Reboot and wait for a new boot id, at most the reboot timeout from the first REBOOT intent
        (:class:`RebootTimedOut`); a re-run after an earlier reboot only confirms it."""
        run_id, step_id, vm = task.run_id, task.step.step_id, task.step.vm
        channel = self.ctx.guest_channel(vm, self._info(task))
        try:
            timeout = self._reboot_timeout(task)
            intent = self._reboot_intent(task)
            current = _boot_id(channel)
            if intent is not None and current not in ("", intent.boot_id):
                return RebootResult(rebooted=True)  # an earlier attempt rebooted it already
            with heartbeating(f"rebooting {vm}"):
                done = self._reboot(task, channel, intent, current, timeout)
        finally:
            channel.close()
        detail = RebootDetail(done.boot_id_after, done.kernel_after)
        self.ctx.facts.record_result(run_id, step_id, Action.REBOOT, ok=True, detail=detail)
        return RebootResult(rebooted=True)

    def _reboot(
        self,
        task: VmTask,
        channel: GuestChannel,
        intent: _RebootInFlight | None,
        current: str,
        timeout: float,
    ) -> RebootOutcome:
        run_id, step_id, vm = task.run_id, task.step.step_id, task.step.vm
        platform = Capability.GUEST_REBOOT in self.ctx.provider(vm.site).capabilities  # else the channel
        power = self.ctx.require(vm.site, Capability.GUEST_REBOOT) if platform else None
        if intent is not None and not current:  # an earlier attempt rebooted it; not back yet
            started = datetime.fromisoformat(intent.recorded_at)
            left = timeout - (self.ctx.clock.now() - started).total_seconds()
            before = intent.boot_id
            try:
                after = wait_for_new_boot_id(
                    channel, before, timeout=max(0.0, left), clock=self.ctx.clock, total=timeout
                )
            except RebootTimedOut as exc:
                raise self._reboot_timed_out(task, exc, started) from exc
            return confirm_reboot(channel, before, after, "")
        self.ctx.facts.record_intent(
            run_id, step_id, Action.REBOOT, target=str(vm), detail=RebootDetail(current)
        )
        started = self.ctx.clock.now()
        try:
            return reboot_and_wait(
                channel, timeout=timeout, clock=self.ctx.clock, power=power, vm=vm if platform else None
            )
        except RebootTimedOut as exc:
            raise self._reboot_timed_out(task, exc, started) from exc

    def _reboot_timed_out(self, task: VmTask, exc: RebootTimedOut, started: datetime) -> RebootTimedOut:
        """Journal the failed reboot; the error names when the reboot was asked for."""
        at = started.astimezone(UTC).strftime("%H:%M:%SZ")
        error = RebootTimedOut(f"rebooted at {at}, {exc.message}")  # the outcome names the VM
        self.ctx.facts.record_result(
            task.run_id, task.step.step_id, Action.REBOOT, ok=False, detail=RebootDetail(""), error=str(error)
        )
        return error

    def _reboot_timeout(self, task: VmTask) -> float:
        """``policy.reboot_timeout``, raised by what this VM took before: at least twice the median
        of its last reboots, at most three times the configured value."""
        configured = float(task.step.policy.reboot_timeout_s)
        past = self.ctx.facts.action_durations(task.step.step_id, Action.REBOOT, limit=5)
        learned = 2 * statistics.median(past) if past else 0.0
        return max(configured, min(learned, LEARNED_REBOOT_FACTOR * configured))

    def _reboot_intent(self, task: VmTask) -> _RebootInFlight | None:
        """The latest REBOOT intent of (run, step) if no result followed it (an attempt in flight)."""
        history = self.ctx.facts.step_history(task.run_id, task.step.step_id, action=Action.REBOOT)
        last = history[-1] if history else None
        if last is not None and last.phase is Phase.INTENT and isinstance(last.detail, RebootDetail):
            return _RebootInFlight(boot_id=last.detail.boot_id, recorded_at=last.recorded_at)
        return None


@dataclass(frozen=True, slots=True)
class _RebootInFlight:
    """A REBOOT intent with no result yet: the boot id before it and when it was asked for."""

    boot_id: str
    recorded_at: str


def _boot_id(channel: GuestChannel) -> str:
    try:
        return read_boot_id(channel, timeout=30)
    except ProviderError:
        return ""
