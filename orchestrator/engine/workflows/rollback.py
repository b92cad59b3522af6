"""``RollbackRun``: `patchwave rollback RUN` — revert the snapshots a finished run recorded.

The ``rollback_targets`` activity lists the VMs with a recorded snapshot (all, or the named ones)
and takes their leases (owner: this workflow's id) — refused while the run, or anyone, still works
on one of them; each is a ``VmRollback`` child workflow (:mod:`orchestrator.engine.workflows.vms`)
that reverts exactly that snapshot and verifies health. The leases are renewed meanwhile
(:class:`~orchestrator.engine.workflows.leases.LeaseKeeper`) and released at the end, whatever
happened. Deterministic, like every workflow.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        RollbackRequest,
        RollbackTargets,
        RunProgress,
        VmProgress,
        VmTask,
    )
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.leases import LeaseKeeper
    from orchestrator.engine.workflows.vms import VmRollback
    from orchestrator.model import StepStatus, VmOutcome

#: VMs in flight the ``progress`` query lists at most (the counters cover all of them).
SHOWN_IN_FLIGHT = 50


RELEASE_PATCH = "rollback-leases"


@workflow.defn(name="RollbackRun")
class RollbackRun:
    """Revert the snapshots a finished run recorded (all VMs or the named ones) and verify health."""

    def __init__(self) -> None:
        self._run_id = ""
        self._total = 0
        self._counts: dict[str, int] = {}
        self._running: dict[str, VmProgress] = {}

    @workflow.query(name="progress")
    def progress(self) -> RunProgress:
        """The live view's query: VMs reverted per status, and (at most SHOWN_IN_FLIGHT of) those in flight."""
        counts = {**self._counts, StepStatus.RUNNING.value: len(self._running)}
        counts[StepStatus.PENDING.value] = max(0, self._total - sum(counts.values()))
        return RunProgress(
            run_id=self._run_id, phase="rollback", counts=counts, total=self._total,
            vms=tuple(list(self._running.values())[:SHOWN_IN_FLIGHT]),
        )  # fmt: skip

    @workflow.run
    async def run(self, request: RollbackRequest) -> tuple[VmOutcome, ...]:
        self._run_id = request.run_id
        targets = await call(
            ActivityName.ROLLBACK_TARGETS, request, result_type=RollbackTargets, queue=CENTRAL_QUEUE
        )
        self._total = len(targets.tasks)
        owner, keeper = workflow.info().workflow_id, LeaseKeeper()
        keeper.start(owner)
        try:
            outcomes = await asyncio.gather(*(self._one(task) for task in targets.tasks))
        finally:
            keeper.stop()
            if workflow.patched(RELEASE_PATCH):
                await shielded(call(ActivityName.RELEASE_LEASES, owner, queue=CENTRAL_QUEUE))
        return tuple(outcomes)

    async def _one(self, task: VmTask) -> VmOutcome:
        step = task.step
        self._running[step.step_id] = VmProgress(
            step.vm.name, step.vm.site, step.ring, StepStatus.RUNNING, channel=step.channel, stage="revert",
            started=workflow.now().isoformat(timespec="seconds"), since=workflow.now().isoformat(timespec="seconds"),
        )  # fmt: skip
        try:
            outcome: VmOutcome = await workflow.execute_child_workflow(
                VmRollback.run,
                task,
                id=f"{task.run_id}/rollback/{step.step_id}/{workflow.uuid4().hex[:8]}",
                task_queue=CENTRAL_QUEUE,
            )
        finally:
            self._running.pop(step.step_id, None)
        self._counts[outcome.status.value] = self._counts.get(outcome.status.value, 0) + 1
        return outcome
