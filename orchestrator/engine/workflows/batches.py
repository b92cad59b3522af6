"""``WaveBatch`` and ``HealthBatch``: at most one batch of a wave's VMs per child workflow of ``PatchRun``.

``WaveBatch`` reads its slice of the wave from the fact store (``wave_batch``: the steps and the
status each already has) and patches each VM (inline, :class:`VmPatching`) under the wave's
concurrency (:class:`SlotPool`), each VM of a windowed wave admitted by the maintenance window
(:mod:`orchestrator.engine.workflows.window_gate`). A VM whose outcome is final already (a resumed
run) is counted, not redone. The run's failure budget is the parent's: the task says how many VMs
failed before in this execution; once the budget is exhausted the batch starts no more VMs and
reports the halt (with ``count_rolled_back``, a ROLLED_BACK VM counts like a FAILED one). VMs it does not attempt are recorded SKIPPED with the reason (``record_skips``,
once per batch). Rolled-back VMs are notified. Its ``progress`` query lists only the VMs in flight.

Batch handover (``BatchTask.handover``, waves without a window): once every VM of the batch has had
its slot, the batch tells its parent (signal ``batch_admitted``), which starts the next batch with no
slot (``BatchTask.handed``) and names it (signal ``hand_over``); from then on each slot this batch frees
is the successor's (signal ``grant``, a :class:`~orchestrator.engine.payloads.SlotGrant` that also
carries this batch's failures against the budget and its halt). When this batch ends, the parent
grants the successor the whole concurrency. The wave never has more VMs in slots than its
concurrency, and its slots do not drain at a batch's end.

``HealthBatch`` is the ring gate after a ring, batched the same way: for one slice of a wave, the VMs
whose recorded outcome is FAILED or ROLLED_BACK, and the health now of its SUCCEEDED VMs.

Deterministic: no I/O, time from ``workflow.now()``, activities by name (:mod:`.calls`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any, Self

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError

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
        SlotGrant,
        VmProgress,
        VmTask,
        site_queue,
    )
    from orchestrator.engine.retry import WORKFLOW_TASK_TIMEOUT
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.notices import RunNotices
    from orchestrator.engine.workflows.vms import VmPatch, VmPatching, assess, check_health
    from orchestrator.engine.workflows.window_gate import WindowGate
    from orchestrator.model import StepStatus, UpdateMode, VmOutcome, VmStep


#: ``workflow.patched`` marker: a VM's assessment runs after its concurrency slot is freed (before
#: it, VmPatch assessed while the slot was held). Histories without the marker replay the old way.
ASSESS_AFTER_SLOT = "assess-after-slot"

#: ``workflow.patched`` marker: the batch patches each VM inline (:class:`VmPatching`: the same
#: activities, in the batch's own history) instead of starting a ``VmPatch`` child workflow per VM —
#: a child costs Temporal a new execution and the worker a new sandboxed workflow, about a third of the
#: orchestration CPU per VM. Histories without the marker replay with their children.
VM_INLINE = "vm-inline"

#: ``workflow.patched`` marker: a wave with ``prepare_ahead`` prepares VMs (baseline, safeguards,
#: snapshot) ahead of its concurrency slots (:meth:`WaveBatch._one_ahead`). Only batches of such waves
#: ask for it; batches of other waves run as before.
PREPARE_AHEAD = "prepare-ahead"


class Permit:
    """A semaphore permit held by ``async with`` that its holder may also give back early (once)."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore, self._held = semaphore, False

    async def __aenter__(self) -> Self:
        await self._semaphore.acquire()
        self._held = True
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()


class SlotPool:
    """The wave's concurrency slots this batch owns: a semaphore (VMs take slots in the order they
    asked), that can grow (slots handed to it: :meth:`add`) and, once the batch needs no more slots,
    gives each slot it frees to its successor (:meth:`give_to`) instead of keeping it."""

    def __init__(self, grows: asyncio.Semaphore | None = None) -> None:
        self._semaphore = asyncio.Semaphore(0)
        self.grows = grows  # released once per slot added (the prepare-ahead permits follow the slots)
        self._give: Callable[[int], None] | None = None
        self.owned = 0
        self.held = 0

    async def __aenter__(self) -> Self:
        await self._semaphore.acquire()
        self.held += 1
        return self

    async def __aexit__(self, *_: object) -> None:
        self.held -= 1
        if self._give is not None:
            self.owned -= 1
            self._give(1)
        else:
            self._semaphore.release()

    def add(self, slots: int) -> None:
        self.owned += slots
        for _ in range(slots):
            self._semaphore.release()
            if self.grows is not None:
                self.grows.release()

    async def give_to(self, give: Callable[[int], None]) -> None:
        """From now on every slot freed goes to ``give``; so do the free ones now (nobody waits for
        them: the batch needs no more slots)."""
        free = self.owned - self.held
        for _ in range(free):
            await self._semaphore.acquire()
        self.owned -= free
        self._give = give
        if free:
            give(free)


#: ``workflow.patched`` marker: a cancelled batch ends once every VM's coroutine has (:func:`_all`).
#: Before it, the first VM waiting for a slot ended the batch on the cancellation while a VM in flight
#: was still reverting: its next command came after the workflow's end, and Temporal refused the
#: workflow task for ever. Histories without the marker replay the old way.
CANCEL_WAITS = "cancel-waits-for-vms"


async def _all(coroutines: list[Coroutine[Any, Any, None]], *, every: bool) -> None:
    """Run the VMs' coroutines; with ``every`` (:data:`CANCEL_WAITS`), wait for each of them to end
    — a cancellation ends the waiting ones at once and lets the patching ones revert and record —
    before the first failure (or the cancellation) is raised."""
    if not every:
        await asyncio.gather(*coroutines)
        return
    for ended in await asyncio.gather(*coroutines, return_exceptions=True):
        if isinstance(ended, BaseException):
            raise ended


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
        # Batch handover (``BatchTask.handover``, ``handed``):
        self._pool = SlotPool()
        self._grants: list[SlotGrant] = []  # granted before the batch set up its slots: applied then
        self._slots_ready = False
        self._final = False  # the parent's final grant came: the batch owns the whole concurrency
        self._inherited = 0  # the predecessor's failures against the budget (its grants tell them)
        self._awaiting_slots = -1  # VMs that may still take a slot (-1: not counted yet)
        self._slot_taken: set[str] = set()
        self._successor = ""
        self._sends: list[asyncio.Task[None]] = []  # signals to the parent and the successor
        self._ended = False

    @workflow.signal(name="hand_over")
    async def hand_over(self, successor: str) -> None:
        """The parent started ``successor``: the slots this batch frees from now on are its."""
        if self._ended or self._successor or not successor:
            return
        self._successor = successor
        await self._pool.give_to(self._forward)

    @workflow.signal(name="grant")
    def grant(self, grant: SlotGrant) -> None:
        if not self._slots_ready:  # until _own_slots: the task and its slots are there then
            self._grants.append(grant)
            return
        self._inherited = max(self._inherited, grant.failed)
        if grant.halted and not self._halted:
            self._halted = grant.halted
        if self._final:
            return
        if grant.final:
            self._final = True
            self._pool.add(max(1, self._wave_task.wave.concurrency) - self._pool.owned)
        else:
            self._pool.add(grant.slots)

    def _forward(self, slots: int) -> None:
        """Tell the successor: ``slots`` more are its; this batch's failures and halt so far."""
        grant = SlotGrant(slots, failed=self._failed, failed_names=tuple(self._failed_names[-SAMPLE:]),
                          halted=self._halted)  # fmt: skip
        self._send(self._successor, "grant", grant)

    def _send(self, workflow_id: str, signal: str, arg: object) -> None:
        async def send() -> None:
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(signal, arg)
            except FailureError as err:  # it ended meanwhile: it needs nothing more
                workflow.logger.info("signal %s to %s not delivered: %s", signal, workflow_id, err)

        self._sends.append(asyncio.create_task(send()))

    def _took_slot(self, step: VmStep) -> None:
        """``step`` took its slot, or will need none: once every VM has, the parent is told (it may
        start the successor while this batch's last VMs finish)."""
        if step.step_id in self._slot_taken:
            return
        self._slot_taken.add(step.step_id)
        self._awaiting_slots -= 1
        if self._awaiting_slots == 0 and self._wave_task.handover:
            parent = workflow.info().parent
            if parent is not None:
                self._send(parent.workflow_id, "batch_admitted", workflow.info().workflow_id)

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
        concurrency = max(1, task.wave.concurrency)
        slots = self._pool
        self._awaiting_slots = len(batch.steps)
        rows = zip(batch.steps, batch.statuses, strict=True)
        every = workflow.patched(CANCEL_WAITS)
        if task.wave.prepare_ahead > 0 and workflow.patched(PREPARE_AHEAD):
            # concurrency + prepare_ahead: the VMs being prepared, prepared, or patched
            ahead = asyncio.Semaphore(task.wave.prepare_ahead)
            slots.grows = ahead
            self._own_slots(concurrency)
            await _all([self._one_ahead(s, status, ahead, slots) for s, status in rows], every=every)
        else:
            self._own_slots(concurrency)
            await _all([self._one(s, status, slots) for s, status in rows], every=every)
        self._ended = True
        while self._sends:
            await self._sends.pop(0)
        if self._skipped:
            await call(
                ActivityName.RECORD_SKIPS, SkipRecord(task.run_id, tuple(self._skipped)), queue=CENTRAL_QUEUE
            )
        return BatchResult(
            counts=self._counts, failed=self._failed, failed_names=tuple(self._failed_names[-SAMPLE:]),
            halted=self._halted,
        )  # fmt: skip

    def _own_slots(self, concurrency: int) -> None:
        """The whole concurrency, or — started while the predecessor runs — what was granted so far."""
        if not self._wave_task.handed:
            self._pool.add(concurrency)
        self._slots_ready = True
        for grant in self._grants:
            self.grant(grant)
        self._grants.clear()

    @property
    def _wave_task(self) -> BatchTask:
        assert self._task is not None
        return self._task

    async def _one(self, step: VmStep, status: str, slots: SlotPool) -> None:
        try:
            await self._one_in_slot(step, status, slots)
        finally:
            self._took_slot(step)

    async def _one_in_slot(self, step: VmStep, status: str, slots: SlotPool) -> None:
        if status and StepStatus(status).final:  # a resumed run: counted, not redone, not against the budget
            self._count(StepStatus(status))
            return
        async with slots:
            self._took_slot(step)
            window = self._wave_task.wave.window
            if window and not self._halted and (refused := await self._gate.admit(window, step)):
                self._skip(step, f"not attempted: {refused}")
                return
            if self._halted:
                self._skip(step, f"not attempted: {self._halted}")
                return
            self._running[step.step_id] = self._progress_row(step)
            after_slot = workflow.patched(ASSESS_AFTER_SLOT)
            outcome = await self._patch_vm(step, assess_in_child=not after_slot)
            del self._running[step.step_id]
            self._record(step, outcome)
            await self._notify_rolled_back(step, outcome)
        # The slot is free for the next VM: the assessment (six guest commands) is no part of the patch.
        if after_slot and outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK):
            await assess(VmTask(self._wave_task.run_id, step, ""), site_queue(step.vm.site))

    # ---------------------------------------------------------------- prepared ahead (prepare_ahead > 0)
    async def _one_ahead(self, step: VmStep, status: str, ahead: asyncio.Semaphore, slots: SlotPool) -> None:
        try:
            await self._one_prepared_ahead(step, status, ahead, slots)
        finally:
            self._took_slot(step)

    async def _one_prepared_ahead(
        self, step: VmStep, status: str, ahead: asyncio.Semaphore, slots: SlotPool
    ) -> None:
        """One VM of a wave with ``prepare_ahead``: admitted (window, budget) and prepared (baseline,
        safeguards, snapshot) under ``ahead`` (concurrency + prepare_ahead: the VMs being prepared,
        prepared, or patched), patched and verified under ``slots`` (the concurrency). Taking its slot,
        it is admitted again: a budget exhausted or a window that no longer admits it meanwhile releases
        it untouched (snapshot deleted, updater restored) — skipped, or prepared again once the window
        admits it. Its ``ahead`` permit is freed when it leaves its slot: recording its outcome and
        assessing it do not hold back the next preparation."""
        if status and StepStatus(status).final:  # a resumed run: counted, not redone, not against the budget
            self._count(StepStatus(status))
            return
        permit = Permit(ahead)
        async with permit:
            outcome: VmOutcome | None = None
            while outcome is None:
                refused = await self._admission(step)
                if refused:
                    self._skip(step, f"not attempted: {refused}")
                    return
                outcome = await self._prepared(step, slots, permit)
        await self._notify_rolled_back(step, outcome)
        if outcome.status in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK):
            await assess(VmTask(self._wave_task.run_id, step, ""), site_queue(step.vm.site))

    async def _admission(self, step: VmStep) -> str:
        """Why ``step`` does not start ("" = it may): the budget halted the batch, or its window never
        admits it (the gate waits while the window is closed)."""
        window = self._wave_task.wave.window
        if window and not self._halted and (refused := await self._gate.admit(window, step)):
            return refused
        return self._halted

    async def _prepared(self, step: VmStep, slots: SlotPool, permit: Permit) -> VmOutcome | None:
        """Prepare, then patch in a slot: the outcome (counted), or None when the window stopped
        admitting the prepared VM (released, to be admitted again)."""
        vm_task = self._vm_task(step, assess=False)
        self._running[step.step_id] = self._progress_row(step)
        self._patching[step.step_id] = patching = VmPatching(look_up_outcome=False)
        try:
            ended = await patching.prepare(vm_task)
            if ended is not None:
                self._record(step, ended)
                return ended
            applied = False
            try:
                async with slots:
                    if not self._wave_task.wave.window:  # a window may release it: it would ask again
                        self._took_slot(step)
                    if self._halted:
                        note = await patching.release(vm_task)
                        self._skip(step, f"not attempted: {self._halted}" + (f"; {note}" if note else ""))
                        return replace(patching.outcome, status=StepStatus.SKIPPED)
                    if not await self._still_admitted(step, patching, vm_task):
                        return None
                    applied = True
                    outcome = await patching.apply(vm_task)
                    if step.policy.update_mode is UpdateMode.CVE:  # a CVE still open fails it: counted now
                        outcome = await patching.settle(vm_task, outcome)
                    self._record(step, outcome)  # the budget counts it before the slot is freed
                permit.release()
            except asyncio.CancelledError:
                if not applied:
                    await shielded(patching.cancelled_before_patch(vm_task))
                raise
            try:
                return await patching.finish(vm_task, outcome)
            except ActivityError as err:  # the outcome could not be recorded: failed, like _patch_vm's
                failed = VmOutcome(
                    step.step_id, step.vm, StepStatus.FAILED, error=f"VmPatch failed: {describe(err)}"
                )
                self._recount(step, outcome, failed)
                return failed
        except ActivityError as err:  # prepare's recording failed for good
            failed = VmOutcome(
                step.step_id, step.vm, StepStatus.FAILED, error=f"VmPatch failed: {describe(err)}"
            )
            self._record(step, failed)
            return failed
        finally:
            del self._patching[step.step_id]
            del self._running[step.step_id]

    async def _still_admitted(self, step: VmStep, patching: VmPatching, vm_task: VmTask) -> bool:
        """Does the VM's window still admit it now? If not (or if asking failed), it is released."""
        window = self._wave_task.wave.window
        if not window:
            return True
        try:
            if await self._gate.admits_now(window, step):
                return True
        except ActivityError:
            await patching.release(vm_task)
            raise
        await patching.release(vm_task)
        return False

    def _progress_row(self, step: VmStep) -> VmProgress:
        """The live view's row of a VM the batch starts now."""
        return VmProgress(
            step.vm.name, step.vm.site, step.ring, StepStatus.RUNNING, step_id=step.step_id,
            channel=step.channel, started=workflow.now().isoformat(timespec="seconds"),
            est_s=step.est_duration_s,
        )  # fmt: skip

    async def _notify_rolled_back(self, step: VmStep, outcome: VmOutcome) -> None:
        """A VM rolled back is news for the stakeholders (once per step: the notice's key)."""
        if outcome.status is StepStatus.ROLLED_BACK:
            event = NotifyEvent.VM_ROLLED_BACK
            await self._notices.send(event, key=f"{event}:{step.step_id}",
                                     step_id=step.step_id, outcome=outcome)  # fmt: skip

    def _vm_task(self, step: VmStep, *, assess: bool) -> VmTask:
        task = self._wave_task
        expires = workflow.now() + timedelta(seconds=step.policy.snapshot_ttl_s)
        return VmTask(task.run_id, step, expires.isoformat(timespec="seconds"), assess=assess)

    def _recount(self, step: VmStep, counted: VmOutcome, instead: VmOutcome) -> None:
        """``instead`` replaces the outcome counted already (against the budget only once)."""
        self._counts[counted.status.value] -= 1
        if self._against_budget(counted.status):
            self._count(instead.status)
        else:
            self._record(step, instead)

    def _against_budget(self, status: StepStatus) -> bool:
        rolled_back = self._wave_task.count_rolled_back and status is StepStatus.ROLLED_BACK
        return status is StepStatus.FAILED or rolled_back

    async def _patch_vm(self, step: VmStep, *, assess_in_child: bool) -> VmOutcome:
        task = self._wave_task
        vm_task = self._vm_task(step, assess=assess_in_child)
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
        if not self._against_budget(outcome.status):
            return
        self._failed += 1
        self._failed_names.append(step.vm.name)
        failed = task.failed_before + self._inherited + self._failed
        if failed > task.budget and not self._halted:
            names = ", ".join(self._failed_names[-SAMPLE:])
            more = f" and {failed - SAMPLE} more" if failed > SAMPLE else ""
            how = "failed or were rolled back" if task.count_rolled_back else "failed"
            self._halted = (
                f"failure budget exhausted: {failed} VM(s) {how} ({names}{more}), "
                f"budget {task.budget}; remaining VMs were not attempted"
            )
        if self._successor:  # it must not start a VM the budget no longer allows
            self._forward(0)

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
