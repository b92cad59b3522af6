"""The hypervisor phase of ``PatchRun`` (workflow-side, deterministic): ``HostBatch`` child workflows.

``PatchRun`` runs the plan's host steps (in plan order) in batches of at most
``RunLimits.host_batch_size`` hosts, one ``HostBatch`` child after another, so no history grows with
the number of hosts; each batch reads its slice from the fact store (``host_batch``: the steps and
which of them already have a final outcome — a resumed run does not patch them again).

Failure domains one after another, hosts strictly one at a time: preflight (every precondition,
read-only) -> enter maintenance (the activity records intent first) -> patch -> reboot if
needed/allowed -> verify -> exit maintenance, the last one ALWAYS (``finally``, shielded from
cancellation). A failed host stops the phase.
A host whose preflight fails (SSH host key or login refused, no capacity for its guests, platform
unreachable...) is SKIPPED with the reason and never touched; the phase goes on with the next host:
nothing changed on the skipped one, its failure domain is as strong as before, and the guests still
get patched (they do not depend on their host's patch). Runs started before the preflight existed
replay without it (``workflow.patched``).
A *report-only* host (``patch = "none"``) is only verified (connected) and assessed read-only
(``host_patch`` lists its pending updates); maintenance is never entered, so there is nothing to exit.

Maintenance windows: before each host, the host's window (its failure domain's, chosen by the
planner) must admit the host's ``need_s`` — the worst cases of this host and the later hosts of its
domain — through the same :class:`~.window_gate.WindowGate` the guest waves use (the rule of
:func:`orchestrator.windows.hosts.place_hosts`, the plan's timeline). Until then the batch waits on
a durable timer and the run is ``paused`` ("waiting for maintenance window ..."); a host that its
window never admits is recorded ``skipped`` with the reason and the phase goes on. Each outcome
carries ``started_at`` / ``finished_at`` (workflow time): the fact store learns the host's duration
from them (the next plan's worst case).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.failures import describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        BatchProgress,
        HostBatchResult,
        HostBatchTask,
        HostBuild,
        HostOutcomeRecord,
        HostPreflight,
        HostSlice,
        HostTask,
        PlanPage,
        RunStatusUpdate,
        VmProgress,
        site_queue,
    )
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.notices import RunNotices
    from orchestrator.engine.workflows.window_gate import WindowGate
    from orchestrator.model import HostOutcome, HostStep, StepStatus
    from providers.base import HostPatchResult

#: ``workflow.patched`` id of the preflight step (histories recorded without it replay without it).
PREFLIGHT = "host-preflight"


#: What a host's need is, in the gate's refusal.
WORST_CASE = "the worst case of its failure domain from this host on (evacuate + patch + reboot + exit)"


def _now() -> str:
    return workflow.now().isoformat(timespec="seconds")


@workflow.defn(name="HostBatch")
class HostBatch:
    """Hosts ``offset`` .. ``offset + limit - 1`` of the run's host steps, one at a time."""

    def __init__(self) -> None:
        self._done = 0
        self._id = ""
        self._run_id = ""
        self._window_until = ""
        self._notices = RunNotices()
        self._current: VmProgress | None = None  # the host in flight (one at a time), for the live view
        self._current_step = ""  # its step id (its row has none: no VmPatch to ask for a stage)

    @workflow.query(name="progress")
    def progress(self) -> BatchProgress:
        return BatchProgress(
            batch_id=self._id, hosts_done=self._done, window_until=self._window_until,
            vms=(self._current,) if self._current is not None else (),
        )  # fmt: skip

    def _on_stage(self, step: HostStep, stage: str) -> None:
        """The host in flight entered ``stage`` ("" = it is done)."""
        if not stage:
            self._current = None
            return
        now = workflow.now().isoformat(timespec="seconds")
        same_host = self._current is not None and self._current_step == step.step_id
        started = self._current.started if self._current is not None and same_host else now
        self._current_step = step.step_id
        self._current = VmProgress(
            step.host.name, step.host.site, "hosts", StepStatus.RUNNING, step_id="", channel=step.patch,
            started=started, est_s=step.est_duration_s, stage=stage, since=now,
        )  # fmt: skip

    @workflow.run
    async def run(self, task: HostBatchTask) -> HostBatchResult:
        self._id, self._run_id = workflow.info().workflow_id, task.run_id
        self._notices.configure(task.run_id, task.notify)
        gate = WindowGate(self._waiting_for_window, self._notices.prenotice_wait)
        page = PlanPage(task.run_id, task.offset, task.limit)
        batch = await call(ActivityName.HOST_BATCH, page, result_type=HostSlice, queue=CENTRAL_QUEUE)
        failed = 0

        def done(outcome: HostOutcome) -> None:
            nonlocal failed
            self._done += 1
            failed += outcome.status is StepStatus.FAILED

        finished = {o.step_id: o for o in batch.finished}
        halted = await HostPhase(task.run_id, done, gate, self._on_stage).run(batch.steps, finished)
        return HostBatchResult(done=self._done, failed=failed, halted=halted)

    async def _waiting_for_window(self, window: str, until: str) -> None:
        """The gate waits (the run is paused: no host is touched) or admits (the run runs again)."""
        waiting = f"{window} until {until}" if window else ""
        if waiting == self._window_until:
            return
        self._window_until = waiting
        why = f"waiting for maintenance window {window!r} until {until}"
        update = (
            RunStatusUpdate(self._run_id, "paused", why)
            if window
            else RunStatusUpdate(self._run_id, "running")
        )
        await call(ActivityName.SET_RUN_STATUS, update, queue=CENTRAL_QUEUE)


class HostPhase:
    """Runs the plan's host steps; ``on_done`` is told about every outcome (progress, budget);
    ``gate`` admits each host in its window."""

    def __init__(
        self,
        run_id: str,
        on_done: Callable[[HostOutcome], None],
        gate: WindowGate,
        on_stage: Callable[[HostStep, str], None] = lambda _step, _stage: None,
    ) -> None:
        self._run_id = run_id
        self._on_done = on_done
        self._gate = gate
        self._on_stage = on_stage

    async def run(self, steps: Sequence[HostStep], finished: Mapping[str, HostOutcome]) -> str:
        """Patch every host of ``steps`` (in order) but the ``finished`` ones (step id -> its final
        outcome, recorded by an earlier execution); returns a halt reason ("" when every host came back)."""
        for step in steps:
            if step.step_id in finished:
                self._on_done(finished[step.step_id])
                continue
            refused = await self._gate.admit_need(step.window, step.need_s, WORST_CASE) if step.window else ""
            if refused:
                outcome = HostOutcome(
                    step.step_id, step.host, StepStatus.SKIPPED, error=f"not attempted: {refused}"
                )
            else:
                started = _now()
                try:
                    outcome = replace(await self._host(step), started_at=started, finished_at=_now())
                finally:
                    self._on_stage(step, "")
            await call(
                ActivityName.HOST_RECORD_OUTCOME,
                HostOutcomeRecord(self._run_id, outcome),
                queue=site_queue(step.host.site),
            )
            self._on_done(outcome)
            if outcome.status is StepStatus.FAILED:
                return f"host {step.host} failed: {outcome.error}"
        return ""

    async def _host(self, step: HostStep) -> HostOutcome:
        task = HostTask(run_id=self._run_id, step=step)
        queue = site_queue(step.host.site)
        outcome = HostOutcome(step_id=step.step_id, host=step.host, status=StepStatus.RUNNING)
        if step.patch == "none":
            self._on_stage(step, "report-only")
            return await self._report_only(task, queue, outcome)
        self._on_stage(step, "preflight")
        refused = await self._preflight(task, queue)
        if refused:
            return replace(outcome, status=StepStatus.SKIPPED, error=f"not touched: {refused}")
        try:
            outcome = await self._patch(task, queue, outcome)
        except ActivityError as err:
            outcome = HostOutcome(
                step_id=step.step_id, host=step.host, status=StepStatus.FAILED, error=describe(err)
            )
        finally:
            self._on_stage(step, "exit-maintenance")
            exit_error = await shielded(self._exit(task, queue))
        if exit_error:
            error = "; ".join(e for e in (outcome.error, f"exit maintenance failed: {exit_error}") if e)
            return HostOutcome(
                step_id=outcome.step_id,
                host=outcome.host,
                status=StepStatus.FAILED,
                build_before=outcome.build_before,
                build_after=outcome.build_after,
                rebooted=outcome.rebooted,
                error=error,
            )
        return outcome

    async def _preflight(self, task: HostTask, queue: str) -> str:
        """Why the host must not be touched ("" = every precondition holds)."""
        if not workflow.patched(PREFLIGHT):
            return ""
        try:
            check = await call(ActivityName.HOST_PREFLIGHT, task, result_type=HostPreflight, queue=queue)
        except ActivityError as err:
            return f"its preconditions could not be checked: {describe(err)}"
        return "" if check.ok else f"preflight failed: {check.reason}"

    async def _patch(self, task: HostTask, queue: str, outcome: HostOutcome) -> HostOutcome:
        self._on_stage(task.step, "enter-maintenance")
        await call(ActivityName.HOST_ENTER_MAINTENANCE, task, queue=queue)
        self._on_stage(task.step, "patch")
        patch = await call(ActivityName.HOST_PATCH, task, result_type=HostPatchResult, queue=queue)
        rebooted = False
        if task.step.reboot.needs_reboot(patch.reboot_required):
            self._on_stage(task.step, "reboot")
            await call(ActivityName.HOST_REBOOT, task, queue=queue)
            rebooted = True
        self._on_stage(task.step, "verify")
        verified = await call(ActivityName.HOST_VERIFY, task, result_type=HostBuild, queue=queue)
        return HostOutcome(
            step_id=outcome.step_id,
            host=outcome.host,
            status=StepStatus.SUCCEEDED,
            build_before=patch.build_before,
            build_after=verified.build or patch.build_after,
            rebooted=rebooted,
        )

    async def _report_only(self, task: HostTask, queue: str, outcome: HostOutcome) -> HostOutcome:
        """Verify the host is connected and list its pending updates; change nothing on it."""
        try:
            verified = await call(ActivityName.HOST_VERIFY, task, result_type=HostBuild, queue=queue)
            report = await call(ActivityName.HOST_PATCH, task, result_type=HostPatchResult, queue=queue)
        except ActivityError as err:
            return replace(outcome, status=StepStatus.FAILED, error=describe(err))
        build = verified.build or report.build_before
        return replace(
            outcome, status=StepStatus.SUCCEEDED, build_before=build, build_after=build, detail=report.detail
        )

    async def _exit(self, task: HostTask, queue: str) -> str:
        try:
            await call(ActivityName.HOST_EXIT_MAINTENANCE, task, queue=queue)
        except ActivityError as err:
            return describe(err)
        return ""
