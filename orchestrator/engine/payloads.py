"""The values exchanged between the workflows and the activities (one dataclass in, one out).

Frozen dataclasses of plain types, like :mod:`orchestrator.model`, so the Temporal data
converter handles them without custom code. Nothing here may hold a secret. Values defined below
the engine cross as they are: ``cleanup_expired_snapshots`` returns :class:`orchestrator.model.CleanupResult`,
``host_patch`` the provider's :class:`providers.base.HostPatchResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from orchestrator.model import (
    HostOutcome,
    HostStep,
    PackageChange,
    RunSummary,
    StepStatus,
    VmOutcome,
    VmStep,
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
