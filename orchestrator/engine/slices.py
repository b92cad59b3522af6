"""The bounded shape of a run: what the workflows carry instead of inventories, plans and outcomes.

No payload and no history may grow with the fleet (Temporal refuses payloads over 2 MB and histories
over 51,200 events / 50 MB). So:

* ``discover`` records the site's inventory in the fact store and returns an :class:`InventoryRef`;
  ``plan_run`` plans from the recorded inventories, records the plan in bounded rows and returns a
  :class:`PlanSummary` (ids and counts).
* ``PatchRun`` reads the waves a page at a time (``plan_waves``), cuts each wave into batches of at
  most :attr:`RunLimits.batch_size` VMs and runs each batch as a ``WaveBatch`` child workflow
  (:class:`BatchTask` in, :class:`BatchResult` out), which reads its own slice (``wave_batch``:
  :class:`BatchSlice`) and runs one ``VmPatch`` child per VM. Hosts go the same way
  (``HostBatch``, ``host_batch``), and so does the ring health gate (``HealthBatch``).
* ``PatchRun`` continues as new (:class:`RunCarry`) once its own history passes
  :attr:`RunLimits.continue_after_events`.

The limits come from the worker (``run_setup``) and are then part of the run's history, so a
worker restarted with other limits replays the run as it was. Frozen dataclasses of plain types,
like :mod:`orchestrator.engine.payloads`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from orchestrator.engine.payloads import NotifySetup
from orchestrator.model import HostOutcome, HostStep, RunRequest, VmStep, WaveInfo, WindowFit


def _knob(name: str, default: int) -> int:
    return int(os.environ.get(name, "") or default)


#: VMs per ``WaveBatch`` (and per ``HealthBatch``): the ceiling of a batch's slice and history.
BATCH_SIZE = _knob("PATCHWAVE_BATCH_SIZE", 500)
#: Hosts per ``HostBatch`` (hosts are patched one at a time; a host takes ~20 events).
HOST_BATCH_SIZE = _knob("PATCHWAVE_HOST_BATCH_SIZE", 100)
#: ``PatchRun`` continues as new after this many events of its own history (test knob).
CONTINUE_AFTER_EVENTS = _knob("PATCHWAVE_CONTINUE_AFTER_EVENTS", 4000)
#: Waves read per ``plan_waves`` call.
WAVE_PAGE = 100
#: How many names / reasons a payload lists at most (the rest are counted).
SAMPLE = 20


@dataclass(frozen=True)
class RunLimits:
    batch_size: int = 500
    host_batch_size: int = 100
    continue_after_events: int = 4000


def current_limits() -> RunLimits:
    """This worker's limits (what ``run_setup`` hands a new run)."""
    return RunLimits(BATCH_SIZE, HOST_BATCH_SIZE, CONTINUE_AFTER_EVENTS)


# ------------------------------------------------------------------------------------------
# discovery and planning
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoverInput:
    site: str
    run_id: str = ""  # pins the recorded inventory until the run has planned


@dataclass(frozen=True)
class InventoryRef:
    """A site's inventory as recorded in the fact store (``InventoryStore.load(snapshot_id)``)."""

    site: str
    snapshot_id: int
    hosts: int
    vms: int


@dataclass(frozen=True)
class RunSetup:
    """What the worker knows about a run before it starts (or resumes) it."""

    sites: tuple[str, ...]
    plan: PlanSummary | None = None  # the plan recorded for this run (a resumed execution reuses it)
    limits: RunLimits = field(default_factory=RunLimits)
    count_rolled_back: bool = True  # [policy] count_rolled_back: ROLLED_BACK counts against the budget
    forced: tuple[str, ...] = ()  # rings an operator forced past their gate (`approve --ring X --force`)


@dataclass(frozen=True)
class PlanInput:
    request: RunRequest
    inventories: tuple[InventoryRef, ...]
    now: str  # ISO UTC from workflow.now(): the plan's time is the workflow's time


@dataclass(frozen=True)
class PlanSummary:
    """A recorded plan, in numbers: what ``PatchRun`` needs to walk it in slices."""

    plan_id: str
    sites: tuple[str, ...]
    vms: int
    hosts: int
    waves: int
    failure_budget: int
    blocked: int
    blocked_sample: tuple[str, ...] = ()  # the first SAMPLE "site/name: reason (code)"
    window: WindowFit = field(default_factory=lambda: WindowFit(window=""))
    est_s: int = 0  # the planner's learned estimate of the work: host phase + waves + soaks (no window waits)


@dataclass(frozen=True)
class PlanPage:
    """``plan_waves`` / ``host_batch``: ``limit`` entries from ``offset`` of the run's plan."""

    run_id: str
    offset: int
    limit: int


@dataclass(frozen=True)
class WavePage:
    waves: tuple[WaveInfo, ...]


@dataclass(frozen=True)
class BatchQuery:
    """``wave_batch``: ``limit`` VM steps from ``offset`` of the wave at ``wave`` (its position)."""

    run_id: str
    wave: int
    offset: int
    limit: int


@dataclass(frozen=True)
class BatchSlice:
    steps: tuple[VmStep, ...]
    statuses: tuple[str, ...]  # per step: the status of its latest recorded outcome ("" = none)


@dataclass(frozen=True)
class HostSlice:
    steps: tuple[HostStep, ...]
    finished: tuple[HostOutcome, ...]  # the final outcomes some of them have already (a resumed run)


# ------------------------------------------------------------------------------------------
# child workflows
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchTask:
    """One ``WaveBatch``: VMs ``offset`` .. ``offset + limit - 1`` of ``wave``."""

    run_id: str
    wave: WaveInfo
    offset: int
    limit: int
    budget: int  # the run's failure budget
    failed_before: int  # VMs that FAILED earlier in this execution of the run (count against it)
    failed_names: tuple[str, ...] = ()  # a sample of their names, for the halt reason
    notify: NotifySetup = field(default_factory=lambda: NotifySetup(False, 0))
    count_rolled_back: bool = False  # ROLLED_BACK counts against the budget (False: a task of before it)


@dataclass(frozen=True)
class BatchResult:
    counts: dict[str, int]  # status -> VMs of the batch that concluded so (earlier executions' too)
    failed: int  # FAILED (and, with count_rolled_back, ROLLED_BACK) in this execution: against the budget
    failed_names: tuple[str, ...] = ()  # a sample
    halted: str = ""  # why the run must halt ("" = it may go on)


@dataclass(frozen=True)
class HostBatchTask:
    run_id: str
    offset: int
    limit: int
    notify: NotifySetup = field(default_factory=lambda: NotifySetup(False, 0))  # for the window pre-notice


@dataclass(frozen=True)
class HostBatchResult:
    done: int  # hosts with an outcome (failed included)
    failed: int
    halted: str = ""


@dataclass(frozen=True)
class HealthBatchTask:
    """``HealthBatch``: health of the SUCCEEDED VMs among ``offset`` .. of ``wave`` (the ring gate)."""

    run_id: str
    wave: WaveInfo
    offset: int
    limit: int


@dataclass(frozen=True)
class HealthBatchResult:
    checked: int
    sick: int
    sick_sample: tuple[str, ...] = ()  # "name: failures"
    failed: int = 0  # VMs of the slice whose recorded outcome is FAILED
    rolled_back: int = 0  # ... ROLLED_BACK
    bad_sample: tuple[str, ...] = ()  # "name (failed)" / "name (rolled back)"


@dataclass(frozen=True)
class SkipRecord:
    """``record_skips``: VMs a batch did not attempt, with why (one call per batch)."""

    run_id: str
    skipped: tuple[tuple[str, str], ...]  # (step id, reason)


@dataclass(frozen=True)
class FinishInput:
    run_id: str
    status: str  # "succeeded" | "failed" | "halted"
    halted_reason: str = ""
    skip_reason: str = ""  # recorded as SKIPPED for every planned VM without an outcome
    refused_ring: str = ""  # the ring whose gate refused promotion (recorded in ring_gates)


# ------------------------------------------------------------------------------------------
# continue-as-new
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCarry:
    """What a ``PatchRun`` hands to its next execution (continue-as-new) in the guest phase: the
    next batch to start is (``wave``, ``offset``); everything before it is done."""

    plan: PlanSummary
    limits: RunLimits
    notify: NotifySetup
    wave: int
    offset: int
    counts: dict[str, int]
    failed: int
    failed_names: tuple[str, ...]
    hosts_done: int
    hosts_failed: int = 0
    ring: str = ""  # the ring of the wave before (wave, offset)
    ring_start: int = 0  # position of that ring's first wave (the ring gate checks from there)
    approved: tuple[str, ...] = ()
    approve_next: bool = False  # unused: approvals are no longer taken ahead of their gate
    executions: int = 1  # this is the n-th execution of the run's chain
    count_rolled_back: bool = True
    forced: tuple[str, ...] = ()  # rings forced past their gate (RunSetup.forced)
    gated: str = ""  # the last ring whose gate passed
