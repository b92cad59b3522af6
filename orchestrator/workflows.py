"""Temporal workflows: ``PatchRun`` (one rollout) and ``RollbackRun`` (revert a run's snapshots).

Deterministic: no I/O, time from ``workflow.now()``, every side effect in an activity
(:mod:`orchestrator.activities`, called by name through :mod:`orchestrator.calls`).

PatchRun: run_setup -> discover (one activity per site, on the site's queue) -> plan_run ->
hypervisor phase (:mod:`orchestrator.host_phase`) -> guest waves in ring order (child workflow
``VmPatch`` per VM, ``asyncio.Semaphore(wave.concurrency)``, maintenance-window admission
(:mod:`orchestrator.window_gate`), a global failure budget, soak timers followed by a health check
of the ring, and approval gates between rings) -> cleanup_expired_snapshots per site -> RunSummary.
Notifications (:mod:`orchestrator.run_notices`) at plan published, window pre-notice, run started,
VM rolled back, run finished / halted; they never change the run. A scheduled run (``run_id=""``)
takes its workflow id as run id.

Why the planner runs in an activity (``plan_run``) and not inline: ``make_plan`` is pure, but its
inputs are not workflow data — the worker's settings (which hold resolved secrets that must never
enter a Temporal payload) and the fact store's duration history (I/O). The activity receives
``workflow.now()`` as the plan's time, so the plan is still a function of recorded inputs, and its
result is in the history: replays and code changes to the planner cannot change a running plan.
A resumed execution (same run id) reuses the plan recorded in the fact store.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call, describe, shielded
    from orchestrator.host_phase import HostPhase
    from orchestrator.messages import (
        CENTRAL_QUEUE,
        CleanupInput,
        CleanupResult,
        PlanInput,
        RollbackRequest,
        RollbackTargets,
        RunProgress,
        RunSetup,
        RunStatusUpdate,
        VmProgress,
        VmTask,
        site_queue,
    )
    from orchestrator.model import (
        HostOutcome,
        Plan,
        RunRequest,
        RunSummary,
        StepStatus,
        VmOutcome,
        VmStep,
        Wave,
    )
    from orchestrator.retry import WORKFLOW_TASK_TIMEOUT
    from orchestrator.run_notices import RunNotices
    from orchestrator.vm_workflow import VmPatch, check_health
    from orchestrator.window_gate import WindowGate
    from providers.base import Inventory

#: How long a ring waits for `patchwave approve RUN` before the run halts (stop, never guess).
APPROVAL_TIMEOUT = timedelta(hours=24)


def child_id(run_id: str, step_id: str) -> str:
    return f"{run_id}/{step_id}"


@workflow.defn(name="PatchRun")
class PatchRun:
    def __init__(self) -> None:
        self._run_id = ""
        self._phase = "setup"
        self._ring = ""
        self._waiting_for = ""
        self._soak_until = ""
        self._window_until = ""
        self._paused = ""  # why the run is paused for a window ("" = not paused)
        self._notices = RunNotices()
        self._gate = WindowGate(self._waiting_for_window, self._notices.prenotice_wait)
        self._approved: set[str] = set()
        self._approve_next = False
        self._vms: dict[str, VmProgress] = {}
        self._steps: dict[str, VmStep] = {}
        self._outcomes: dict[str, VmOutcome] = {}
        self._hosts: list[HostOutcome] = []
        self._hosts_total = 0
        self._failed = 0
        self._budget = 0
        self._halted = ""
        self._blocked: tuple[str, ...] = ()

    # ---------------------------------------------------------------- queries and signals

    @workflow.query(name="progress")
    def progress(self) -> RunProgress:
        return RunProgress(
            run_id=self._run_id,
            phase=self._phase,
            ring=self._ring,
            waiting_for=self._waiting_for,
            soak_until=self._soak_until,
            window_until=self._window_until,
            hosts_done=len(self._hosts),
            hosts_total=self._hosts_total,
            vms=tuple(self._vms.values()),
            failed=self._failed,
            failure_budget=self._budget,
            halted_reason=self._halted,
            blocked=self._blocked,
        )

    @workflow.signal(name="approve")
    def approve(self, ring: str = "") -> None:
        """Approve promotion past ``ring`` ("" = the ring waiting now, or the next gate)."""
        if ring:
            self._approved.add(ring)
        elif self._waiting_for:
            self._approved.add(self._waiting_for)
        else:
            self._approve_next = True

    # ---------------------------------------------------------------- the run

    @workflow.run
    async def run(self, request: RunRequest) -> RunSummary:
        if not request.run_id:  # a scheduled run: the workflow id (schedule id + scheduled time)
            request = replace(request, run_id=workflow.info().workflow_id)
        self._run_id = request.run_id
        try:
            return await self._run(request)
        except ActivityError as err:
            reason = describe(err)
            await call(
                "set_run_status", RunStatusUpdate(request.run_id, "failed", reason), queue=CENTRAL_QUEUE
            )
            failed = RunSummary(run_id=request.run_id, status="failed", halted_reason=f"run failed: {reason}")
            await self._notices.send("run_halted", summary=failed)
            raise ApplicationError(f"run {request.run_id} failed: {reason}", non_retryable=True) from err
        except asyncio.CancelledError:
            update = RunStatusUpdate(request.run_id, "cancelled", f"cancelled in phase {self._phase}")
            await shielded(call("set_run_status", update, queue=CENTRAL_QUEUE))
            raise

    async def _run(self, request: RunRequest) -> RunSummary:
        setup = await call("run_setup", request, result_type=RunSetup, queue=CENTRAL_QUEUE)
        plan = setup.plan or await self._make_plan(request, setup)
        self._start_progress(plan, setup)
        await self._notices.start(request.run_id)
        await self._notices.send("plan_published")
        await call("set_run_status", RunStatusUpdate(request.run_id, "running"), queue=CENTRAL_QUEUE)
        await self._notices.send("run_started", requested_by=request.requested_by or "-")
        if request.dry_run:
            self._skip_remaining("dry run: nothing was changed")
        if request.hosts and not request.dry_run and plan.host_phase:
            self._phase = "hosts"
            finished = {o.step_id: o for o in setup.finished_hosts}
            self._halted = await HostPhase(request.run_id, self._hosts.append).run(plan, finished)
        if self._halted:
            self._skip_remaining(f"not attempted: {self._halted}")
        if request.guests and not request.dry_run:
            await self._guest_phase(plan)
        if not request.guests:
            self._skip_remaining("guests not selected for this run")
        await self._cleanup(plan)
        return await self._finish(request)

    async def _make_plan(self, request: RunRequest, setup: RunSetup) -> Plan:
        self._phase = "discover"
        inventories = await asyncio.gather(
            *(call("discover", site, result_type=Inventory, queue=site_queue(site)) for site in setup.sites)
        )
        self._phase = "plan"
        now = workflow.now().isoformat(timespec="seconds")
        return await call(
            "plan_run", PlanInput(request, tuple(inventories), now), result_type=Plan, queue=CENTRAL_QUEUE
        )

    def _start_progress(self, plan: Plan, setup: RunSetup) -> None:
        self._budget = plan.failure_budget
        self._blocked = tuple(f"{b.target}: {b.reason} ({b.code})" for b in plan.blocked)
        self._hosts_total = len(plan.host_steps)
        for step in plan.vm_steps:
            self._steps[step.step_id] = step
            self._vms[step.step_id] = VmProgress(step.vm.name, step.vm.site, step.ring, StepStatus.PENDING)
        for outcome in setup.finished_vms:  # a resumed run: shown, not redone, not counted again
            if outcome.step_id in self._vms:
                self._record(outcome, counts=False)

    # ---------------------------------------------------------------- guest waves

    async def _guest_phase(self, plan: Plan) -> None:
        self._phase = "guests"
        for index, wave in enumerate(plan.waves):
            self._ring = wave.ring
            await self._run_wave(wave)
            is_last = index + 1 == len(plan.waves)
            if is_last or self._halted:
                continue
            if wave.soak_s > 0:
                await self._soak(wave.soak_s)
                await self._check_ring(wave.ring)
            if self._halted:
                continue
            if wave.approval:
                await self._await_approval(wave.ring)
        self._phase = "guests-done"

    async def _run_wave(self, wave: Wave) -> None:
        slots = asyncio.Semaphore(max(1, wave.concurrency))

        async def one(step: VmStep) -> None:
            async with slots:
                if step.step_id in self._outcomes:
                    return
                if wave.window and not self._halted and not await self._gate.admit(wave.window, step):
                    self._skip(step.step_id, f"not attempted: window {wave.window!r} does not open again")
                    return
                if self._halted:
                    self._skip(step.step_id, f"not attempted: {self._halted}")
                    return
                self._vms[step.step_id] = _with_status(self._vms[step.step_id], StepStatus.RUNNING)
                outcome = await self._patch_vm(step)
                self._record(outcome)
                if outcome.status is StepStatus.ROLLED_BACK:
                    await self._notices.send("vm_rolled_back", key=f"vm_rolled_back:{step.step_id}",
                                             step_id=step.step_id, outcome=outcome)  # fmt: skip

        await asyncio.gather(*(one(step) for step in wave.vms))

    async def _patch_vm(self, step: VmStep) -> VmOutcome:
        expires = workflow.now() + timedelta(seconds=step.policy.snapshot_ttl_s)
        task = VmTask(self._run_id, step, expires.isoformat(timespec="seconds"))
        try:
            return await workflow.execute_child_workflow(
                VmPatch.run,
                task,
                id=child_id(self._run_id, step.step_id),
                task_queue=CENTRAL_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                task_timeout=WORKFLOW_TASK_TIMEOUT,
            )
        except ChildWorkflowError as err:
            return VmOutcome(
                step.step_id, step.vm, StepStatus.FAILED, error=f"VmPatch failed: {describe(err)}"
            )

    def _record(self, outcome: VmOutcome, *, counts: bool = True) -> None:
        self._outcomes[outcome.step_id] = outcome
        note = outcome.error[:200]
        self._vms[outcome.step_id] = _with_status(self._vms[outcome.step_id], outcome.status, note)
        if outcome.status is StepStatus.FAILED and counts:
            self._failed += 1
            if self._failed > self._budget and not self._halted:
                names = ", ".join(o.vm.name for o in self._outcomes.values() if o.status is StepStatus.FAILED)
                self._halted = (
                    f"failure budget exhausted: {self._failed} VM(s) failed ({names}), "
                    f"budget {self._budget}; remaining VMs were not attempted"
                )

    def _skip(self, step_id: str, reason: str) -> None:
        self._outcomes[step_id] = VmOutcome(
            step_id, self._steps[step_id].vm, StepStatus.SKIPPED, error=reason
        )
        self._vms[step_id] = _with_status(self._vms[step_id], StepStatus.SKIPPED, reason)

    def _skip_remaining(self, reason: str) -> None:
        for step_id, progress in list(self._vms.items()):
            if progress.status is StepStatus.PENDING and step_id not in self._outcomes:
                self._skip(step_id, reason)

    async def _waiting_for_window(self, window: str, until: str) -> None:
        """The gate waits (the run is paused: VMs in flight finish, no new one starts) or admits."""
        self._window_until = f"{window} until {until}" if window else ""
        self._phase = "window" if window else "guests"
        why = f"waiting for maintenance window {window!r} until {until}" if window else ""
        if why == self._paused:
            return
        self._paused = why
        update = RunStatusUpdate(self._run_id, "paused", why) if why else RunStatusUpdate(self._run_id, "running")
        await call("set_run_status", update, queue=CENTRAL_QUEUE)

    async def _check_ring(self, ring: str) -> None:
        """Promotion is gated on health: after the soak, the ring's patched VMs must still be healthy."""
        self._phase = "ring-health"
        patched = [self._steps[i] for i, o in self._outcomes.items()
                   if o.status is StepStatus.SUCCEEDED and self._steps[i].ring == ring]  # fmt: skip
        reports = await asyncio.gather(*(
            check_health("vm_verify_health", VmTask(self._run_id, step, ""), site_queue(step.vm.site),
                         deadline_s=step.policy.health_deadline_s)
            for step in patched
        ))  # fmt: skip
        sick = [f"{step.vm.name}: {'health check could not run' if r is None else r.failures}"
                for step, r in zip(patched, reports, strict=True) if r is None or not r.ok]  # fmt: skip
        if sick and not self._halted:
            self._halted = f"ring {ring!r} is unhealthy after its soak ({'; '.join(sick)}); not promoted"
        self._phase = "guests"

    async def _soak(self, seconds: int) -> None:
        self._phase = "soak"
        self._soak_until = (workflow.now() + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        await workflow.sleep(timedelta(seconds=seconds))
        self._soak_until = ""
        self._phase = "guests"

    async def _await_approval(self, ring: str) -> None:
        self._phase = "approval"
        self._waiting_for = ring
        try:
            await workflow.wait_condition(
                lambda: ring in self._approved or self._approve_next, timeout=APPROVAL_TIMEOUT
            )
            self._approve_next = False
        except TimeoutError:
            hours = APPROVAL_TIMEOUT.total_seconds() / 3600
            self._halted = f"ring {ring!r} was not approved within {hours:.0f}h (patchwave approve RUN)"
        self._waiting_for = ""
        self._phase = "guests"

    # ---------------------------------------------------------------- the end

    async def _cleanup(self, plan: Plan) -> None:
        self._phase = "cleanup"
        now = workflow.now().isoformat(timespec="seconds")
        for site in plan.sites:
            try:
                await call(
                    "cleanup_expired_snapshots",
                    CleanupInput(site, now),
                    result_type=CleanupResult,
                    queue=site_queue(site),
                )
            except ActivityError as err:  # never fails the run: the next run (or `snapshots cleanup`) retries
                workflow.logger.warning("snapshot cleanup failed for site %s: %s", site, describe(err))

    async def _finish(self, request: RunRequest) -> RunSummary:
        self._phase = "done"
        vms = tuple(self._outcomes[step_id] for step_id in self._vms if step_id in self._outcomes)
        bad = any(v.status in (StepStatus.FAILED, StepStatus.ROLLED_BACK) for v in vms)
        bad = bad or any(h.status is StepStatus.FAILED for h in self._hosts)
        status = "halted" if self._halted else ("failed" if bad else "succeeded")
        summary = RunSummary(
            run_id=request.run_id,
            status=status,
            hosts=tuple(self._hosts),
            vms=vms,
            halted_reason=self._halted,
        )
        await call("finish_run", summary, queue=CENTRAL_QUEUE)
        await self._notices.send("run_halted" if self._halted else "run_finished", summary=summary)
        return summary


def _with_status(progress: VmProgress, status: StepStatus, note: str = "") -> VmProgress:
    return VmProgress(progress.name, progress.site, progress.ring, status, note)


@workflow.defn(name="RollbackRun")
class RollbackRun:
    """Revert the snapshots a finished run recorded (all VMs or the named ones) and verify health."""

    @workflow.run
    async def run(self, request: RollbackRequest) -> tuple[VmOutcome, ...]:
        targets = await call("rollback_targets", request, result_type=RollbackTargets, queue=CENTRAL_QUEUE)
        outcomes = await asyncio.gather(*(self._one(task) for task in targets.tasks))
        return tuple(outcomes)

    async def _one(self, task: VmTask) -> VmOutcome:
        return await workflow.execute_child_workflow(
            "VmRollback",
            task,
            result_type=VmOutcome,
            id=f"{task.run_id}/rollback/{task.step.step_id}/{workflow.uuid4().hex[:8]}",
            task_queue=CENTRAL_QUEUE,
        )
