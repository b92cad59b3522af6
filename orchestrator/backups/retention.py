"""Retention: keep the newest ``keep`` backups of a VM that patchwave made, delete the rest.

Reality first: the candidates are what the platform lists *now* for the VM, and only backups that
carry a patchwave backup ownership are ever deleted (someone's own vzdump, clone or file next to
ours is not ours to prune). The newest backup whose latest verification passed is kept even when
it is older than the ``keep`` newest: pruning never leaves a VM with only unverified backups while a
verified one exists. Each deletion is journalled (``backup_delete``, intent first) and the backup's
row marked ``deleted``; a backup already gone counts as deleted (a retried prune is harmless).
"""

from __future__ import annotations

from orchestrator.backups.journal import BackupDeps, Journal
from orchestrator.facts.actions import Action
from orchestrator.facts.details import BackupDetail
from providers.backups import BackupInfo
from providers.base import Capability, VmRef
from providers.capabilities import require
from providers.errors import NotFound, ProviderError


def prune(
    deps: BackupDeps, vm: VmRef, *, keep: int, run_id: str, step_id: str, target: str = "", timeout: float
) -> list[BackupInfo]:
    """Delete ``vm``'s patchwave backups beyond the newest ``keep``; the backups deleted."""
    if keep < 1:
        raise ValueError("keep must be at least 1: pruning never deletes every backup")
    ops = require(deps.provider, Capability.BACKUP)
    journal = Journal(deps, run_id, step_id)
    ours = [b for b in ops.list_backups(vm, target=target) if b.ownership and b.ownership.role == "backup"]
    ours.sort(key=lambda b: (b.created_at, b.id))
    kept = {b.id for b in ours[-keep:]}
    verified = [b for b in ours if (r := journal.store.by_platform_id(vm.site, b.id)) and r.verified]
    if verified:
        kept.add(verified[-1].id)
    deleted = []
    for backup in ours:
        if backup.id in kept:
            continue
        detail = BackupDetail(backup.id, backup.target, backup.location, backup.size, backup.checksum)
        journal.intent(Action.BACKUP_DELETE, str(vm), detail)
        try:
            ops.delete_backup(backup, timeout=timeout)
        except NotFound:
            pass  # gone already: what we wanted
        except ProviderError as exc:
            journal.failed(Action.BACKUP_DELETE, str(vm), exc, detail)
            raise
        journal.result(Action.BACKUP_DELETE, str(vm), detail, ok=True)
        journal.store.mark_deleted(vm.site, backup.id)
        journal.log.info("backup_pruned", vm=vm.name, backup=backup.id, keep=keep)
        deleted.append(backup)
    return deleted
