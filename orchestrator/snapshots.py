"""Run snapshots on the platform, checked against their ownership before anything touches them.

A snapshot is a run's only when its description's ownership names the run and step
(:meth:`providers.base.SnapshotInfo.owned_by`), never by its name. Every path that deletes or
reverts a run snapshot goes through here:

* :func:`due` + :func:`clean_up` — the ``cleanup_expired_snapshots`` activity and
  ``patchwave snapshots cleanup`` (:func:`orchestrator.operations.cleanup`);
* :func:`remove` — one snapshot: list -> check ownership -> delete -> mark the fact store (also
  the doctor's orphan-snapshot fix, :mod:`orchestrator.reconcile`);
* :func:`owned` — the check before a revert (the ``vm_revert`` activity);
* :func:`in_use` / :func:`not_in_use` — a snapshot whose run is not finished (or whose run still
  holds the VM's lease) is that run's rollback point: nobody deletes it — not the cleanup of
  another run, not ``snapshots cleanup``, not the doctor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.facts.leases import LeaseTarget
from orchestrator.facts.records import SnapshotRecord, utc
from orchestrator.facts.runs import FINISHED_STATUSES
from orchestrator.facts.store import FactStore
from orchestrator.model import CleanupResult
from providers.base import SnapshotInfo, VmRef
from providers.capabilities import SnapshotOps
from providers.errors import NotFound, ProviderError


class Removal(enum.StrEnum):
    DELETED = "deleted"  # ours: deleted now (or it vanished meanwhile); marked deleted
    GONE = "gone"  # not on the platform any more (or its VM is gone); marked deleted
    REFUSED = "refused"  # on the platform, but its ownership names someone else; marked leaked
    KEPT = "kept"  # ours, but the caller's ``keep`` said it must stay; nothing changed


def find(provider: SnapshotOps, vm: VmRef, snapshot_id: str) -> SnapshotInfo | None:
    """The VM's snapshot with platform id ``snapshot_id``; None when it (or the VM) is gone."""
    try:
        listed = provider.list_snapshots(vm)
    except NotFound:
        return None
    return next((s for s in listed if s.id == snapshot_id), None)


def owned(
    provider: SnapshotOps, vm: VmRef, snapshot_id: str, run_id: str, step_id: str
) -> SnapshotInfo | None:
    """The snapshot when it exists and is owned by (run, step); None when gone or not provably ours."""
    found = find(provider, vm, snapshot_id)
    return found if found is not None and found.owned_by(run_id, step_id) else None


def remove(
    facts: FactStore,
    provider: SnapshotOps,
    vm: VmRef,
    snapshot_id: str,
    *,
    run_id: str,
    step_id: str,
    keep: Callable[[SnapshotInfo], bool] | None = None,
) -> Removal:
    """Delete ``snapshot_id`` of ``vm`` only if it is owned by (run, step) (and ``keep`` does not
    object), and mark the fact store's record of (run, step) when it names this snapshot.
    Idempotent: a snapshot already gone is success."""
    found = find(provider, vm, snapshot_id)
    if found is None:
        _mark(facts, run_id, step_id, snapshot_id, "deleted")
        return Removal.GONE
    if not found.owned_by(run_id, step_id):
        _mark(facts, run_id, step_id, snapshot_id, "leaked")
        return Removal.REFUSED
    if keep is not None and keep(found):
        return Removal.KEPT
    try:
        provider.delete_snapshot(vm, snapshot_id)
    except NotFound:
        pass  # deleted meanwhile: the goal is reached
    _mark(facts, run_id, step_id, snapshot_id, "deleted")
    return Removal.DELETED


def _mark(facts: FactStore, run_id: str, step_id: str, snapshot_id: str, state: str) -> None:
    """Mark (run, step)'s record; "deleted" also when its id was never recorded (a create cut short)."""
    record = facts.snapshot(run_id, step_id)
    if record is None:
        return
    if record.snapshot_id == snapshot_id or (state == "deleted" and not record.snapshot_id):
        facts.mark_snapshot(run_id, step_id, state)


def in_use(facts: FactStore, run_id: str, vm: VmRef, *, caller: str = "") -> str:
    """Why run ``run_id``'s snapshot of ``vm`` must stay now ("" = it may go): the run is not
    finished, or it holds the VM's lease. ``caller``: the run asking about its own snapshots at
    its end (its VMs are done)."""
    if run_id == caller:
        return ""
    run = facts.get_run(run_id)
    if run is not None and run.status not in FINISHED_STATUSES:
        return f"run {run_id} is {run.status}"
    if any(lease.owner == run_id for lease in facts.leases_on([LeaseTarget.vm(vm)])):
        return f"run {run_id} still holds {vm.name}"
    return ""


def not_in_use(
    facts: FactStore, records: list[SnapshotRecord], *, caller: str = ""
) -> tuple[list[SnapshotRecord], list[str]]:
    """``records`` split into those that may be deleted and "vm/snapshot: why" for the others."""
    free, kept = [], []
    for rec in records:
        why = in_use(facts, rec.run_id, rec.vm, caller=caller)
        if why:
            kept.append(f"{rec.vm.name}/{rec.snapshot_id}: {why}")
        else:
            free.append(rec)
    return free, kept


def due(
    facts: FactStore, site: str, now: datetime, *, run_id: str = "", include_unexpired: bool = False
) -> list[SnapshotRecord]:
    """The recorded snapshots of ``site`` to clean up at ``now``: expired ones (kept, created, or
    reverted — a rolled-back VM's snapshot expires like a kept one), of ``run_id`` only when given;
    with ``include_unexpired``, every one of ``run_id`` still on the platform."""
    if include_unexpired:
        records = [r for r in facts.snapshots(run_id=run_id) if r.state in ("created", "kept", "reverted")]
    else:
        reverted = [r for r in facts.snapshots(state="reverted") if r.expires_at]
        records = facts.expired_snapshots(now) + [r for r in reverted if utc(r.expires_at) <= utc(now)]
    return [r for r in records if r.vm.site == site and r.snapshot_id and (not run_id or r.run_id == run_id)]


def clean_up(
    facts: FactStore,
    provider: SnapshotOps,
    records: list[SnapshotRecord],
    *,
    log: Any,
    progress: Callable[[str], None] = lambda label: None,
) -> CleanupResult:
    """:func:`remove` each record's snapshot. A failed delete is logged and left for the next
    cleanup; a transient one is raised (the caller may retry the whole, which is idempotent)."""
    done: dict[Removal, list[str]] = {removal: [] for removal in Removal}
    for rec in records:
        label = f"{rec.vm.name}/{rec.snapshot_id}"
        progress(f"cleaning {label}")
        try:
            removal = remove(facts, provider, rec.vm, rec.snapshot_id, run_id=rec.run_id, step_id=rec.step_id)
        except ProviderError as exc:
            log.warning("snapshot_delete_failed", vm=str(rec.vm), snapshot=rec.snapshot_id, error=str(exc))
            if exc.retryable:
                raise
            continue
        done[removal].append(label)
    result = CleanupResult(
        tuple(done[Removal.DELETED]), tuple(done[Removal.GONE]), tuple(done[Removal.REFUSED])
    )
    log.info(
        "snapshots_cleaned", deleted=len(result.deleted), gone=len(result.gone), refused=len(result.refused)
    )
    return result
