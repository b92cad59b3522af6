"""``WaveBatch`` and ``HealthBatch``: at most one batch of a wave's VMs per child workflow of ``PatchRun``.

``WaveBatch`` reads its slice of the wave from the fact store (``wave_batch``: the steps and the
status each already has) and runs one ``VmPatch`` child per VM under the wave's concurrency
(``asyncio.Semaphore``), each VM of a windowed wave admitted by the maintenance window
(:mod:`orchestrator.engine.workflows.window_gate`). A VM whose outcome is final already (a resumed
run) is counted, not redone. The run's failure budget is the parent's: the task says how many VMs
failed before in this execution; once the budget is exhausted the batch starts no more VMs and
reports the halt (with ``count_rolled_back``, a ROLLED_BACK VM counts like a FAILED one). VMs it does not attempt are recorded SKIPPED with the reason (``record_skips``,
once per batch). Rolled-back VMs are notified. Its ``progress`` query lists only the VMs in flight.

``HealthBatch`` is the ring gate after a ring, batched the same way: for one slice of a wave, the VMs
whose recorded outcome is FAILED or ROLLED_BACK, and the health now of its SUCCEEDED VMs.

Deterministic: no I/O, time from ``workflow.now()``, activities by name (:mod:`.calls`).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from orchestrator.config.events import NotifyEvent
    from orchestrator.engine.failures import describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        SAMPLE,
        BatchProgress,
        BatchQuery,
        BatchResult,
        BatchSlice,
        BatchTask,
        HealthBatchResult,
        HealthBatchTask,
        RunStatusUpdate,
        SkipRecord,
        VmProgress,
        VmTask,
        site_queue,
    )
    from orchestrator.engine.retry import WORKFLOW_TASK_TIMEOUT
    from orchestrator.engine.workflows.calls import call
    from orchestrator.engine.workflows.notices import RunNotices
    from orchestrator.engine.workflows.vms import VmPatch, VmPatching, assess, check_health
    from orchestrator.engine.workflows.window_gate import WindowGate
    from orchestrator.model import StepStatus, VmOutcome, VmStep


#: ``workflow.patched`` marker: a VM's assessment runs after its concurrency slot is freed (before
#: it, VmPatch assessed while the slot was held). Histories without the marker replay the old way.
ASSESS_AFTER_SLOT = "assess-after-slot"

#: ``workflow.patched`` marker: the batch patches each VM inline (:class:`VmPatching`: the same
#: activities, in the batch's own history) instead of starting a ``VmPatch`` child workflow per VM —
#: a child costs Temporal a new execution and the worker a new sandboxed workflow, about a third of the
#: orchestration CPU per VM. Histories without the marker replay with their children.
VM_INLINE = "vm-inline"


def child_id(run_id: str, step_id: str) -> str:
    """The workflow id of a VM's ``VmPatch`` in a run."""
    return f"{run_id}/{step_id}"


def batch_id(run_id: str, kind: str, wave_id: str, offset: int) -> str:
    """The workflow id of a batch (``kind``: "vms", "health"; hosts: ``wave_id`` "hosts")."""
    return f"{run_id}/{kind}/{wave_id}/{offset}"


async def _slice(run_id: str, wave: int, offset: int, limit: int) -> BatchSlice:
    query = BatchQuery(run_id, wave, offset, limit)
    return await call(ActivityName.WAVE_BATCH, query, result_type=BatchSlice, queue=CENTRAL_QUEUE)


@workflow.defn(name="WaveBatch")
class WaveBatch:
    def __init__(self) -> None:
        self._task: BatchTask | None = None
        self._running: dict[str, VmProgress] = {}
        self._patching: dict[str, VmPatching] = {}  # the VMs patched inline now: their stage
        self._counts: dict[str, int] = {}
        self._failed = 0
        self._failed_names: list[str] = []
        self._halted = ""
        self._window_until = ""
        self._paused = ""
        self._skipped: list[tuple[str, str]] = []
        self._notices = RunNotices()
        self._gate = WindowGate(self._waiting_for_window, self._notices.prenotice_wait)

    @workflow.query(name="progress")
    def progress(self) -> BatchProgress:
        return BatchProgress(
            batch_id=workflow.info().workflow_id, counts=dict(self._counts),
            vms=tuple(self._staged(vm) for vm in self._running.values()), window_until=self._window_until,
        )  # fmt: skip

    def _staged(self, vm: VmProgress) -> VmProgress:
        patching = self._patching.get(vm.step_id)
        if patching is None:  # a VmPatch child: runs.progress asks the child for its stage
            return vm
        return replace(vm, stage=patching.stage.stage, since=patching.stage.since)

    @workflow.run
    async def run(self, task: BatchTask) -> BatchResult:
        self._task = task
        self._failed_names = list(task.failed_names)
        self._notices.configure(task.run_id, task.notify)
        batch = await _slice(task.run_id, task.wave.position, task.offset, task.limit)
        slots = asyncio.Semaphore(max(1, task.wave.concurrency))
        await asyncio.gather(
            *(self._one(s, status, slots) for s, status in zip(batch.steps, batch.statuses, strict=True))
        )
        if self._skipped:
            await call(
                ActivityName.RECORD_SKIPS, SkipRecord(task.run_id, tuple(self._skipped)), queue=CENTRAL_QUEUE
            )
        return BatchResult(
            counts=self._counts, failed=self._failed, failed_names=tuple(self._failed_names[-SAMPLE:]),
            halted=self._halted,
        )  # fmt: skip

    @property
    def _wave_task(self) -> BatchTask:
        assert self._task is not None
        return self._task

    async def _one(self, step: VmStep, status: str, slots: asyncio.Semaphore) -> None:
        if status and StepStatus(status).final:  # a resumed run: counted, not redone, not against the budget
            self._count(StepStatus(status))
            return
        async with slots:
            window = self._wave_task.wave.window
            if window and not self._halted and (refused := await self._gate.admit(window, step)):
                self._skip(step, f"not attempted: {refused}")
                return
            if self._halted:
                self._skip(step, f"not attempted: {self._halted}")
                return
            self._running[step.step_id] = VmProgress(
                step.vm.name, step.vm.site, step.ring, StepStatus.RUNNING, step_id=step.step_id,
                channel=step.channel, started=workflow.now().isoformat(timespec="seconds"),
                est_s=step.est_duration_s,
            )  # fmt: skip
            after_slot = workflow.patched(ASSESS_AFTER_SLOT)
            outcome = await self._patch_vm(step, assess_in_child=not after_slot)
            del self._running[step.step_id]
            self._record(step, outcome)
            if outcome.status is StepStatus.ROLLED_BACK:
                event = NotifyEvent.VM_ROLLED_BACK
                await self._notices.send(event, key=f"{event}:{step.step_id}",
                                         step_id=step.step_id, outcome=outcome)  # fmt: skip
        # The slot is free for the next VM: the assessment (six guest commands) is no part of the patch.
        if after_slot and outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK):
            await assess(VmTask(self._wave_task.run_id, step, ""), site_queue(step.vm.site))

    async def _patch_vm(self, step: VmStep, *, assess_in_child: bool) -> VmOutcome:
        task = self._wave_task
        expires = workflow.now() + timedelta(seconds=step.policy.snapshot_ttl_s)
        vm_task = VmTask(task.run_id, step, expires.isoformat(timespec="seconds"), assess=assess_in_child)
        try:
            if workflow.patched(VM_INLINE):
                return await self._patch_inline(vm_task)
            return await workflow.execute_child_workflow(
                VmPatch.run,
                vm_task,
                id=child_id(task.run_id, step.step_id),
                task_queue=CENTRAL_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                task_timeout=WORKFLOW_TASK_TIMEOUT,
            )
        except (ActivityError, ChildWorkflowError) as err:  # inline: a call failed for good (recording...)
            return VmOutcome(
                step.step_id, step.vm, StepStatus.FAILED, error=f"VmPatch failed: {describe(err)}"
            )

    async def _patch_inline(self, vm_task: VmTask) -> VmOutcome:
        step = vm_task.step
        # The slice's recorded status is this VM's: a final one was counted, not patched (``_one``),
        # and no one else records this VM's outcome while its batch runs.
        self._patching[step.step_id] = patching = VmPatching(look_up_outcome=False)
        try:
            return await patching.run(vm_task)
        finally:
            del self._patching[step.step_id]

    def _count(self, status: StepStatus) -> None:
        self._counts[status.value] = self._counts.get(status.value, 0) + 1

    def _record(self, step: VmStep, outcome: VmOutcome) -> None:
        self._count(outcome.status)
        task = self._wave_task
        rolled_back = task.count_rolled_back and outcome.status is StepStatus.ROLLED_BACK
        if outcome.status is not StepStatus.FAILED and not rolled_back:
            return
        self._failed += 1
        self._failed_names.append(step.vm.name)
        failed = task.failed_before + self._failed
        if failed > task.budget and not self._halted:
            names = ", ".join(self._failed_names[-SAMPLE:])
            more = f" and {failed - SAMPLE} more" if failed > SAMPLE else ""
            how = "failed or were rolled back" if task.count_rolled_back else "failed"
            self._halted = (
                f"failure budget exhausted: {failed} VM(s) {how} ({names}{more}), "
                f"budget {task.budget}; remaining VMs were not attempted"
            )

    def _skip(self, step: VmStep, reason: str) -> None:
        self._count(StepStatus.SKIPPED)
        self._skipped.append((step.step_id, reason))

    async def _waiting_for_window(self, window: str, until: str) -> None:
        """The gate waits (the run is paused: VMs in flight finish, no new one starts) or admits."""
        self._window_until = f"{window} until {until}" if window else ""
        why = f"waiting for maintenance window {window!r} until {until}" if window else ""
        if why == self._paused:
            return
        self._paused = why
        run_id = self._wave_task.run_id
        update = RunStatusUpdate(run_id, "paused", why) if why else RunStatusUpdate(run_id, "running")
        await call(ActivityName.SET_RUN_STATUS, update, queue=CENTRAL_QUEUE)


#: What the ring gate names a VM whose recorded outcome keeps its ring from promotion.
BAD_OUTCOMES = {StepStatus.FAILED.value: "failed", StepStatus.ROLLED_BACK.value: "rolled back"}


@workflow.defn(name="HealthBatch")
class HealthBatch:
    """The ring gate for one slice: which of the slice's VMs failed or were rolled back (their
    recorded outcomes), and are its patched (SUCCEEDED) VMs healthy now?"""

    @workflow.run
    async def run(self, task: HealthBatchTask) -> HealthBatchResult:
        batch = await _slice(task.run_id, task.wave.position, task.offset, task.limit)
        statuses = list(zip(batch.steps, batch.statuses, strict=True))
        patched = [s for s, status in statuses if status == StepStatus.SUCCEEDED.value]
        bad = [(s.vm.name, status) for s, status in statuses if status in BAD_OUTCOMES]
        slots = asyncio.Semaphore(max(1, task.wave.concurrency))

        async def check(step: VmStep) -> str:
            async with slots:
                report = await check_health(ActivityName.VM_VERIFY_HEALTH, VmTask(task.run_id, step, ""),
                                            site_queue(step.vm.site), deadline_s=step.policy.health_deadline_s)  # fmt: skip
            if report is None:
                return f"{step.vm.name}: health check could not run"
            return "" if report.ok else f"{step.vm.name}: {report.failures}"

        sick = [why for why in await asyncio.gather(*(check(s) for s in patched)) if why]
        return HealthBatchResult(
            checked=len(patched), sick=len(sick), sick_sample=tuple(sick[:SAMPLE]),
            failed=sum(1 for _, status in bad if status == StepStatus.FAILED.value),
            rolled_back=sum(1 for _, status in bad if status == StepStatus.ROLLED_BACK.value),
            bad_sample=tuple(f"{name} ({BAD_OUTCOMES[status]})" for name, status in bad[:SAMPLE]),
        )  # fmt: skip
