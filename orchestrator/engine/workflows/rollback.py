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
    from orchestrator.engine.payloads import CENTRAL_QUEUE, RollbackRequest, RollbackTargets, VmTask
    from orchestrator.engine.workflows.calls import call, shielded
    from orchestrator.engine.workflows.leases import LeaseKeeper
    from orchestrator.engine.workflows.vms import VmRollback
    from orchestrator.model import VmOutcome


RELEASE_PATCH = "rollback-leases"


@workflow.defn(name="RollbackRun")
class RollbackRun:
    """Revert the snapshots a finished run recorded (all VMs or the named ones) and verify health."""

    @workflow.run
    async def run(self, request: RollbackRequest) -> tuple[VmOutcome, ...]:
        targets = await call(
            ActivityName.ROLLBACK_TARGETS, request, result_type=RollbackTargets, queue=CENTRAL_QUEUE
        )
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
        return await workflow.execute_child_workflow(
            VmRollback.run,
            task,
            id=f"{task.run_id}/rollback/{task.step.step_id}/{workflow.uuid4().hex[:8]}",
            task_queue=CENTRAL_QUEUE,
        )
