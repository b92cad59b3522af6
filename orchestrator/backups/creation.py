"""Taking a backup of one VM for one (run, step), idempotently and on record.

``take`` is what the engine's backup activity calls before the VM's snapshot. Reality first: the
provider's ``create_backup`` returns a complete backup that already carries this (run, step)'s
ownership instead of making another, so a retried activity never takes two backups. The fact store
gets the ``backups`` row as ``intent`` *before* the call and ``created`` (platform id, location,
size, checksum, time) or ``failed`` after, and the step journal an intent/result pair
``backup_create``. A failure is raised as the provider's error (``retryable`` says whether a retry
may help): the engine then fails the VM with the reason and does not patch it.
"""

from __future__ import annotations

from orchestrator.backups.journal import BackupDeps, Journal
from orchestrator.facts.actions import Action
from orchestrator.facts.backups import BackupRecord
from orchestrator.facts.details import BackupDetail
from providers.backups import BackupOwnership
from providers.base import Capability, VmRef
from providers.capabilities import require
from providers.errors import ProviderError


def take(
    deps: BackupDeps, vm: VmRef, *, run_id: str, step_id: str, target: str = "", timeout: float
) -> BackupRecord:
    """A full backup of ``vm`` (the provider's configured target, or ``target``); its record."""
    ops = require(deps.provider, Capability.BACKUP)
    journal = Journal(deps, run_id, step_id)
    record = journal.store.register_intent(run_id, step_id, vm, target)
    ownership = BackupOwnership(run_id, step_id, vm.id, record.recorded_at or journal.now())
    intent = BackupDetail(target=target, location=ownership.name(vm.name))  # the name it is about to get
    journal.intent(Action.BACKUP_CREATE, str(vm), intent)
    try:
        info = ops.create_backup(vm, ownership=ownership, target=target, timeout=timeout)
    except ProviderError as exc:
        journal.failed(Action.BACKUP_CREATE, str(vm), exc, intent)
        if not exc.retryable:
            journal.store.register_failed(run_id, step_id, str(exc))
        journal.log.warning("backup_failed", vm=vm.name, code=exc.code, error=exc.message)
        raise
    done = BackupDetail(info.id, info.target, info.location, info.size, info.checksum)
    journal.result(Action.BACKUP_CREATE, str(vm), done, ok=True)
    journal.log.info("backup_taken", vm=vm.name, backup=info.id, size=info.size, checksum=info.checksum)
    return journal.store.register_created(run_id, step_id, info)
