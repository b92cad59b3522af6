"""Temporal workflow ``PatchRun``: one rollout, in bounded pieces (``RollbackRun`` is in :mod:`.rollback`).

Deterministic: no I/O, time from ``workflow.now()``, every side effect in an activity
(:mod:`orchestrator.engine.activities.run`, called by name through :mod:`orchestrator.engine.workflows.calls`).

PatchRun: run_setup -> discover (one activity per site, on the site's queue: the inventory goes to
the fact store, the workflow gets its id) -> plan_run (the plan goes to the fact store in rows, the
workflow gets a :class:`~orchestrator.engine.payloads.PlanSummary`) -> hypervisor phase (``HostBatch``
children, :mod:`.hosts`) -> guest waves in ring order, read a page of waves at a time, each wave cut
into batches of at most ``RunLimits.batch_size`` VMs run one after another as ``WaveBatch`` children
(:mod:`.batches`: the wave's concurrency, the maintenance window, the failure budget, one ``VmPatch``
child per VM) -> after each ring but the last: its soak timer, its ring gate (``HealthBatch``
children: any FAILED / ROLLED_BACK outcome or unhealthy VM of the ring halts the run, unless the ring
was forced) and its approval gate (the ``approve`` update, validated: accepted only while that
ring's gate is open) -> cleanup_expired_snapshots per site -> finish_run (records the VMs not attempted, returns the
bounded :class:`~orchestrator.model.RunSummary`). Notifications (:mod:`.notices`) at plan published,
window pre-notice, run started, VM rolled back, run finished / halted; they never change the run. A
scheduled run (``run_id=""``) takes its workflow id as run id.

No payload and no history grows with the fleet: the workflow carries counters, ids and one wave
page; before starting a batch it continues as new (memo ``carry``: :class:`~orchestrator.engine.payloads.RunCarry`)
once its history passed ``RunLimits.continue_after_events``. Its ``progress`` query answers with
counters and its running batches' ids; the client merges in their VMs in flight
(:func:`orchestrator.engine.runs.progress`).

Why the planner runs in an activity (``plan_run``) and not inline: ``make_plan`` is pure, but its
inputs are not workflow data — the worker's settings (which hold resolved secrets that must never
enter a Temporal payload), the recorded inventories and the duration history (I/O). The activity
receives ``workflow.now()`` as the plan's time, so the plan is still a function of recorded inputs;
a resumed execution (same run id) reuses the plan recorded in the fact store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
)

with workflow.unsafe.imports_passed_through():
    from orchestrator.config.events import NotifyEvent
    from orchestrator.engine.failures import describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        SAMPLE,
        WAVE_PAGE,
        ApprovalRequest,
        ApprovalResult,
        BatchResult,
        BatchTask,
        CleanupInput,
        DiscoverInput,
        FinishInput,
        HealthBatchResult,
        HostBatchTask,
        InventoryRef,
        PlanInput,
        PlanPage,
        PlanSummary,
        RunCarry,
        RunLimits,
        RunProgress,
        RunSetup,
        RunStatusUpdate,
        SlotGrant,
        WavePage,
        batch_span,
        site_queue,
    )
    from orchestrator.engine.retry import WORKFLOW_TASK_TIMEOUT
    from orchestrator.engine.workflows.batches import WaveBatch, batch_id
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.hosts import HostBatch
    from orchestrator.engine.workflows.leases import LeaseKeeper
    from orchestrator.engine.workflows.notices import RunNotices
    from orchestrator.engine.workflows.ring_gate import check_ring, early_approval, refusal, with_fix
    from orchestrator.model import CleanupResult, RunRequest, RunSummary, StepStatus, WaveInfo

#: How long a ring waits for `patchwave approve RUN` before the run halts (stop, never guess).
APPROVAL_TIMEOUT = timedelta(hours=24)
#: The patch marker of the ring gate after every ring (failed / rolled-back / unhealthy VMs refuse
#: promotion; forced rings pass). A run started before it keeps the health gate after soaks only.
RING_GATE = "ring-gate"
#: The patch marker of batches holding a whole number of the wave's concurrency (``batch_span``); a
#: run started before it cuts its waves into ``batch_size`` VMs.
BATCH_ROUNDS = "batch-rounds"
#: The patch marker of batch handover: a wave's next batch starts once every VM of the running one
#: has had its slot, and takes the slots that batch frees (``WaveBatch.hand_over``, ``SlotGrant``) —
#: the concurrency stays used across the boundary instead of draining. Waves with a maintenance window
#: (a VM released by its window asks for a slot again) and runs started before it hand over nothing.
BATCH_HANDOVER = "batch-handover"
CARRY = "carry"  # the memo key of a continued execution's RunCarry
T = TypeVar("T")


def _may_follow(batch: workflow.ChildWorkflowHandle[Any, Any], admitted: set[str]) -> bool:
    """The next batch may start: every VM of ``batch`` has had its slot, or it ended."""
    return batch.id in admitted or batch.done()


async def _signal(batch: workflow.ChildWorkflowHandle[Any, Any], name: str, arg: object) -> None:
    """Signal a running batch; one that ended meanwhile needs nothing more."""
    try:
        await batch.signal(name, arg)
    except FailureError as err:
        workflow.logger.info("signal %s to %s not delivered: %s", name, batch.id, err)


def _options(child: str) -> dict[str, Any]:
    """How ``PatchRun`` starts a batch (a resumed run's execution starts the same ids again)."""
    return {"id": child, "task_queue": CENTRAL_QUEUE, "task_timeout": WORKFLOW_TASK_TIMEOUT,
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE}  # fmt: skip


@workflow.defn(name="PatchRun")
class PatchRun:
    def __init__(self) -> None:
        self._request = RunRequest(run_id="", config_digest="")
        self._phase = "setup"
        self._ring = ""
        self._ring_start = 0  # position of the current ring's first wave (the ring gate checks from there)
        self._waiting_for = ""
        self._soak_until = ""
        self._notices = RunNotices()
        self._approved: set[str] = set()  # rings whose open gate an approval passed
        self._forced: set[str] = set()  # rings an operator forced past their gate (fact store)
        self._gated = ""  # the last ring whose gate passed
        self._refused = ""  # the ring whose gate refused promotion (the run halts)
        self._gates = False  # the ring gate after every ring (RING_GATE); False: a run of before it
        self._gate_span = (0, 0)  # first and last wave position of the ring whose approval is awaited
        self._checking = False  # an approval is re-checking the ring
        self._count_rolled_back = True
        self._plan = PlanSummary(plan_id="", sites=(), vms=0, hosts=0, waves=0, failure_budget=0, blocked=0)
        self._limits = RunLimits()
        self._counts: dict[str, int] = {}  # concluded VM statuses of the finished batches
        self._failed = 0  # FAILED VMs of this run's execution chain (count against the budget)
        self._failed_names: list[str] = []
        self._hosts_done = 0
        self._hosts_failed = 0
        self._halted = ""
        self._batches: list[str] = []  # ids of the running batch workflows
        self._admitted: set[str] = set()  # running batches whose every VM has had its slot (handover)
        self._started = 0  # batches this execution started (it continues as new only after one)
        self._executions = 1
        self._leases = LeaseKeeper()  # plan_run / run_setup take the leases; finish_run releases them

    # ---------------------------------------------------------------- queries and signals

    @workflow.query(name="progress")
    def progress(self) -> RunProgress:
        counts = dict(self._counts)
        counts[StepStatus.PENDING.value] = max(0, self._plan.vms - sum(self._counts.values()))
        return RunProgress(
            run_id=self._request.run_id, phase=self._phase, ring=self._ring, waiting_for=self._waiting_for,
            soak_until=self._soak_until, hosts_done=self._hosts_done, hosts_total=self._plan.hosts,
            failed=self._failed, failure_budget=self._plan.failure_budget, halted_reason=self._halted,
            blocked=self._plan.blocked_sample, counts=counts, total=self._plan.vms,
            blocked_total=self._plan.blocked, batches=tuple(self._batches), est_s=self._plan.est_s,
        )  # fmt: skip

    @workflow.signal(name="batch_admitted")
    def batch_admitted(self, batch: str) -> None:
        """A ``WaveBatch`` of a handover wave: every VM has had its slot; its successor may start."""
        self._admitted.add(batch)

    @workflow.update(name="approve")
    async def approve(self, request: ApprovalRequest) -> ApprovalResult:
        """Promote past the ring whose gate is open (the validator refused any other approval): the
        ring is checked once more (outcomes, health now). Refused, and the run halts, when it no longer
        passes — unless ``force``."""
        ring, (first, last) = self._waiting_for, self._gate_span
        self._checking = True
        try:
            why = refusal(ring, await self._ring_check(first, last), soaked=False, outcomes=True)
        finally:
            self._checking = False
        if why and not request.force:
            self._halted, self._refused = with_fix(why, self._request.run_id, ring), ring
            return ApprovalResult(ring, accepted=False, reason=self._halted)
        self._approved.add(ring)
        return ApprovalResult(ring, accepted=True, reason=why)

    @approve.validator
    def _admit_approval(self, request: ApprovalRequest) -> None:
        """An approval is accepted only while the gate of the ring it names is open (never ahead of
        it: a pre-approval would promote a ring that breaks afterwards). Refused ones leave no history."""
        if self._checking:
            raise ApplicationError(
                f"an approval of ring {self._waiting_for!r} is being checked; wait for its answer"
            )
        why = early_approval(
            request.ring, self._waiting_for, halted=self._halted, phase=self._phase, ring=self._ring
        )
        if why:
            raise ApplicationError(why)

    # ---------------------------------------------------------------- the run

    @workflow.run
    async def run(self, request: RunRequest) -> RunSummary:
        if not request.run_id:  # a scheduled run: the workflow id (schedule id + scheduled time)
            request = replace(request, run_id=workflow.info().workflow_id)
        self._request = request
        self._gates = workflow.patched(RING_GATE)
        try:
            try:
                return await self._run(request, workflow.memo_value(CARRY, None, type_hint=RunCarry))
            except ChildWorkflowError as err:  # a batch cancelled with the run: the run was cancelled
                if isinstance(err.cause, CancelledError):
                    raise asyncio.CancelledError() from err
                raise
        except (ActivityError, ChildWorkflowError) as err:
            reason = describe(err)
            await call(
                ActivityName.SET_RUN_STATUS,
                RunStatusUpdate(request.run_id, "failed", reason),
                queue=CENTRAL_QUEUE,
            )
            failed = RunSummary(run_id=request.run_id, status="failed", halted_reason=f"run failed: {reason}")
            await self._notices.send(NotifyEvent.RUN_HALTED, summary=failed)
            raise ApplicationError(f"run {request.run_id} failed: {reason}", non_retryable=True) from err
        except asyncio.CancelledError:
            update = RunStatusUpdate(request.run_id, "cancelled", f"cancelled in phase {self._phase}")
            await shielded(call(ActivityName.SET_RUN_STATUS, update, queue=CENTRAL_QUEUE))
            raise
        finally:
            self._leases.stop()

    async def _run(self, request: RunRequest, carry: RunCarry | None) -> RunSummary:
        start = (0, 0)
        if carry is None:
            await self._start(request)
        else:
            start = self._continue_from(carry)
            self._leases.start(request.run_id)  # a continued execution renews the run's leases too
        if request.guests and not self._halted:
            await self._guest_phase(*start)
        await self._cleanup()
        return await self._finish(request)

    async def _start(self, request: RunRequest) -> None:
        setup = await call(ActivityName.RUN_SETUP, request, result_type=RunSetup, queue=CENTRAL_QUEUE)
        self._limits = setup.limits
        self._count_rolled_back, self._forced = setup.count_rolled_back, set(setup.forced)
        self._plan = setup.plan or await self._make_plan(request, setup)
        self._leases.start(request.run_id)
        await self._notices.start(request.run_id)
        await self._notices.send(NotifyEvent.PLAN_PUBLISHED)
        await call(
            ActivityName.SET_RUN_STATUS, RunStatusUpdate(request.run_id, "running"), queue=CENTRAL_QUEUE
        )
        await self._notices.send(NotifyEvent.RUN_STARTED, requested_by=request.requested_by or "-")
        if request.hosts and self._plan.hosts:
            await self._host_phase()

    async def _make_plan(self, request: RunRequest, setup: RunSetup) -> PlanSummary:
        self._phase = "discover"
        inventories = await asyncio.gather(
            *(
                call(ActivityName.DISCOVER, DiscoverInput(site, request.run_id), result_type=InventoryRef,
                     queue=site_queue(site))
                for site in setup.sites
            )
        )  # fmt: skip
        self._phase = "plan"
        now = workflow.now().isoformat(timespec="seconds")
        return await call(
            ActivityName.PLAN_RUN,
            PlanInput(request, tuple(inventories), now),
            result_type=PlanSummary,
            queue=CENTRAL_QUEUE,
        )

    async def _batch(self, child: str, running: Awaitable[T]) -> T:
        """Await one batch's child workflow (its id listed for ``progress`` while it runs)."""
        self._batches.append(child)
        try:
            return await running
        finally:
            self._batches.remove(child)

    # ---------------------------------------------------------------- hosts

    async def _host_phase(self) -> None:
        self._phase = "hosts"
        run_id, size = self._request.run_id, max(1, self._limits.host_batch_size)
        for offset in range(0, self._plan.hosts, size):
            task = HostBatchTask(run_id, offset, min(size, self._plan.hosts - offset), self._notices.setup)
            child = batch_id(run_id, "hosts", "hosts", offset)
            result = await self._batch(
                child, workflow.execute_child_workflow(HostBatch.run, task, **_options(child))
            )
            self._hosts_done += result.done
            self._hosts_failed += result.failed
            if result.halted:
                self._halted = result.halted
                return

    # ---------------------------------------------------------------- guest waves

    async def _guest_phase(self, position: int, offset: int) -> None:
        self._phase = "guests"
        while position < self._plan.waves and not self._halted:
            page = PlanPage(self._request.run_id, position, WAVE_PAGE)
            waves = await call(ActivityName.PLAN_WAVES, page, result_type=WavePage, queue=CENTRAL_QUEUE)
            for wave in waves.waves:
                await self._wave(wave, offset)
                offset = 0
                if self._halted:
                    return
                if wave.position + 1 < self._plan.waves:
                    await self._between_rings(wave)
                if self._halted:
                    return
            position += max(1, len(waves.waves))
        self._phase = "guests-done"

    async def _wave(self, wave: WaveInfo, offset: int) -> None:
        if wave.ring != self._ring:
            if self._gates and self._ring and self._gated != self._ring:  # a ring without soak or approval
                await self._ring_gate(self._ring, wave.position - 1, soaked=False)
                if self._halted:
                    return
            self._ring, self._ring_start = wave.ring, wave.position
        size = max(1, self._limits.batch_size)
        if workflow.patched(BATCH_ROUNDS):
            size = batch_span(size, wave.concurrency)
        if not wave.window and workflow.patched(BATCH_HANDOVER):
            await self._handed_over(wave, offset, size)
            return
        while offset < wave.size and not self._halted:
            self._continue_as_new_if_long(wave, offset)
            task = BatchTask(
                self._request.run_id, wave, offset, min(size, wave.size - offset), self._plan.failure_budget,
                self._failed, tuple(self._failed_names[-SAMPLE:]), self._notices.setup, self._count_rolled_back,
            )  # fmt: skip
            child = batch_id(self._request.run_id, "vms", wave.wave_id, offset)
            self._started += 1
            self._absorb(
                await self._batch(
                    child, workflow.execute_child_workflow(WaveBatch.run, task, **_options(child))
                )
            )
            offset += size

    async def _handed_over(self, wave: WaveInfo, offset: int, size: int) -> None:
        """The wave's batches, each started once every VM of the one before has had its slot and
        handed the slots that one frees (at most two batches at once: the older one's tail, the next
        one's start). The run continues as new only between batches, none running."""
        running: list[workflow.ChildWorkflowHandle[Any, BatchResult]] = []
        try:
            while offset < wave.size and not self._halted:
                before = running[0] if running else None
                if before is not None:
                    await workflow.wait_condition(partial(_may_follow, before, self._admitted))
                    if before.done() or self._history_long():
                        await self._ended(before, None)
                        running.pop(0)
                        before = None
                if self._halted:
                    break
                if before is None:
                    self._continue_as_new_if_long(wave, offset)
                task = BatchTask(
                    self._request.run_id, wave, offset, min(size, wave.size - offset), self._plan.failure_budget,
                    self._failed, tuple(self._failed_names[-SAMPLE:]), self._notices.setup,
                    self._count_rolled_back, handover=True, handed=before is not None,
                )  # fmt: skip
                child = batch_id(self._request.run_id, "vms", wave.wave_id, offset)
                self._started += 1
                self._batches.append(child)
                running.append(await workflow.start_child_workflow(WaveBatch.run, task, **_options(child)))
                offset += size
                if before is not None:
                    await _signal(before, "hand_over", child)
                    await self._ended(before, running[1])
                    running.pop(0)
            while running:
                await self._ended(running[0], None)
                running.pop(0)
        except (asyncio.CancelledError, ChildWorkflowError):
            # The run is cancelled (a batch awaited reports it as a ChildWorkflowError) or a batch
            # failed: every batch still in flight is cancelled too, and its VMs revert before the run ends.
            for batch in running:
                batch.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise

    async def _ended(
        self,
        batch: workflow.ChildWorkflowHandle[Any, BatchResult],
        successor: workflow.ChildWorkflowHandle[Any, BatchResult] | None,
    ) -> None:
        """Await ``batch`` and count it; its ``successor`` (started meanwhile) then owns the wave's
        whole concurrency and learns the batch's failures and halt."""
        try:
            result = await batch
        finally:
            self._batches.remove(batch.id)
            self._admitted.discard(batch.id)
        self._absorb(result)
        if successor is not None:
            grant = SlotGrant(final=True, failed=result.failed, failed_names=result.failed_names,
                              halted=result.halted)  # fmt: skip
            await _signal(successor, "grant", grant)

    def _absorb(self, result: BatchResult) -> None:
        for status, n in result.counts.items():
            self._counts[status] = self._counts.get(status, 0) + n
        self._failed += result.failed
        self._failed_names = list(result.failed_names)
        if result.halted and not self._halted:
            self._halted = result.halted

    async def _between_rings(self, wave: WaveInfo) -> None:
        """After the last wave of a ring with a soak or an approval: soak, then the ring gate, then the
        approval gate. (A ring with neither is gated when the next ring starts, :meth:`_wave`.)"""
        if wave.soak_s > 0:
            await self._soak(wave.soak_s)
        if self._gates and (wave.soak_s > 0 or wave.approval):
            await self._ring_gate(wave.ring, wave.position, soaked=wave.soak_s > 0)
        elif wave.soak_s > 0:  # a run of before RING_GATE: health after the soak only
            found = await self._ring_check(self._ring_start, wave.position)
            self._halted = self._halted or refusal(wave.ring, found, soaked=True, outcomes=False)
        if wave.approval and not self._halted and wave.ring not in self._forced:  # forced = approved
            await self._await_approval(wave.ring, wave.position)

    async def _ring_gate(self, ring: str, last: int, *, soaked: bool) -> None:
        """Promotion past ``ring`` (its waves ``self._ring_start`` .. ``last``) is refused when any of
        its VMs failed or was rolled back, or is unhealthy now — unless the ring was forced
        (``approve --ring RING --force``, read from the fact store by ``run_setup``)."""
        self._phase = "ring-gate"
        found = await self._ring_check(self._ring_start, last)
        why = refusal(ring, found, soaked=soaked, outcomes=True)
        if why and ring in self._forced:
            workflow.logger.warning("ring %s was forced past its gate: %s", ring, why)
            why = ""
        if why and not self._halted:
            self._halted, self._refused = with_fix(why, self._request.run_id, ring), ring
        else:
            self._gated = ring
        self._phase = "guests"

    async def _ring_check(self, first: int, last: int) -> HealthBatchResult:
        return await check_ring(
            self._request.run_id, first, last, self._limits.batch_size, self._batch, _options
        )

    async def _soak(self, seconds: int) -> None:
        self._phase = "soak"
        self._soak_until = (workflow.now() + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        await workflow.sleep(timedelta(seconds=seconds))
        self._soak_until = ""
        self._phase = "guests"

    async def _await_approval(self, ring: str, last: int) -> None:
        """The approval gate: open until an ``approve`` update is accepted (or refused: the run halts)."""
        self._phase = "approval"
        self._waiting_for, self._gate_span = ring, (self._ring_start, last)
        decided = lambda: (ring in self._approved or bool(self._halted)) and not self._checking
        try:
            await workflow.wait_condition(decided, timeout=APPROVAL_TIMEOUT)
        except TimeoutError:
            await workflow.wait_condition(lambda: not self._checking)
            if ring not in self._approved and not self._halted:
                hours = APPROVAL_TIMEOUT.total_seconds() / 3600
                self._halted = f"ring {ring!r} was not approved within {hours:.0f}h (patchwave approve RUN)"
        self._waiting_for = ""
        self._phase = "guests"

    # ---------------------------------------------------------------- continue-as-new

    def _history_long(self) -> bool:
        """This execution started a batch and its history is long: time to continue as new."""
        info = workflow.info()
        long = info.get_current_history_length() >= self._limits.continue_after_events
        return bool(self._started) and (long or info.is_continue_as_new_suggested())

    def _continue_as_new_if_long(self, wave: WaveInfo, offset: int) -> None:
        """Before the batch at (wave, offset): hand over to a new execution once the history is long."""
        if not self._history_long():
            return
        carry = RunCarry(
            plan=self._plan, limits=self._limits, notify=self._notices.setup, wave=wave.position, offset=offset,
            counts=dict(self._counts), failed=self._failed, failed_names=tuple(self._failed_names[-SAMPLE:]),
            hosts_done=self._hosts_done, hosts_failed=self._hosts_failed, ring=self._ring,
            ring_start=self._ring_start,
            approved=tuple(sorted(self._approved)), executions=self._executions + 1,
            count_rolled_back=self._count_rolled_back, forced=tuple(sorted(self._forced)), gated=self._gated,
        )  # fmt: skip
        workflow.continue_as_new(self._request, memo={CARRY: carry})

    def _continue_from(self, carry: RunCarry) -> tuple[int, int]:
        self._plan, self._limits = carry.plan, carry.limits
        self._notices.configure(self._request.run_id, carry.notify,
                                (NotifyEvent.PLAN_PUBLISHED, NotifyEvent.RUN_STARTED))  # fmt: skip
        self._counts, self._failed = dict(carry.counts), carry.failed
        self._failed_names = list(carry.failed_names)
        self._hosts_done, self._hosts_failed = carry.hosts_done, carry.hosts_failed
        self._approved, self._forced, self._gated = set(carry.approved), set(carry.forced), carry.gated
        self._count_rolled_back = carry.count_rolled_back
        self._ring, self._ring_start, self._executions = carry.ring, carry.ring_start, carry.executions
        return carry.wave, carry.offset

    # ---------------------------------------------------------------- the end

    async def _cleanup(self) -> None:
        self._phase = "cleanup"
        now = workflow.now().isoformat(timespec="seconds")
        for site in self._plan.sites:
            try:
                await call(
                    ActivityName.CLEANUP_EXPIRED_SNAPSHOTS,
                    CleanupInput(site, now),
                    result_type=CleanupResult,
                    queue=site_queue(site),
                )
            except ActivityError as err:  # never fails the run: the next run (or `snapshots cleanup`) retries
                workflow.logger.warning("snapshot cleanup failed for site %s: %s", site, describe(err))

    async def _finish(self, request: RunRequest) -> RunSummary:
        self._phase = "done"
        bad = self._counts.get(StepStatus.FAILED.value, 0) + self._counts.get(StepStatus.ROLLED_BACK.value, 0)
        status = "halted" if self._halted else ("failed" if bad or self._hosts_failed else "succeeded")
        skip = f"not attempted: {self._halted}" if self._halted else ""
        if not request.guests:
            skip = skip or "guests not selected for this run"
        finish = FinishInput(request.run_id, status, self._halted, skip, self._refused)
        summary = await call(ActivityName.FINISH_RUN, finish, result_type=RunSummary, queue=CENTRAL_QUEUE)
        event = NotifyEvent.RUN_HALTED if self._halted else NotifyEvent.RUN_FINISHED
        await self._notices.send(event, summary=summary)
        return summary
