"""The values exchanged between the workflows and the activities (one dataclass in, one out).

Frozen dataclasses of plain types, like :mod:`orchestrator.model`, so the Temporal data
converter handles them without custom code. Nothing here may hold a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model import HostOutcome, HostStep, Plan, RunRequest, StepStatus, VmOutcome, VmStep
from providers.base import Inventory

CENTRAL_QUEUE = "patchwave"


def site_queue(site: str) -> str:
    """The task queue of a site's activities."""
    return f"patchwave-site-{site}"


# ------------------------------------------------------------------------------------------
# run level
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSetup:
    """What the worker knows about a run before it starts (or resumes) it."""

    sites: tuple[str, ...]
    plan: Plan | None = None  # the plan recorded for this run (a resumed execution reuses it)
    finished_vms: tuple[VmOutcome, ...] = ()  # final outcomes already recorded in the fact store
    finished_hosts: tuple[HostOutcome, ...] = ()


@dataclass(frozen=True)
class PlanInput:
    request: RunRequest
    inventories: tuple[Inventory, ...]
    now: str  # ISO UTC from workflow.now(): the plan's time is the workflow's time


@dataclass(frozen=True)
class RunStatusUpdate:
    run_id: str
    status: str  # "running" | "succeeded" | "halted" | "failed" | "paused" | "cancelled"
    reason: str = ""


@dataclass(frozen=True)
class WindowQuery:
    window: str
    now: str  # ISO UTC


@dataclass(frozen=True)
class WindowSlot:
    """The occurrence of a window open at ``now`` or the next one (ISO UTC)."""

    start: str
    end: str
    cutoff: str  # no new VM starts after this (end - the window's cutoff)


@dataclass(frozen=True)
class CleanupInput:
    site: str
    now: str  # ISO UTC; snapshots whose TTL ended before this are deleted
    run_id: str = ""  # restrict to one run ("" = every run's expired snapshots)
    include_unexpired: bool = False  # `snapshots cleanup --all`: also delete kept snapshots of run_id


@dataclass(frozen=True)
class CleanupResult:
    deleted: tuple[str, ...] = ()  # "vm/snapshot" that were deleted
    gone: tuple[str, ...] = ()  # already gone (marked deleted)
    refused: tuple[str, ...] = ()  # ownership did not match: left alone and marked leaked


# ------------------------------------------------------------------------------------------
# per VM
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmTask:
    run_id: str
    step: VmStep
    snapshot_expires_at: str  # ISO UTC: the run's snapshot is kept until then after success


@dataclass(frozen=True)
class VmOutcomeRecord:
    run_id: str
    outcome: VmOutcome


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    ok: bool
    detail: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    results: tuple[CheckResult, ...] = ()

    @property
    def failures(self) -> str:
        bad = [f"{r.name}: {r.detail}" for r in self.results if not r.ok]
        return "; ".join(bad)


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str
    reused: bool = False  # found an existing snapshot owned by this (run, step)


@dataclass(frozen=True)
class PatchResult:
    changed: tuple[str, ...] = ()  # "name old->new"
    reboot_required: bool = False
    nothing_to_do: bool = False
    already_applied: bool = False  # the fact store and the guest agree the patch was applied


@dataclass(frozen=True)
class RebootResult:
    rebooted: bool


@dataclass(frozen=True)
class RevertResult:
    snapshot_id: str


# ------------------------------------------------------------------------------------------
# per host
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostTask:
    run_id: str
    step: HostStep


@dataclass(frozen=True)
class HostOutcomeRecord:
    run_id: str
    outcome: HostOutcome


@dataclass(frozen=True)
class HostPatchResult:
    changed: bool = False
    reboot_required: bool = False
    build_before: str = ""
    build_after: str = ""
    detail: str = ""


# ------------------------------------------------------------------------------------------
# rollback of a finished run
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackRequest:
    run_id: str
    vm_names: tuple[str, ...] = ()  # empty = every VM of the run that has a recorded snapshot


@dataclass(frozen=True)
class RollbackTargets:
    tasks: tuple[VmTask, ...]


# ------------------------------------------------------------------------------------------
# the `progress` query
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmProgress:
    name: str
    site: str
    ring: str
    status: StepStatus
    note: str = ""


@dataclass(frozen=True)
class RunProgress:
    run_id: str
    phase: str  # setup | discover | plan | hosts | guests | soak | approval | cleanup | done
    ring: str = ""
    waiting_for: str = ""  # ring whose approval is awaited, or "" when not waiting
    soak_until: str = ""  # ISO UTC while soaking
    window_until: str = ""  # "window-name until ISO UTC" while waiting for a maintenance window
    hosts_done: int = 0
    hosts_total: int = 0
    vms: tuple[VmProgress, ...] = ()
    failed: int = 0
    failure_budget: int = 0
    halted_reason: str = ""
    blocked: tuple[str, ...] = ()  # "site/name: reason (code)" for targets the plan could not include

    def count(self, status: StepStatus) -> int:
        return sum(1 for v in self.vms if v.status is status)
