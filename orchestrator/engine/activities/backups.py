"""The backup activities: a VM's full backup before its snapshot (``vm_backup``) and a round of
restore tests (``backup_verify_round``, the ``patchwave-verify-backups`` schedule).

``vm_backup`` is :func:`orchestrator.backups.take` for (run, step): the ``backups`` row and the
journal's ``backup_create`` intent are written *before* the platform is asked, the result after;
the provider finds a backup that already carries this (run, step)'s ownership instead of taking a
second one, so a retried activity (a lost worker, a timeout) never takes two. After a successful
backup, retention (:func:`orchestrator.backups.prune`, ``[backup] keep``) deletes the VM's oldest
patchwave backups — journalled too. A failed backup is raised with its retry meaning; VmPatch then
fails the VM with the reason and does not patch it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator import backups
from orchestrator.backup_fleet import due_for_verification, verify_one, verify_run_id
from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import BackupResult, BackupVerifyRound, VmTask
from providers.base import Capability
from providers.errors import ProviderError


class BackupActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def site(self) -> list[Callable[..., Any]]:
        return [self.vm_backup]

    def central(self) -> list[Callable[..., Any]]:
        return [self.backup_verify_round]

    def _deps(self, site: str) -> backups.BackupDeps:
        provider = self.ctx.require(site, Capability.BACKUP)
        return backups.BackupDeps(provider, self.ctx.facts, clock=self.ctx.clock, log=self.ctx.log)

    @activity.defn(name=ActivityName.VM_BACKUP)
    @translated
    def vm_backup(self, task: VmTask) -> BackupResult:
        vm, policy = task.step.vm, task.step.policy
        deps = self._deps(vm.site)
        run_id, step_id = task.run_id, task.step.step_id
        with heartbeating(f"backing up {vm}"):
            record = backups.take(deps, vm, run_id=run_id, step_id=step_id, timeout=policy.backup_timeout_s)
            try:
                pruned = backups.prune(
                    deps, vm, keep=policy.backup_keep, run_id=run_id, step_id=step_id,
                    timeout=policy.backup_timeout_s,
                )  # fmt: skip
            except ProviderError as exc:  # the backup exists; an old one stays until the next run
                self.ctx.log.warning("backup_prune_failed", run=run_id, vm=str(vm), error=str(exc))
                pruned = []
        return BackupResult(record.backup_id, record.location, len(pruned))

    @activity.defn(name=ActivityName.BACKUP_VERIFY_ROUND)
    @translated
    def backup_verify_round(self, limit: int) -> BackupVerifyRound:
        """Restore-verify the ``limit`` backups least recently verified (one at a time)."""
        run_id = verify_run_id(self.ctx.clock.now())
        verified = failed = 0
        for record in due_for_verification(self.ctx.facts, limit=limit):
            with heartbeating(f"restore-verifying {record.vm}"):
                row = verify_one(self.ctx, record, run_id=run_id)
            verified += 1
            failed += 0 if row.ok else 1
            self.ctx.log.info(
                "backup_restore_test", vm=str(record.vm), backup=record.backup_id, ok=row.ok, error=row.error
            )
        return BackupVerifyRound(verified, failed)
