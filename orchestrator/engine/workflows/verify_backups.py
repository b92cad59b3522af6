"""``VerifyBackups``: one round of restore tests (started by the ``patchwave-verify-backups``
schedule). The round's work is one central activity over at most ``per_round`` backups picked from
the fact store, so neither the payload nor the history grows with the fleet."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import CENTRAL_QUEUE, BackupVerifyRound
    from orchestrator.engine.workflows.calls import call


@workflow.defn(name="VerifyBackups")
class VerifyBackups:
    @workflow.run
    async def run(self, per_round: int) -> BackupVerifyRound:
        return await call(
            ActivityName.BACKUP_VERIFY_ROUND, per_round, result_type=BackupVerifyRound, queue=CENTRAL_QUEUE
        )
