"""Verifying a backup by restoring it: an isolated copy, probed, destroyed, and the verdict on record.

``verify`` is one engine activity (heartbeat it: a restore and a boot take minutes):

1. the backup is looked up on the platform (gone = a failed verification, nothing restored);
2. a restored copy left by an earlier attempt of the same (run, step) is destroyed (journal
   ``BACKUP_COPY_DESTROY``, intent first);
3. the attempt is opened in ``backup_verifications`` and ``BACKUP_COPY_RESTORE`` journalled; the
   provider restores the backup into an isolated copy (no network) and starts it;
4. ``probe_copy`` waits for the copy's agent / heartbeat and runs the probes (``BACKUP_PROBE``);
5. the copy is destroyed (``BACKUP_COPY_DESTROY``), whatever happened in 4;
6. the attempt is closed: ``ok`` / ``failed`` become the backup's latest verdict.

A backup the platform refuses to restore (corrupt file, missing archive, a refused restore: a
permanent provider error) is a *failed* verification, returned, not raised. A transient error (the
platform unreachable, a timeout) closes the attempt as ``error`` and is raised: the activity retries,
and a retry finds and removes the copy the failed attempt may have left. ``sweep_copies`` removes
copies no attempt will come back for (crashed runs), by their ownership marker only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from orchestrator.backups.journal import BackupDeps, Journal
from orchestrator.facts.actions import Action
from orchestrator.facts.backups import BackupRecord, VerificationRecord
from orchestrator.facts.details import BackupDetail
from providers.backups import BackupInfo, BackupOwnership, RestoreCheck, RestoredCopy, RestoreProbe
from providers.base import Capability
from providers.capabilities import BackupVerifyOps, require
from providers.errors import ProviderError


def verify(
    deps: BackupDeps,
    backup: BackupRecord,
    *,
    run_id: str,
    step_id: str,
    probes: Sequence[RestoreProbe] = (),
    timeout: float,
    probe_timeout: float | None = None,
) -> VerificationRecord:
    """Restore ``backup`` into an isolated copy, probe it, destroy it; the verification record."""
    ops = require(deps.provider, Capability.BACKUP_VERIFY)
    journal = Journal(deps, run_id, step_id)
    attempt = journal.store.start_verification(backup, run_id, step_id)
    try:
        info = _on_platform(deps, backup)
        if info is None:
            where = backup.target or "its target"
            error = f"backup {backup.location or backup.backup_id} is no longer on {where}"
            return journal.store.finish_verification(attempt, result="failed", error=error)
        owner = BackupOwnership(
            run_id, step_id, backup.vm.id, journal.now(), role="restore", backup_id=info.id
        )
        for leftover in ops.list_restored_copies():
            if owner.same_owner(leftover.ownership):
                _destroy(ops, journal, leftover, timeout)
        check = _restore_and_probe(
            ops, journal, info, owner, attempt, probes, timeout, probe_timeout or timeout
        )
    except ProviderError as exc:
        result = "error" if exc.retryable else "failed"
        journal.store.finish_verification(attempt, result=result, error=str(exc))
        journal.log.warning("backup_verify_failed", backup=backup.backup_id, code=exc.code, error=exc.message)
        if exc.retryable:
            raise
        return journal.store.verification(attempt)
    result = "ok" if check.ok else "failed"
    journal.log.info(
        "backup_verified", backup=backup.backup_id, result=result, how=check.how, boot_s=check.boot_s
    )
    return journal.store.finish_verification(attempt, result=result, check=check, error=check.detail)


def _on_platform(deps: BackupDeps, backup: BackupRecord) -> BackupInfo | None:
    listed = require(deps.provider, Capability.BACKUP).list_backups(backup.vm, target=backup.target)
    return next((b for b in listed if b.id == backup.backup_id), None)


def _restore_and_probe(
    ops: BackupVerifyOps,
    journal: Journal,
    info: BackupInfo,
    owner: BackupOwnership,
    attempt: int,
    probes: Sequence[RestoreProbe],
    timeout: float,
    probe_timeout: float,
) -> RestoreCheck:
    target = str(info.vm)
    intent = BackupDetail(info.id, info.target, info.location, copy_id=owner.name(info.vm.name))
    journal.intent(Action.BACKUP_COPY_RESTORE, target, intent)
    try:
        copy = ops.restore_copy(info, ownership=owner, timeout=timeout)
    except ProviderError as exc:
        journal.failed(Action.BACKUP_COPY_RESTORE, target, exc, intent)
        raise
    journal.result(Action.BACKUP_COPY_RESTORE, target, replace(intent, copy_id=copy.id), ok=True)
    journal.store.set_copy(attempt, copy.id)
    try:
        check = ops.probe_copy(copy, probes, timeout=probe_timeout)
        verdicts = {p.name: p.ok for p in check.probes}
        probed = BackupDetail(info.id, copy_id=copy.id, how=check.how, boot_s=check.boot_s, probes=verdicts)
        journal.result(Action.BACKUP_PROBE, target, probed, ok=check.ok, error=check.detail)
        return check
    finally:
        _destroy(ops, journal, copy, timeout)


def _destroy(ops: BackupVerifyOps, journal: Journal, copy: RestoredCopy, timeout: float) -> None:
    """Journalled removal; a failure is recorded and logged, not raised (``sweep_copies`` retries it)."""
    detail = BackupDetail(copy.backup_id, copy_id=copy.id)
    journal.intent(Action.BACKUP_COPY_DESTROY, copy.name, detail)
    try:
        ops.destroy_copy(copy, timeout=timeout)
    except ProviderError as exc:
        journal.failed(Action.BACKUP_COPY_DESTROY, copy.name, exc, detail)
        journal.log.warning("backup_copy_left_behind", copy=copy.id, code=exc.code, error=exc.message)
        return
    journal.result(Action.BACKUP_COPY_DESTROY, copy.name, detail, ok=True)


def sweep_copies(
    deps: BackupDeps, *, run_id: str, step_id: str, min_age_s: float = 3600.0, timeout: float
) -> list[RestoredCopy]:
    """Destroy restored copies (ours by their marker) made more than ``min_age_s`` ago: what crashed
    verifications left. Younger copies may belong to a verification still running."""
    ops = require(deps.provider, Capability.BACKUP_VERIFY)
    journal = Journal(deps, run_id, step_id)
    cutoff = deps.clock.now() - timedelta(seconds=min_age_s)
    swept = []
    for copy in ops.list_restored_copies():
        owner = copy.ownership
        if owner is None or owner.role != "restore" or _created(owner.created_at) > cutoff:
            continue
        _destroy(ops, journal, copy, timeout)
        swept.append(copy)
    return swept


def _created(stamp: str) -> datetime:
    try:
        value = datetime.fromisoformat(stamp)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: old enough
    return value if value.tzinfo else value.replace(tzinfo=UTC)
