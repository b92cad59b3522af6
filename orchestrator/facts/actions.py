"""The step journal's vocabulary: every :class:`Action`, and which detail its records carry.

Activities journal an *intent* before a side effect and a *result* after it (:mod:`.journal`).
Each action says which detail type (:mod:`.details`) its intents and its results carry
(:meth:`Action.detail_type`); the store refuses any other, and reading a record gives the typed
detail back (:func:`read_detail`).

Stored form: JSON objects with the keys patchwave has always written, so older fact stores still
read. Step records carry :data:`JOURNAL_VERSION`:

* 1 — package changes as ``"name old->new"`` text, health checks as ``{name, ok, detail}``;
* 2 — package changes as ``{name, old, new}``, health checks with ``kind`` and ``attempts`` too,
  a notice's key as ``notice`` (version 1 lost it, see :class:`~.details.NotifyDetail`).

The readers accept both shapes whatever the version says.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from orchestrator.facts.details import (
    Abandoned,
    AutoUpdatePauseDetail,
    BackupDetail,
    Detail,
    DoctorDetail,
    HealthDetail,
    HostAssessDetail,
    HostPatchDetail,
    HostPatchIntent,
    HostRebootDetail,
    NotifyDetail,
    PatchDetail,
    PatchIntent,
    RebootDetail,
    ServicesDetail,
    SnapshotDetail,
    SnapshotIntent,
)

JOURNAL_VERSION = 2


class Phase(enum.StrEnum):
    INTENT = "intent"  # recorded before the side effect
    RESULT = "result"  # recorded after it (ok or not)


class Action(enum.StrEnum):
    """What a step record is about (the ``action`` column)."""

    # a VM's patch (VmPatch, VmRollback)
    BASELINE_HEALTH = "baseline_health"
    SNAPSHOT = "snapshot"
    PATCH = "patch"
    REBOOT = "reboot"
    RESTART_SERVICES = "restart_services"  # [policy] restart_services = "needrestart"
    VERIFY_HEALTH = "verify_health"
    REVERT = "revert"
    RELEASE_SNAPSHOT = "release_snapshot"  # a VM prepared ahead, then not patched: its snapshot deleted
    # a hypervisor host
    HOST_PATCH = "host_patch"
    HOST_ASSESS = "host_assess"  # a report-only host's pending updates
    HOST_REBOOT = "host_reboot"
    # notification deliveries (step "notify"), one per event of orchestrator.config.events
    NOTIFY_PLAN_PUBLISHED = "notify_plan_published"
    NOTIFY_WINDOW_PRENOTICE = "notify_window_prenotice"
    NOTIFY_RUN_STARTED = "notify_run_started"
    NOTIFY_VM_ROLLED_BACK = "notify_vm_rolled_back"
    NOTIFY_RUN_FINISHED = "notify_run_finished"
    NOTIFY_RUN_HALTED = "notify_run_halted"
    NOTIFY_VULN_FOUND = "notify_vuln_found"
    # `patchwave doctor --fix` (step "doctor"), one per kind of finding
    DOCTOR_ORPHAN_SNAPSHOT = "doctor_orphan_snapshot"
    DOCTOR_MAINTENANCE_LEFTOVER = "doctor_maintenance_leftover"
    DOCTOR_STALE_MAINTENANCE = "doctor_stale_maintenance"
    DOCTOR_STALE_INTENT = "doctor_stale_intent"
    # backups verified by restore (orchestrator.backups)
    BACKUP_CREATE = "backup_create"
    BACKUP_DELETE = "backup_delete"
    BACKUP_COPY_RESTORE = "backup_copy_restore"
    BACKUP_COPY_DESTROY = "backup_copy_destroy"
    BACKUP_PROBE = "backup_probe"  # result only: probing a copy changes nothing
    DOCTOR_EXPIRED_LEASE = "doctor_expired_lease"
    DOCTOR_PAUSED_UPDATER = "doctor_paused_updater"
    # the guest's automatic updater, paused around its patch (engine/activities/autoupdates.py)
    AUTOUPDATES_PAUSE = "autoupdates_pause"
    AUTOUPDATES_RESTORE = "autoupdates_restore"

    @classmethod
    def notify(cls, event: str) -> Action:
        """The delivery action of a notification event (ValueError for an unknown event)."""
        return cls(f"notify_{event}")

    @classmethod
    def doctor(cls, kind: str) -> Action:
        """The fix action of a doctor finding kind (ValueError for an unknown kind)."""
        return cls(f"doctor_{kind}")

    def detail_type(self, phase: Phase) -> type[Detail] | None:
        """The detail type of this action's records of ``phase``; None: no such records."""
        intent, result = _DETAILS[self]
        return intent if phase is Phase.INTENT else result


#: action -> (intent detail type, result detail type); None = the action records no such phase.
_DETAILS: dict[Action, tuple[type[Detail] | None, type[Detail] | None]] = {
    Action.BASELINE_HEALTH: (None, HealthDetail),
    Action.SNAPSHOT: (SnapshotIntent, SnapshotDetail),
    Action.PATCH: (PatchIntent, PatchDetail),
    Action.REBOOT: (RebootDetail, RebootDetail),
    Action.RESTART_SERVICES: (ServicesDetail, ServicesDetail),
    Action.VERIFY_HEALTH: (None, HealthDetail),
    Action.REVERT: (SnapshotDetail, SnapshotDetail),
    Action.RELEASE_SNAPSHOT: (SnapshotDetail, SnapshotDetail),
    Action.HOST_PATCH: (HostPatchIntent, HostPatchDetail),
    Action.HOST_ASSESS: (None, HostAssessDetail),
    Action.HOST_REBOOT: (HostRebootDetail, HostRebootDetail),
    **{action: (None, NotifyDetail) for action in Action if action.startswith("notify_")},
    **{action: (DoctorDetail, DoctorDetail) for action in Action if action.startswith("doctor_")},
    **{action: (BackupDetail, BackupDetail) for action in Action if action.startswith("backup_")},
    Action.BACKUP_PROBE: (None, BackupDetail),
    Action.AUTOUPDATES_PAUSE: (AutoUpdatePauseDetail, AutoUpdatePauseDetail),
    Action.AUTOUPDATES_RESTORE: (AutoUpdatePauseDetail, AutoUpdatePauseDetail),
}


def check_detail(action: Action, phase: Phase, detail: Detail) -> None:
    """Refuse (TypeError) a detail that is not the one ``action`` records for ``phase``."""
    expected = action.detail_type(phase)
    if expected is None:
        raise TypeError(f"{action.value} records no {phase.value}")
    abandoned = isinstance(detail, Abandoned) and phase is Phase.RESULT
    if not isinstance(detail, expected) and not (abandoned and action.detail_type(Phase.INTENT) is not None):
        raise TypeError(
            f"a {action.value} {phase.value} takes {expected.__name__}, not {type(detail).__name__}"
        )


def read_detail(action: Action, phase: Phase, data: Mapping[str, Any]) -> Detail:
    """The typed detail of a stored record (any journal version)."""
    if phase is Phase.RESULT and data.get("abandoned") is True:
        return Abandoned()
    kind = action.detail_type(phase)
    if kind is None:
        raise ValueError(f"{action.value} records no {phase.value}")
    return kind.from_json(data)
