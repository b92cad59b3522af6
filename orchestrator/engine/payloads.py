"""The values exchanged between the workflows and the activities (one dataclass in, one out).

Frozen dataclasses of plain types, like :mod:`orchestrator.model`, so the Temporal data
converter handles them without custom code. Nothing here may hold a secret. Values defined below
the engine cross as they are: ``cleanup_expired_snapshots`` returns :class:`orchestrator.model.CleanupResult`,
``host_patch`` the provider's :class:`providers.base.HostPatchResult`.

Every value a workflow and an activity exchange is here, in three parts:

* **the run's steps** — queues, VM and host tasks and results, the ``progress`` query;
* **bounded runs** (below the first rule) — what the workflows carry instead of inventories, plans
  and outcomes. No payload and no history may grow with the fleet (Temporal refuses payloads over
  2 MB and histories over 51,200 events / 50 MB). So ``discover`` records the site's inventory in the
  fact store and returns an :class:`InventoryRef`; ``plan_run`` plans from the recorded inventories,
  records the plan in bounded rows and returns a :class:`PlanSummary` (ids and counts); ``PatchRun``
  reads the waves a page at a time (``plan_waves``), cuts each wave into batches of at most
  :attr:`RunLimits.batch_size` VMs and runs each batch as a ``WaveBatch`` child workflow
  (:class:`BatchTask` in, :class:`BatchResult` out), which reads its own slice (``wave_batch``:
  :class:`BatchSlice`) and runs one ``VmPatch`` child per VM; hosts go the same way (``HostBatch``,
  ``host_batch``), and so does the ring health gate (``HealthBatch``); ``PatchRun`` continues as new
  (:class:`RunCarry`) once its own history passes :attr:`RunLimits.continue_after_events`. The limits
  come from the worker (``run_setup``) and are then part of the run's history, so a worker restarted
  with other limits replays the run as it was;
* **fleet assessment** (below the second rule) — ``AssessFleet`` and its activities. Every value is
  of constant size: the workflow names a round, a site and positions, and gets counts back; VM lists
  stay in the fact store (``vuln_round_targets``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from orchestrator.model import (
    HostOutcome,
    HostStep,
    PackageChange,
    RunRequest,
    RunSummary,
    StepStatus,
    VmOutcome,
    VmStep,
    WaveInfo,
    WindowFit,
)

CENTRAL_QUEUE = "patchwave"


def site_queue(site: str) -> str:
    """The task queue of a site's activities."""
    return f"patchwave-site-{site}"


# ------------------------------------------------------------------------------------------
# run level
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatusUpdate:
    run_id: str
    status: str  # "running" | "succeeded" | "halted" | "failed" | "paused" | "cancelled"
    reason: str = ""


@dataclass(frozen=True)
class LeaseRenewal:
    """``renew_leases``: how many leases the owner holds, and when to renew them next."""

    held: int
    next_s: float


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


# ------------------------------------------------------------------------------------------
# per VM
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmTask:
    run_id: str
    step: VmStep
    snapshot_expires_at: str  # ISO UTC: the run's snapshot is kept until then after success
    #: VmPatch assesses the VM after its outcome (False: the wave batch does it after freeing the
    #: VM's concurrency slot — histories from before that change keep the default)
    assess: bool = True


@dataclass(frozen=True)
class BackupResult:
    """VM_BACKUP: the platform's id and location of the backup taken before the snapshot, and the
    backups retention deleted after it."""

    backup_id: str
    location: str = ""
    pruned: int = 0


@dataclass(frozen=True)
class UpdaterPause:
    """VM_PAUSE_AUTOUPDATES / VM_RESTORE_AUTOUPDATES: what happened to the guest's automatic updater
    (pause: new | kept | adopted; restore: restored | nothing)."""

    state: str
    units: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackupVerifyRound:
    """BACKUP_VERIFY_ROUND: how many backups a restore-test round verified, and how many failed."""

    verified: int = 0
    failed: int = 0


@dataclass(frozen=True)
class VmOutcomeRecord:
    run_id: str
    outcome: VmOutcome


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str


@dataclass(frozen=True)
class PatchResult:
    changes: tuple[PackageChange, ...] = ()
    reboot_required: bool = False
    nothing_to_do: bool = False
    restart_needed: tuple[str, ...] = ()  # services running replaced libraries ("kernel": a newer kernel)
    kernel_pending: bool = False  # only a reboot finishes this patch (a kernel changed or is pending)


@dataclass(frozen=True)
class ServicesResult:
    """``vm_restart_services``: what was restarted and what is still stale (kept running by the tool)."""

    restarted: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()


@dataclass(frozen=True)
class RebootResult:
    rebooted: bool


@dataclass(frozen=True)
class RevertResult:
    snapshot_id: str


@dataclass(frozen=True)
class SnapshotRelease:
    """``vm_release_snapshot``: the untouched VM's snapshots of (run, step) deleted (or already gone)."""

    snapshot_ids: tuple[str, ...] = ()


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
class HostBuild:
    """``host_verify``: the host is connected (or in maintenance) and reports this build."""

    build: str


@dataclass(frozen=True)
class HostPreflight:
    """``host_preflight``: may the host be touched? ``reason`` names the precondition that failed."""

    ok: bool
    reason: str = ""


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
    """A VM in flight. ``stage``/``since`` come from its ``VmPatch``'s ``stage`` query (filled in by
    :func:`orchestrator.engine.runs.progress`, "" when it could not answer)."""

    name: str
    site: str
    ring: str
    status: StepStatus
    note: str = ""
    step_id: str = ""
    channel: str = ""  # agent | ssh | local
    started: str = ""  # ISO UTC: its VmPatch started
    est_s: int = 0  # the planner's learned estimate for this VM
    stage: str = ""  # snapshot | backup | patch | services | reboot | verify | revert | ...
    since: str = ""  # ISO UTC: entered that stage


@dataclass(frozen=True)
class VmStage:
    """``VmPatch``'s ``stage`` query: where the VM is, since when."""

    stage: str
    since: str = ""


@dataclass(frozen=True)
class ApprovalRequest:
    """The ``approve`` update of ``PatchRun``: let the run promote past ``ring``'s gate ("" = the ring
    whose gate is open now). ``force`` accepts it although the ring is unhealthy now; ``by`` is who
    approved (the OS user), for the record."""

    ring: str = ""
    force: bool = False
    by: str = ""


@dataclass(frozen=True)
class ApprovalResult:
    """What the ``approve`` update answers once its validator admitted it: ``accepted``, or why not
    (the ring turned unhealthy while its gate was open: the run halts)."""

    ring: str
    accepted: bool
    reason: str = ""  # why it was refused; for a forced one: the refusal it overrode


@dataclass(frozen=True)
class RunProgress:
    """The ``progress`` query: counters for the whole run and the VMs in flight (bounded by the
    waves' concurrency), never every VM. ``PatchRun`` answers with its own counters and the ids of
    its running batches; :func:`orchestrator.engine.runs.progress` asks those for their VMs and
    counters and merges them (:meth:`merged`)."""

    run_id: str
    phase: str  # setup | discover | plan | hosts | guests | window | soak | ring-gate | approval | cleanup | done
    ring: str = ""
    waiting_for: str = ""  # ring whose approval is awaited, or "" when not waiting
    soak_until: str = ""  # ISO UTC while soaking
    window_until: str = ""  # "window-name until ISO UTC" while waiting for a maintenance window
    hosts_done: int = 0
    hosts_total: int = 0
    vms: tuple[VmProgress, ...] = ()  # in flight (and, for a run asked before it planned, nothing)
    failed: int = 0
    failure_budget: int = 0
    halted_reason: str = ""
    blocked: tuple[str, ...] = ()  # a sample of "site/name: reason (code)" the plan could not include
    counts: dict[str, int] = field(default_factory=dict)  # status -> VMs (pending included)
    total: int = 0  # planned VMs
    blocked_total: int = 0
    batches: tuple[str, ...] = ()  # workflow ids of the running batches (hosts, VMs, ring health)
    est_s: int = 0  # the plan's learned estimate of the whole run's work (PlanSummary.est_s)

    @property
    def done(self) -> int:
        """Planned VMs that concluded (neither pending nor running)."""
        return self.total - self.count(StepStatus.PENDING) - self.count(StepStatus.RUNNING)

    def eta(self, now: datetime) -> datetime | None:
        """When the run should end: the share of the plan's learned estimate (:attr:`est_s`) not yet
        done (VMs and hosts alike; a VM in flight counts as done by the share of its own estimate it
        has run, at most 95 %), after the maintenance window it waits for, if any. None without an
        estimate (not planned yet) or once nothing is left."""
        units = self.total + self.hosts_total
        if not self.est_s or not units:
            return None
        under_way = 0.0
        for vm in self.vms:
            try:
                ran = (now - datetime.fromisoformat(vm.started)).total_seconds() if vm.started else 0.0
            except ValueError:
                ran = 0.0
            under_way += min(0.95, max(0.0, ran) / vm.est_s) if vm.est_s else 0.0
        left = units - self.done - self.hosts_done - under_way
        if left <= 0:
            return None
        start = now
        if self.window_until:
            _name, _sep, until = self.window_until.rpartition(" until ")
            try:
                start = max(now, datetime.fromisoformat(until))
            except ValueError:
                pass
        return start + timedelta(seconds=self.est_s * left / units)

    def count(self, status: StepStatus) -> int:
        if self.counts or self.total:
            return self.counts.get(status.value, 0)
        return sum(1 for v in self.vms if v.status is status)

    def merged(self, batches: Sequence[BatchProgress]) -> RunProgress:
        """This progress with its running batches' VMs, counters and window wait added in."""
        counts = dict(self.counts)
        vms: list[VmProgress] = []
        window_until, phase, hosts = self.window_until, self.phase, self.hosts_done
        for batch in batches:
            for status, n in batch.counts.items():
                counts[status] = counts.get(status, 0) + n
            vms.extend(batch.vms)
            hosts += batch.hosts_done
            if batch.window_until:
                window_until, phase = batch.window_until, "window"
        running = sum(1 for v in vms if v.status is StepStatus.RUNNING)
        counts[StepStatus.RUNNING.value] = running
        done = sum(n for status, n in counts.items() if status not in ("pending", "running"))
        counts[StepStatus.PENDING.value] = max(0, self.total - done - running)
        return replace(self, counts=counts, vms=tuple(vms), window_until=window_until, phase=phase,
                       hosts_done=hosts, batches=())  # fmt: skip


@dataclass(frozen=True)
class BatchProgress:
    """A batch's ``progress`` query: its VMs in flight and what concluded so far in it."""

    batch_id: str
    counts: dict[str, int] = field(default_factory=dict)  # concluded statuses (not yet in the run's)
    vms: tuple[VmProgress, ...] = ()  # in flight
    window_until: str = ""
    hosts_done: int = 0


@dataclass(frozen=True)
class NotifySetup:
    enabled: bool  # any URL configured
    prenotice_s: int  # window_prenotice this long before a window opens (0 = none)


@dataclass(frozen=True)
class Notice:
    """One notification a run asks for (plain values: it is an activity input)."""

    run_id: str
    event: str
    key: str = ""  # unique within the run ("" = the event): e.g. "vm_rolled_back:vm:lab:42"
    step_id: str = ""  # vm_rolled_back: the VM's step
    outcome: VmOutcome | None = None  # vm_rolled_back
    summary: RunSummary | None = None  # run_finished / run_halted
    window: str = ""  # window_prenotice: the window and its occurrence (ISO UTC)
    window_start: str = ""
    window_end: str = ""
    requested_by: str = ""
    now: str = ""  # ISO UTC: the workflow's time when it asked (for "opens in N h")


@dataclass(frozen=True)
class NoticeResult:
    sent: int = 0
    failed: int = 0
    already: bool = False  # delivered before (a retried activity or a resumed run)


# ------------------------------------------------------------------------------------------
# bounded runs: plans, waves and batches in slices (no payload grows with the fleet)
# ------------------------------------------------------------------------------------------


def _knob(name: str, default: int) -> int:
    return int(os.environ.get(name, "") or default)


#: VMs per ``WaveBatch`` (and per ``HealthBatch``): the ceiling of a batch's slice and history. A
#: batch patches its VMs inline: about 24 events per VM (6 activities; 3,009 events for 128 VMs on
#: the scale bed). A VM through every safeguard, a service restart, a reboot, a failed verification,
#: its revert and a CVE proof takes 14 activities, at most 84 events with a workflow task each: 128
#: such VMs would be 10,752 events, a fifth of Temporal's 51,200 (the failure budget halts far
#: sooner). A wave's batches hold a whole number of its concurrency (:func:`batch_span`).
BATCH_SIZE = _knob("PATCHWAVE_BATCH_SIZE", 128)
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
    batch_size: int = 128
    host_batch_size: int = 100
    continue_after_events: int = 4000


def current_limits() -> RunLimits:
    """This worker's limits (what ``run_setup`` hands a new run)."""
    return RunLimits(BATCH_SIZE, HOST_BATCH_SIZE, CONTINUE_AFTER_EVENTS)


def batch_span(batch_size: int, concurrency: int) -> int:
    """VMs per ``WaveBatch`` of a wave of ``concurrency``: ``batch_size`` rounded down to a whole
    number of the concurrency (at least one). A wave's batches run one after the other and a batch
    ends when its last VM does, so a partial last round would leave slots idle at every boundary.
    A concurrency above ``batch_size`` makes the batch that large (its history grows with it)."""
    slots = max(1, concurrency)
    return max(slots, batch_size // slots * slots)


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
    # Batch handover (``PatchRun``'s ``batch-handover``): the batch tells its parent once every VM has
    # had its slot, and hands the slots it frees after that to the successor the parent names.
    handover: bool = False
    # Started while its predecessor still runs: it owns no slot until granted (:class:`SlotGrant`).
    handed: bool = False


@dataclass(frozen=True)
class SlotGrant:
    """Concurrency slots handed to a ``WaveBatch`` started while its predecessor still runs: by the
    predecessor as it frees them (``slots``), or by the parent once the predecessor ended (``final``:
    the batch owns the wave's whole concurrency from then on). Both tell the predecessor's failures
    against the budget so far and its halt, so the successor counts them before it starts a VM."""

    slots: int = 0
    final: bool = False
    failed: int = 0  # the predecessor's own FAILED (and counted ROLLED_BACK) VMs so far
    failed_names: tuple[str, ...] = ()
    halted: str = ""


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


# ------------------------------------------------------------------------------------------
# fleet assessment (AssessFleet and its activities)
# ------------------------------------------------------------------------------------------


ASSESS_WORKFLOW = "AssessFleet"


@dataclass(frozen=True)
class AssessRequest:
    """What starts (or continues) a fleet assessment. ``round_id`` "" = the workflow id."""

    round_id: str = ""
    refresh: bool = False  # refresh the guests' package lists first (apt-get update, dnf/zypper refresh)
    requested_by: str = ""
    # where a continued execution (continue-as-new) picks up, and what the earlier ones counted
    site_index: int = 0
    batch_index: int = 0
    assessed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class RoundStart:
    round_id: str
    sites: tuple[str, ...]  # configured sites, in order
    batch_size: int  # VMs per batch activity (at most 500)
    batches_per_run: int = 100  # batch activities per execution before it continues as new


@dataclass(frozen=True)
class FeedsRefreshed:
    loaded: int = 0
    kept: int = 0
    failed: int = 0


@dataclass(frozen=True)
class SiteRound:
    round_id: str
    site: str


@dataclass(frozen=True)
class SiteTargets:
    targets: int  # the round's VMs on the site (not running ones included, marked failed)


@dataclass(frozen=True)
class AssessBatch:
    round_id: str
    site: str
    start: int  # position of the first target
    count: int  # at most AssessSettings.batch_size
    refresh: bool = False


@dataclass(frozen=True)
class BatchCounts:
    assessed: int = 0
    failed: int = 0
    skipped: int = 0  # done by an earlier attempt


@dataclass(frozen=True)
class RoundEnd:
    round_id: str


@dataclass(frozen=True)
class RoundSummary:
    round_id: str
    targets: int = 0
    assessed: int = 0
    failed: int = 0
    alerts: int = 0  # alerts pending delivery after this round (new ones included)
    notified: int = 0  # notices delivered


@dataclass(frozen=True)
class CveProofResult:
    """``vm_prove_cves``: one VM's proof after a ``run --cve`` patch, in counts (the proofs per CVE and
    package are in the fact store, ``cve_proofs``). ``still_open``: at most the run's CVEs x packages."""

    proved: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    still_open: tuple[str, ...] = ()
