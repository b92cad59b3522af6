"""One guest's patch (:class:`VmPatching`), run inline by its ``WaveBatch`` (``VmPatch``: the child
workflow per VM of runs started before ``vm-inline``).

baseline health -> pause the automatic updater -> full backup (policy) -> snapshot (intent recorded
before the call) -> patch -> stale services restarted (``[policy] restart_services``, :mod:`.services`)
and/or reboot (policy) -> health with a deadline -> on failure: revert the recorded snapshot + health ->
restore the automatic updater -> outcome recorded.
A failed pause or backup -> FAILED, not patched (the reason says which).
A patch that outlives ``patch_timeout``, a package database left inconsistent and a guest that is
not back from its reboot within ``reboot_timeout`` are typed, non-retryable failures
(:data:`REVERT_NOW`): the VM is reverted through the hypervisor at once — safe whatever the guest's
state, and dpkg is never killed — and the outcome names the chain ("patch timed out after 30 s;
reverted to snapshot S; healthy again").
A baseline that ran and found the guest unhealthy -> SKIPPED (a broken guest is not patched); a
baseline that could not run (unreachable guest, host key rejected, no agent...) -> FAILED, not
touched: a guest we cannot check is never reported as fine.
A VM whose outcome is already final in the fact store (a resumed run) is not touched again.

Deterministic: no I/O, time from ``workflow.now()``, activities by name (:mod:`orchestrator.engine.workflows.calls`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.failures import cause_of, describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        BackupResult,
        CveProofResult,
        PatchResult,
        RebootResult,
        RevertResult,
        SnapshotRelease,
        SnapshotResult,
        UpdaterPause,
        VmOutcomeRecord,
        VmStage,
        VmTask,
        site_queue,
    )
    from orchestrator.engine.retry import LEARNED_REBOOT_FACTOR
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.services import restart_services, wants_restart
    from orchestrator.model import HealthReport, StepStatus, UpdateMode, VmOutcome


def proved(outcome: VmOutcome) -> bool:
    """A ``run --cve`` VM gets a proof per CVE once it was touched (a snapshot taken): patched, rolled
    back, or failed after its snapshot. A VM never touched (skipped, baseline or snapshot failed) stays
    unproven: its CVEs are as the assessment found them."""
    return outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK) or (
        outcome.status is StepStatus.FAILED and bool(outcome.snapshot_id)
    )


#: Failures (the activity's error class) that end the patch at once, in their own words.
REVERT_NOW = frozenset({"PatchTimedOut", "PackageDatabaseInconsistent", "RebootTimedOut"})


class PatchFailed(Exception):
    """The patch, the reboot or the post-patch health failed: the VM must be reverted."""

    def __init__(self, reason: str, *, narrate: bool = False) -> None:
        super().__init__(reason)
        self.narrate = narrate  # the outcome tells the whole chain (reverted to S; healthy again)


def failure_reason(prefix: str, err: ActivityError) -> PatchFailed:
    """Why a patch or reboot activity failed: a :data:`REVERT_NOW` failure in its own words."""
    cause = cause_of(err)
    if cause.type in REVERT_NOW:
        return PatchFailed(cause.message, narrate=True)
    return PatchFailed(f"{prefix}: {describe(err)}")


async def revert_and_verify(
    task: VmTask, queue: str, base: VmOutcome, reason: str, *, narrate: bool = False
) -> VmOutcome:
    """Revert the snapshot recorded for (run, step) and check health: ROLLED_BACK or FAILED
    (``narrate``: the error also says which snapshot it went back to and that it is healthy again)."""
    try:
        reverted = await call(ActivityName.VM_REVERT, task, result_type=RevertResult, queue=queue)
    except ActivityError as err:
        return replace(base, status=StepStatus.FAILED, error=f"{reason}; revert failed: {describe(err)}")
    base = replace(base, snapshot_id=reverted.snapshot_id)
    health = await check_health(
        ActivityName.VM_VERIFY_HEALTH, task, queue, deadline_s=task.step.policy.health_deadline_s
    )
    reverted_to = f"; reverted to snapshot {reverted.snapshot_id}" if narrate else ""
    if health is None or not health.ok:
        why = "health check could not run" if health is None else health.failures
        error = f"{reason}{reverted_to}; still unhealthy after revert: {why}"
        return replace(base, status=StepStatus.FAILED, error=error)
    return replace(
        base,
        status=StepStatus.ROLLED_BACK,
        error=f"{reason}{reverted_to}; healthy again" if narrate else reason,
    )


async def check_health(
    name: ActivityName, task: VmTask, queue: str, *, deadline_s: float | None = None
) -> HealthReport | None:
    """Run a health activity; ``None`` when the activity itself failed (unreachable guest...)."""
    try:
        return await call(name, task, result_type=HealthReport, queue=queue, timeout_s=deadline_s)
    except ActivityError as err:
        workflow.logger.warning("health activity %s failed: %s", name, describe(err))
        return None


async def assess(task: VmTask, queue: str) -> None:
    """Record what the guest has pending now (the compliance report's latest assessment) after a
    patch or a revert changed it; a failed assessment never changes the outcome."""
    try:
        await call(ActivityName.VM_ASSESS, task, queue=queue)
    except ActivityError as err:
        workflow.logger.warning("assessment of %s failed: %s", task.step.vm, describe(err))


class VmPatching:
    """One VM's patch, run inside a workflow: inline in its ``WaveBatch`` (``vm-inline``), or as the
    ``VmPatch`` child workflow of histories from before. Workflow-side only: the same commands either way."""

    def __init__(self, *, look_up_outcome: bool = True) -> None:
        #: read the VM's recorded outcome first (a final one is returned, not redone); an inline batch
        #: knows it already: its slice (``wave_batch``) carries every VM's recorded status
        self._look_up_outcome = look_up_outcome
        self.stage = VmStage("start")
        self._outcome: VmOutcome | None = None  # what is known so far (snapshot id, changes, reboot)
        self._paused = False  # the automatic updater's pause was asked for: restore it at the end
        self._snapshotting = False  # a snapshot was asked for: a release looks for it on the platform
        self._settled = False  # settle() ran: the updater restored, the CVEs proved

    def _enter(self, stage: str) -> None:
        self.stage = VmStage(stage, workflow.now().isoformat(timespec="seconds"))

    async def run(self, task: VmTask) -> VmOutcome:
        queue = site_queue(task.step.vm.site)
        recorded: VmOutcome | None = None
        if self._look_up_outcome:
            recorded = await call(
                ActivityName.VM_RECORDED_OUTCOME, task, result_type=VmOutcome | None, queue=queue
            )
        if recorded is not None and recorded.status.final:  # a SKIPPED VM is attempted again
            if workflow.patched(SAFEGUARDS) and task.step.policy.pause_autoupdates:
                self._paused = True  # a resumed run: a pause the dead attempt left is restored
                await self._restore_updater(task, queue)
            return recorded
        started = workflow.now().isoformat(timespec="seconds")
        self._outcome = VmOutcome(task.step.step_id, task.step.vm, StepStatus.RUNNING, started_at=started)
        try:
            outcome = await self._attempt(task, queue)
        except asyncio.CancelledError:
            # Cancelled after the snapshot: the guest may be half-patched; put it back as it was.
            if self._known.snapshot_id:
                reverted = await shielded(self._reverting(task, queue, "run cancelled while patching"))
                await shielded(self._restore_updater(task, queue))
                await shielded(self._record(task, queue, reverted, assessed_later=False))
            else:
                await shielded(self._restore_updater(task, queue))
            raise
        await self._restore_updater(task, queue)
        if task.step.policy.update_mode is UpdateMode.CVE and proved(outcome):
            outcome = await self._prove(task, queue, outcome)
        outcome = await self._record(task, queue, outcome)
        if task.assess and outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK):
            await self._assess(task, queue)
        return outcome

    # ---------------------------------------------------------------- prepared ahead of the slot
    # ``WaveBatch`` with ``prepare_ahead``: prepare() outside the wave's concurrency slot, then apply()
    # inside it, finish() after it — or release() when the VM will not be patched now.

    async def prepare(self, task: VmTask) -> VmOutcome | None:
        """Baseline health, safeguards and snapshot, ahead of the VM's concurrency slot: None when it is
        ready for apply(), else its outcome (recorded; not touched). Cancelled meanwhile: the VM is
        released (its snapshot deleted, its updater restored) and recorded SKIPPED."""
        queue = site_queue(task.step.vm.site)
        started = workflow.now().isoformat(timespec="seconds")
        self._outcome = VmOutcome(task.step.step_id, task.step.vm, StepStatus.RUNNING, started_at=started)
        try:
            ended = await self._prepare(task, queue)
        except asyncio.CancelledError:
            await shielded(self.cancelled_before_patch(task))
            raise
        if ended is not None:
            return await self.finish(task, ended)
        self._enter("ready")
        return None

    async def apply(self, task: VmTask) -> VmOutcome:
        """Inside the slot: patch, reboot, verify — reverted on failure. Cancelled meanwhile: reverted
        (the guest may be half-patched), its updater restored, the outcome recorded."""
        queue = site_queue(task.step.vm.site)
        try:
            return await self._apply(task, queue)
        except asyncio.CancelledError:
            reverted = await shielded(self._reverting(task, queue, "run cancelled while patching"))
            await shielded(self._restore_updater(task, queue))
            await shielded(self._record(task, queue, reverted, assessed_later=False))
            raise

    async def settle(self, task: VmTask, outcome: VmOutcome) -> VmOutcome:
        """Restore the automatic updater and prove the CVEs (``run --cve``): the final outcome. The
        caller settles a ``run --cve`` VM inside its slot, so the failure budget counts a CVE still
        open before the next VM starts; any other VM is settled by :meth:`finish`."""
        if self._settled:
            return outcome
        self._settled = True
        queue = site_queue(task.step.vm.site)
        await self._restore_updater(task, queue)
        if task.step.policy.update_mode is UpdateMode.CVE and proved(outcome):
            outcome = await self._prove(task, queue, outcome)
        return outcome

    async def finish(self, task: VmTask, outcome: VmOutcome) -> VmOutcome:
        """After the slot: settle (unless the caller did) and record the outcome. The caller assesses a
        patched or rolled-back VM next."""
        outcome = await self.settle(task, outcome)
        return await self._record(task, site_queue(task.step.vm.site), outcome)

    async def release(self, task: VmTask) -> str:
        """A prepared VM that will not be patched now: its snapshot deleted (never reverted: the guest
        was not changed, a revert would throw away what it wrote since) and its automatic updater
        restored. Nothing recorded: the caller says why. Returns what happened to the snapshot."""
        queue = site_queue(task.step.vm.site)
        self._enter("release")
        note = ""
        if self._snapshotting:
            try:
                done = await call(
                    ActivityName.VM_RELEASE_SNAPSHOT, task, result_type=SnapshotRelease, queue=queue
                )
                if done.snapshot_ids:
                    note = f"its snapshot {', '.join(done.snapshot_ids)} released"
            except ActivityError as err:
                note = f"releasing its snapshot failed (it expires with the run's): {describe(err)}"
                workflow.logger.warning(
                    "releasing the snapshot of %s failed: %s", task.step.vm, describe(err)
                )
        await self._restore_updater(task, queue)
        self._paused = self._snapshotting = False
        self._outcome = replace(self._known, snapshot_id="")
        return note

    async def cancelled_before_patch(self, task: VmTask) -> None:
        """The run was cancelled before this prepared VM's patch: released and recorded SKIPPED
        (a resumed run takes it again)."""
        note = await self.release(task)
        why = "not attempted: run cancelled" + (f"; {note}" if note else "")
        outcome = replace(self._known, status=StepStatus.SKIPPED, error=why)
        await self._record(task, site_queue(task.step.vm.site), outcome, assessed_later=False)

    async def _prove(self, task: VmTask, queue: str, outcome: VmOutcome) -> VmOutcome:
        """``run --cve``: re-assess after the health checks and prove each targeted CVE; one still
        open fails the VM's goal (a patched VM becomes FAILED, a rolled-back one says which CVEs stay open)."""
        self._enter("prove")
        try:
            proof = await call(ActivityName.VM_PROVE_CVES, task, result_type=CveProofResult, queue=queue)
        except ActivityError as err:
            if outcome.status is not StepStatus.SUCCEEDED:
                return outcome
            why = f"patched, but the CVE proof could not run: {describe(err)}"
            return replace(outcome, status=StepStatus.FAILED, error=why)
        if not proof.still_open:
            return outcome
        still = "still open: " + "; ".join(proof.still_open)
        if outcome.status is StepStatus.SUCCEEDED:
            return replace(outcome, status=StepStatus.FAILED, error=f"patched and healthy, but {still}")
        return replace(outcome, error=f"{outcome.error}; {still}" if outcome.error else still)

    async def _assess(self, task: VmTask, queue: str) -> None:
        self._enter("assess")
        await assess(task, queue)

    @property
    def outcome(self) -> VmOutcome:
        """What is known of the VM's patch so far."""
        return self._known

    @property
    def _known(self) -> VmOutcome:
        assert self._outcome is not None
        return self._outcome

    def _learn(self, **changes: object) -> None:
        self._outcome = replace(self._known, **changes)  # type: ignore[arg-type]  # changes: VmOutcome fields by name

    async def _record(
        self, task: VmTask, queue: str, outcome: VmOutcome, *, assessed_later: bool = True
    ) -> VmOutcome:
        """Record the outcome; a touched VM (a snapshot taken) is assessed here unless the caller
        assesses it next (``assessed_later``: a SUCCEEDED or ROLLED_BACK VM is assessed by ``run`` or,
        after its concurrency slot is freed, by ``WaveBatch``) — once per VM, not twice."""
        outcome = replace(outcome, finished_at=workflow.now().isoformat(timespec="seconds"))
        await call(ActivityName.VM_RECORD_OUTCOME, VmOutcomeRecord(task.run_id, outcome), queue=queue)
        if outcome.snapshot_id and workflow.patched(ROLLBACK_ASSESSMENT):  # reverted (healthy or not)
            later = assessed_later and outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK)
            if not (later and workflow.patched(ASSESS_ONCE)):
                await assess(task, queue)
        return outcome

    async def _attempt(self, task: VmTask, queue: str) -> VmOutcome:
        ended = await self._prepare(task, queue)
        if ended is not None:
            return ended
        return await self._apply(task, queue)

    async def _prepare(self, task: VmTask, queue: str) -> VmOutcome | None:
        """Baseline health, safeguards, snapshot: None when the VM is ready to patch, else its
        outcome (not touched: skipped or failed before any change)."""
        self._enter("baseline")
        try:
            baseline = await call(
                ActivityName.VM_BASELINE_HEALTH, task, result_type=HealthReport, queue=queue
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the run was cancelled: not attempted, resumable
                return replace(self._known, status=StepStatus.SKIPPED, error="not attempted: run cancelled")
            # Not checked is not healthy: an unreachable or impostor guest must not pass as skipped.
            why = f"not touched: baseline health check could not run: {describe(err)}"
            return replace(self._known, status=StepStatus.FAILED, error=why)
        if not baseline.ok:  # checked and already broken: not ours to patch
            why = f"unhealthy before patching: {baseline.failures}"
            return replace(self._known, status=StepStatus.SKIPPED, error=why)
        if workflow.patched(SAFEGUARDS):
            refused = await self._safeguards(task, queue)
            if refused is not None:
                return refused
        self._enter("snapshot")
        self._snapshotting = True
        try:
            snap = await call(ActivityName.VM_SNAPSHOT, task, result_type=SnapshotResult, queue=queue)
        except ActivityError as err:
            return replace(self._known, status=StepStatus.FAILED, error=f"snapshot failed: {describe(err)}")
        self._learn(snapshot_id=snap.snapshot_id)
        return None

    async def _apply(self, task: VmTask, queue: str) -> VmOutcome:
        """Patch, reboot, verify; reverted when any of it failed."""
        try:
            await self._patch_and_verify(task, queue)
        except PatchFailed as failure:
            return await shielded(self._reverting(task, queue, str(failure), narrate=failure.narrate))
        return replace(self._known, status=StepStatus.SUCCEEDED)

    # ---------------------------------------------------------------- safeguards (backups, autoupdates)
    async def _safeguards(self, task: VmTask, queue: str) -> VmOutcome | None:
        """Before the snapshot: pause the automatic updater, then take the full backup the policy
        asks for. The outcome that refuses the patch (FAILED, not touched), or None to go on."""
        policy = task.step.policy
        if policy.pause_autoupdates:
            self._enter("pause-autoupdates")
            self._paused = True  # asked for: restored at the end whatever the pause's own fate
            try:
                await call(
                    ActivityName.VM_PAUSE_AUTOUPDATES, task, result_type=UpdaterPause, queue=queue,
                    timeout_s=policy.autoupdates_wait_s,
                )  # fmt: skip
            except ActivityError as err:
                why = f"not touched: pausing its automatic updater failed: {describe(err)}"
                return replace(self._known, status=StepStatus.FAILED, error=why)
        if policy.backup:
            self._enter("backup")
            try:
                await call(
                    ActivityName.VM_BACKUP, task, result_type=BackupResult, queue=queue,
                    timeout_s=policy.backup_timeout_s,
                )  # fmt: skip
            except ActivityError as err:
                why = f"not patched: the backup its policy requires failed: {describe(err)}"
                return replace(self._known, status=StepStatus.FAILED, error=why)
        return None

    async def _restore_updater(self, task: VmTask, queue: str) -> None:
        """After health (or the revert): restore what the pause stopped. A failure is on record (the
        journal) and for ``doctor``; it never changes the VM's outcome."""
        if not self._paused:
            return
        self._enter("restore-autoupdates")
        try:
            await call(ActivityName.VM_RESTORE_AUTOUPDATES, task, result_type=UpdaterPause, queue=queue)
        except ActivityError as err:
            workflow.logger.warning(
                "restoring the automatic updater of %s failed: %s", task.step.vm, describe(err)
            )

    # ---------------------------------------------------------------- revert
    async def _reverting(self, task: VmTask, queue: str, reason: str, *, narrate: bool = False) -> VmOutcome:
        self._enter("revert")
        return await revert_and_verify(task, queue, self._known, reason, narrate=narrate)

    async def _patch_and_verify(self, task: VmTask, queue: str) -> None:
        """Patch, restart stale services and/or reboot as the policy says, verify health; :class:`PatchFailed`
        otherwise."""
        policy = task.step.policy
        self._enter("patch")
        try:
            patch = await call(
                ActivityName.VM_PATCH,
                task,
                result_type=PatchResult,
                queue=queue,
                timeout_s=policy.patch_timeout_s,
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the run was cancelled while patching
                raise PatchFailed("run cancelled while patching") from err
            raise failure_reason("patch failed", err) from err
        self._learn(packages_changed=len(patch.changes))
        # [policy] restart_services: stale services restarted instead of a reboot (workflows/services.py)
        reboot, restart = wants_restart(policy, patch)
        if restart:
            self._enter("services")
            try:
                reboot = await restart_services(task, patch)
            except ActivityError as err:
                raise PatchFailed(f"restarting services failed: {describe(err)}") from err
        # ALWAYS: vm_reboot itself notices an earlier reboot (boot id) and does not repeat it
        if reboot:
            self._enter("reboot")
            try:
                booted = await call(
                    ActivityName.VM_REBOOT,
                    task,
                    result_type=RebootResult,
                    queue=queue,
                    timeout_s=LEARNED_REBOOT_FACTOR * policy.reboot_timeout_s,
                )
            except ActivityError as err:
                raise failure_reason("reboot failed", err) from err
            self._learn(rebooted=booted.rebooted)
        self._enter("verify")
        health = await check_health(
            ActivityName.VM_VERIFY_HEALTH, task, queue, deadline_s=policy.health_deadline_s
        )
        if health is None or not health.ok:
            why = "health check could not run" if health is None else health.failures
            raise PatchFailed(f"unhealthy after patching: {why}")


#: Workflow patch id: VmPatch pauses the automatic updater and takes the policy's backup before the
#: snapshot, and restores the updater at the end (histories from before replay without them).
SAFEGUARDS = "safeguards-backup-autoupdates"

#: Workflow patch id: VmRollback assesses the reverted guest (histories from before replay without it).
ROLLBACK_ASSESSMENT = "rollback-assessment"

#: Workflow patch id: a patched or rolled-back VM is assessed once, after its outcome is recorded (before
#: it, ``_record`` assessed every VM with a snapshot and the caller assessed it again, inside the wave's
#: concurrency slot). Histories without the marker replay the old way.
ASSESS_ONCE = "assess-once"


@workflow.defn(name="VmPatch")
class VmPatch:
    """One VM's patch as a child workflow of ``WaveBatch`` — how runs started before ``vm-inline``
    patch (and replay); newer batches run :class:`VmPatching` inline."""

    def __init__(self) -> None:
        self._patching = VmPatching()

    @workflow.query(name="stage")
    def stage(self) -> VmStage:
        return self._patching.stage

    @workflow.run
    async def run(self, task: VmTask) -> VmOutcome:
        return await self._patching.run(task)


@workflow.defn(name="VmRollback")
class VmRollback:
    """`patchwave rollback RUN`: revert the snapshot recorded for (run, step), verify health, and
    record a fresh assessment — the revert brought back what was pending before the patch."""

    @workflow.run
    async def run(self, task: VmTask) -> VmOutcome:
        queue = site_queue(task.step.vm.site)
        started = workflow.now().isoformat(timespec="seconds")
        base = VmOutcome(
            step_id=task.step.step_id, vm=task.step.vm, status=StepStatus.RUNNING, started_at=started
        )
        outcome = await revert_and_verify(task, queue, base, "rolled back on request")
        outcome = replace(outcome, finished_at=workflow.now().isoformat(timespec="seconds"))
        await call(ActivityName.VM_RECORD_OUTCOME, VmOutcomeRecord(task.run_id, outcome), queue=queue)
        if outcome.snapshot_id and workflow.patched(ROLLBACK_ASSESSMENT):  # reverted (healthy or not)
            await assess(task, queue)
        return outcome
