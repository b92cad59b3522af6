"""``VmPatch``: one guest's patch as a child workflow of ``PatchRun`` (keeps the parent's history small).

baseline health -> snapshot (intent recorded before the call) -> patch -> reboot (policy) ->
health with a deadline -> on failure: revert the recorded snapshot + health -> outcome recorded.
A baseline that ran and found the guest unhealthy -> SKIPPED (a broken guest is not patched); a
baseline that could not run (unreachable guest, host key rejected, no agent...) -> FAILED, not
touched: a guest we cannot check is never reported as fine.
A VM whose outcome is already final in the fact store (a resumed run) is not touched again.

Deterministic: no I/O, time from ``workflow.now()``, activities by name (:mod:`orchestrator.calls`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call, describe, shielded
    from orchestrator.messages import (
        HealthReport,
        PatchResult,
        RebootResult,
        RevertResult,
        SnapshotResult,
        VmOutcomeRecord,
        VmTask,
        site_queue,
    )
    from orchestrator.model import RebootPolicy, StepStatus, VmOutcome

FINAL = (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK, StepStatus.FAILED)


class PatchFailed(Exception):
    """The patch, the reboot or the post-patch health failed: the VM must be reverted."""


def needs_reboot(policy: RebootPolicy, patch: PatchResult) -> bool:
    if policy is RebootPolicy.ALWAYS:
        return True  # vm_reboot itself notices an earlier reboot (boot id) and does not repeat it
    if policy is RebootPolicy.NEVER:
        return False
    return patch.reboot_required


async def revert_and_verify(task: VmTask, queue: str, base: VmOutcome, reason: str) -> VmOutcome:
    """Revert the snapshot recorded for (run, step) and check health: ROLLED_BACK or FAILED."""
    try:
        reverted = await call("vm_revert", task, result_type=RevertResult, queue=queue)
    except ActivityError as err:
        return replace(base, status=StepStatus.FAILED, error=f"{reason}; revert failed: {describe(err)}")
    base = replace(base, snapshot_id=reverted.snapshot_id)
    health = await check_health(
        "vm_verify_health", task, queue, deadline_s=task.step.policy.health_deadline_s
    )
    if health is None or not health.ok:
        why = "health check could not run" if health is None else health.failures
        return replace(base, status=StepStatus.FAILED, error=f"{reason}; still unhealthy after revert: {why}")
    return replace(base, status=StepStatus.ROLLED_BACK, error=reason)


async def check_health(
    name: str, task: VmTask, queue: str, *, deadline_s: float | None = None
) -> HealthReport | None:
    """Run a health activity; ``None`` when the activity itself failed (unreachable guest...)."""
    try:
        return await call(name, task, result_type=HealthReport, queue=queue, timeout_s=deadline_s)
    except ActivityError as err:
        workflow.logger.warning("health activity %s failed: %s", name, describe(err))
        return None


@workflow.defn(name="VmPatch")
class VmPatch:
    def __init__(self) -> None:
        self._stage = "start"
        self._outcome: VmOutcome | None = None  # what is known so far (snapshot id, changes, reboot)

    @workflow.query(name="stage")
    def stage(self) -> str:
        return self._stage

    @workflow.run
    async def run(self, task: VmTask) -> VmOutcome:
        queue = site_queue(task.step.vm.site)
        recorded = await call("vm_recorded_outcome", task, result_type=VmOutcome | None, queue=queue)
        if recorded is not None and recorded.status in FINAL:
            return recorded
        started = workflow.now().isoformat(timespec="seconds")
        self._outcome = VmOutcome(task.step.step_id, task.step.vm, StepStatus.RUNNING, started_at=started)
        try:
            outcome = await self._attempt(task, queue)
        except asyncio.CancelledError:
            # Cancelled after the snapshot: the guest may be half-patched; put it back as it was.
            if self._known.snapshot_id:
                reverted = await shielded(self._reverting(task, queue, "run cancelled while patching"))
                await shielded(self._record(task, queue, reverted))
            raise
        outcome = await self._record(task, queue, outcome)
        if outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK):
            await self._assess(task, queue)
        return outcome

    async def _assess(self, task: VmTask, queue: str) -> None:
        """Record what the guest still has pending (compliance report); never changes the outcome."""
        self._stage = "assess"
        try:
            await call("vm_assess", task, queue=queue)
        except ActivityError as err:
            workflow.logger.warning("post-patch assessment of %s failed: %s", task.step.vm, describe(err))

    @property
    def _known(self) -> VmOutcome:
        assert self._outcome is not None
        return self._outcome

    def _learn(self, **changes: object) -> None:
        self._outcome = replace(self._known, **changes)  # type: ignore[arg-type]

    async def _record(self, task: VmTask, queue: str, outcome: VmOutcome) -> VmOutcome:
        outcome = replace(outcome, finished_at=workflow.now().isoformat(timespec="seconds"))
        await call("vm_record_outcome", VmOutcomeRecord(task.run_id, outcome), queue=queue)
        return outcome

    async def _attempt(self, task: VmTask, queue: str) -> VmOutcome:
        self._stage = "baseline"
        try:
            baseline = await call("vm_baseline_health", task, result_type=HealthReport, queue=queue)
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the run was cancelled: not attempted, resumable
                return replace(self._known, status=StepStatus.SKIPPED, error="not attempted: run cancelled")
            # Not checked is not healthy: an unreachable or impostor guest must not pass as skipped.
            why = f"not touched: baseline health check could not run: {describe(err)}"
            return replace(self._known, status=StepStatus.FAILED, error=why)
        if not baseline.ok:  # checked and already broken: not ours to patch
            why = f"unhealthy before patching: {baseline.failures}"
            return replace(self._known, status=StepStatus.SKIPPED, error=why)
        self._stage = "snapshot"
        try:
            snap = await call("vm_snapshot", task, result_type=SnapshotResult, queue=queue)
        except ActivityError as err:
            return replace(self._known, status=StepStatus.FAILED, error=f"snapshot failed: {describe(err)}")
        self._learn(snapshot_id=snap.snapshot_id)
        try:
            await self._patch_and_verify(task, queue)
        except PatchFailed as failure:
            return await shielded(self._reverting(task, queue, str(failure)))
        return replace(self._known, status=StepStatus.SUCCEEDED)

    async def _reverting(self, task: VmTask, queue: str, reason: str) -> VmOutcome:
        self._stage = "revert"
        return await revert_and_verify(task, queue, self._known, reason)

    async def _patch_and_verify(self, task: VmTask, queue: str) -> None:
        """Patch, reboot when the policy says so, verify health; :class:`PatchFailed` otherwise."""
        policy = task.step.policy
        self._stage = "patch"
        try:
            patch = await call(
                "vm_patch", task, result_type=PatchResult, queue=queue, timeout_s=policy.patch_timeout_s
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the run was cancelled while patching
                raise PatchFailed("run cancelled while patching") from err
            raise PatchFailed(f"patch failed: {describe(err)}") from err
        self._learn(packages_changed=len(patch.changed))
        if needs_reboot(policy.reboot, patch):
            self._stage = "reboot"
            try:
                reboot = await call("vm_reboot", task, result_type=RebootResult, queue=queue)
            except ActivityError as err:
                raise PatchFailed(f"reboot failed: {describe(err)}") from err
            self._learn(rebooted=reboot.rebooted)
        self._stage = "verify"
        health = await check_health("vm_verify_health", task, queue, deadline_s=policy.health_deadline_s)
        if health is None or not health.ok:
            why = "health check could not run" if health is None else health.failures
            raise PatchFailed(f"unhealthy after patching: {why}")


@workflow.defn(name="VmRollback")
class VmRollback:
    """`patchwave rollback RUN`: revert the snapshot recorded for (run, step), then verify health."""

    @workflow.run
    async def run(self, task: VmTask) -> VmOutcome:
        queue = site_queue(task.step.vm.site)
        started = workflow.now().isoformat(timespec="seconds")
        base = VmOutcome(
            step_id=task.step.step_id, vm=task.step.vm, status=StepStatus.RUNNING, started_at=started
        )
        outcome = await revert_and_verify(task, queue, base, "rolled back on request")
        outcome = replace(outcome, finished_at=workflow.now().isoformat(timespec="seconds"))
        await call("vm_record_outcome", VmOutcomeRecord(task.run_id, outcome), queue=queue)
        return outcome
