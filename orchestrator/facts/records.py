"""The fact store's records (frozen values read back from the database) and the row conversions.

:func:`scrub` is applied to everything the store writes: no secret-looking key or
:class:`~providers.settings.Secret` value is ever stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import FactStoreError
from orchestrator.facts.actions import Action, Phase, read_detail
from orchestrator.facts.details import Detail
from orchestrator.model import HostOutcome, StepStatus, VmOutcome
from orchestrator.secrets import is_secret_key
from providers.base import HostRef, VmRef
from providers.settings import Secret


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    plan_id: str
    config_digest: str
    requested_by: str
    status: str
    reason: str
    created_at: str
    updated_at: str
    #: The plan's header as JSON (:func:`orchestrator.facts.plans.plan_header`; a whole plan in runs
    #: recorded before migration 7). ``FactStore.run_plan(run_id)`` assembles the whole plan.
    plan_json: str


@dataclass(frozen=True)
class RunEvent:
    """One status change of a run (``run_events``): planned, running, paused, succeeded, ..."""

    run_id: str
    status: str
    reason: str
    recorded_at: str


@dataclass(frozen=True)
class StepRecord:
    """One journal record: an intent (before a side effect) or a result (after it)."""

    id: int
    run_id: str
    step_id: str
    action: Action
    phase: Phase
    target: str
    ok: bool | None  # None for intents
    detail: Detail  # the type the action records for the phase (Action.detail_type), or Abandoned
    error: str
    recorded_at: str
    schema_version: int  # the journal version it was written with (details.JOURNAL_VERSION)


@dataclass(frozen=True)
class SnapshotRecord:
    run_id: str
    step_id: str
    vm: VmRef
    name: str
    snapshot_id: str  # "" until the create call returned
    state: str  # intent | created | reverted | deleted | kept | leaked
    created_at: str
    expires_at: str
    updated_at: str


@dataclass(frozen=True)
class MaintenanceRecord:
    run_id: str
    host: HostRef
    state: str  # entering | in | exited
    recorded_at: str


#: Buckets of pending updates: security updates by severity, "unrated" security updates (apt reports
#: no severity), and "other" (bug fixes, enhancements).
SEVERITIES = ("critical", "important", "moderate", "low", "unrated", "other")
_SEVERITY_WORDS = {"critical": "critical", "urgent": "critical", "important": "important", "high": "important",
                   "moderate": "moderate", "medium": "moderate", "low": "low"}  # fmt: skip


def severity_bucket(security: bool, severity: str) -> str:
    """The report bucket of one pending update (see :data:`SEVERITIES`)."""
    if not security:
        return "other"
    return _SEVERITY_WORDS.get(severity.strip().lower(), "unrated")


@dataclass(frozen=True)
class AssessmentRecord:
    """What a guest had pending at ``taken_at`` (``phase``: "before" or "after" patching)."""

    run_id: str
    step_id: str
    vm: VmRef
    phase: str
    taken_at: str
    os: str  # pretty name, else id + version
    kernel: str
    pending: int
    security: int
    cves: int  # distinct CVE ids across the pending updates
    severities: Mapping[str, int]  # every bucket of SEVERITIES, 0 when none
    reboot_required: bool
    packages: tuple[
        Mapping[str, Any], ...
    ] = ()  # name, current, candidate, security, severity, cves (capped)
    restart_needed: tuple[str, ...] = ()  # services running replaced libraries ("kernel": a newer kernel)


def scrub(value: Any) -> Any:
    """A JSON-safe copy of ``value`` without secret-looking keys or :class:`Secret` values."""
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, Mapping):
        return {
            str(k): scrub(v)
            for k, v in value.items()
            if not is_secret_key(str(k)) and not isinstance(v, Secret)
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [scrub(v) for v in items]
    if hasattr(value, "__dataclass_fields__"):
        return scrub(asdict(value))
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def to_json(value: Any) -> str:
    """Canonical JSON of the scrubbed value (what the store writes)."""
    return json.dumps(scrub(value), sort_keys=True, separators=(",", ":"))


def run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], plan_id=row["plan_id"], config_digest=row["config_digest"],
        requested_by=row["requested_by"], status=row["status"], reason=row["reason"],
        created_at=row["created_at"], updated_at=row["updated_at"], plan_json=row["plan_json"],
    )  # fmt: skip


def step_from_row(row: sqlite3.Row) -> StepRecord:
    try:
        action, phase = Action(row["action"]), Phase(row["phase"])
        detail = read_detail(action, phase, json.loads(row["detail"]))
    except (ValueError, TypeError, AttributeError) as exc:
        raise FactStoreError(
            f"step record {row['id']} ({row['action']} {row['phase']} of {row['step_id']}) cannot be read: {exc}",
            step=row["step_id"],
            fix="a newer patchwave wrote it: upgrade patchwave",
        ) from None
    return StepRecord(
        id=row["id"], run_id=row["run_id"], step_id=row["step_id"], action=action, phase=phase,
        target=row["target"], ok=None if row["ok"] is None else bool(row["ok"]), detail=detail,
        error=row["error"], recorded_at=row["recorded_at"], schema_version=row["schema_version"],
    )  # fmt: skip


def snapshot_from_row(row: sqlite3.Row) -> SnapshotRecord:
    return SnapshotRecord(
        run_id=row["run_id"], step_id=row["step_id"], vm=VmRef(row["vm_site"], row["vm_id"], row["vm_name"]),
        name=row["name"], snapshot_id=row["snapshot_id"], state=row["state"], created_at=row["created_at"],
        expires_at=row["expires_at"], updated_at=row["updated_at"],
    )  # fmt: skip


def maintenance_from_row(row: sqlite3.Row) -> MaintenanceRecord:
    host = HostRef(row["host_site"], row["host_id"], row["host_name"])
    return MaintenanceRecord(
        run_id=row["run_id"], host=host, state=row["state"], recorded_at=row["recorded_at"]
    )


def assessment_from_row(row: sqlite3.Row) -> AssessmentRecord:
    return AssessmentRecord(
        run_id=row["run_id"], step_id=row["step_id"], vm=VmRef(row["vm_site"], row["vm_id"], row["vm_name"]),
        phase=row["phase"], taken_at=row["taken_at"], os=row["os"], kernel=row["kernel"], pending=row["pending"],
        security=row["security"], cves=row["cves"], severities=json.loads(row["severities"]),
        reboot_required=bool(row["reboot_required"]), packages=tuple(json.loads(row["packages"])),
        restart_needed=_restart_needed(row),
    )  # fmt: skip


def _restart_needed(row: sqlite3.Row) -> tuple[str, ...]:
    """The ``restart_needed`` column (migration 11); a read-only older file (the dry run) has none."""
    columns = row.keys()  # sqlite3.Row: ``in`` tests the values, not the column names
    return tuple(json.loads(row["restart_needed"])) if "restart_needed" in columns else ()


def outcome_from_json(kind: str, data: dict[str, Any]) -> VmOutcome | HostOutcome:
    status = StepStatus(data.pop("status"))
    if kind == "vm":
        return VmOutcome(vm=VmRef(**data.pop("vm")), status=status, **data)
    return HostOutcome(host=HostRef(**data.pop("host")), status=status, **data)


def utc(moment: str | datetime) -> datetime:
    """An aware UTC datetime; naive values are taken as UTC."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def duration_s(outcome: VmOutcome | HostOutcome) -> float | None:
    started = getattr(outcome, "started_at", "")
    finished = getattr(outcome, "finished_at", "")
    if not started or not finished:
        return None
    try:
        return max(0.0, (utc(finished) - utc(started)).total_seconds())
    except ValueError:
        return None
