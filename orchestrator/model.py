"""Value types shared by the planner, the workflows, the activities and the fact store.

All frozen dataclasses of plain types (str/int/float/bool/tuples/dicts of those and of each other)
so the Temporal data converter serialises them without custom code. Times are ISO-8601 UTC strings
or seconds; the workflow converts with ``workflow.now()``, never ``datetime.now()``.

Nothing here may hold a secret: these values travel in Temporal payloads and the fact store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from providers.base import HostRef, VmRef

SCHEMA_VERSION = 1


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # patched (or nothing to do) and healthy
    ROLLED_BACK = "rolled_back"  # patch failed health; snapshot reverted; healthy again
    FAILED = "failed"  # failed and could not be made healthy (counts against the budget)
    SKIPPED = "skipped"  # not attempted (blocked, budget exhausted, window closed, unhealthy before)

    @property
    def final(self) -> bool:
        """The step's attempt concluded (SUCCEEDED, ROLLED_BACK, FAILED): a resumed run must not
        redo it. A SKIPPED step was not attempted, so a resume attempts it."""
        return self in (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK, StepStatus.FAILED)

    @property
    def concluded(self) -> bool:
        """The step has a result to report: final or SKIPPED (e.g. the compliance report's last
        result, or a run's step whose unfinished attempt will never report back)."""
        return self.final or self is StepStatus.SKIPPED


def vm_step_id(vm: VmRef) -> str:
    """The stable step id of a VM: the same VM always gets the same id (``vm:site:platform-id``)."""
    return f"vm:{vm.site}:{vm.id}"


def host_step_id(host: HostRef) -> str:
    """The stable step id of a hypervisor host (``host:site:platform-id``)."""
    return f"host:{host.site}:{host.id}"


@dataclass(frozen=True, slots=True)
class PackageChange:
    """One package a patch changed (a leaf value: the guests' parsers, payloads and the journal)."""

    name: str
    old: str  # "" for a newly installed package
    new: str  # "" for a removed package

    def __str__(self) -> str:
        return f"{self.name} {self.old}->{self.new}"


class ExitCode(enum.IntEnum):
    """How a run (``run``/``resume``) ends for the command line."""

    OK = 0  # everything succeeded (blocked/skipped targets are listed, not failures)
    SOME_FAILED = 1  # some VM rolled back or failed, or a host failed
    BAD_INPUT = 2
    HALTED = 3  # the failure budget or a gate halted the run


class RebootPolicy(enum.StrEnum):
    IF_REQUIRED = "if-required"
    ALWAYS = "always"
    NEVER = "never"

    def needs_reboot(self, reboot_required: bool) -> bool:
        """Reboot after patching? ``always``, ``never``, or (``if-required``) what the patch reported."""
        if self is RebootPolicy.ALWAYS:
            return True
        if self is RebootPolicy.NEVER:
            return False
        return reboot_required


class UpdateMode(enum.StrEnum):
    ALL = "all"
    SECURITY = "security"
    PINNED = "pinned"
    CVE = (
        "cve"  # `run --cve`: only the packages fixing the run's CVEs (the run's target set; never configured)
    )


@dataclass(frozen=True)
class Blocker:
    """Why a target cannot be (fully) handled. Shown by ``plan``; the step is skipped."""

    target: str  # "site/name"
    reason: str  # human sentence naming the fix
    code: str  # stable: "capability", "powered_off", "locked", "no_channel", "excluded", "window", "no_health_check"


#: How a guest's restart tool reports a newer kernel among the stale "services" (needrestart KSTA 2/3):
#: only a reboot helps.
STALE_KERNEL = "kernel"


@dataclass(frozen=True)
class VmPolicy:
    """The per-VM policy resolved by the planner from groups/rings/policy settings."""

    reboot: RebootPolicy = RebootPolicy.IF_REQUIRED
    snapshot_memory: bool = False
    snapshot_quiesce: bool = False
    snapshot_ttl_s: int = 72 * 3600
    update_mode: UpdateMode = UpdateMode.ALL
    pins: tuple[str, ...] = ()
    health_deadline_s: int = 300
    patch_timeout_s: int = 3600
    reboot_timeout_s: int = 300  # raised by learned reboot durations, see VmActivities.vm_reboot
    restart_services: str = "none"  # "needrestart": restart stale services instead of a non-kernel reboot
    backup: bool = (
        False  # a full backup before the snapshot ([policy] backup; VmPatch refuses to patch without it)
    )
    backup_keep: int = 3  # [backup] keep: the VM's patchwave backups kept after a successful one
    backup_timeout_s: int = 7200
    pause_autoupdates: bool = False  # [autoupdates] mode coexist | off: the updater is paused while patching
    autoupdates_wait_s: int = 900  # how long the pause waits for a running automatic update


@dataclass(frozen=True)
class VmStep:
    step_id: str  # stable: vm_step_id(vm)
    vm: VmRef
    group: str
    ring: str
    policy: VmPolicy
    est_duration_s: int  # predicted patch duration (learned or default)
    est_rollback_s: int  # worst-case rollback duration
    channel: str  # "agent" | "ssh" | "local"
    window: str = ""  # the group's [windows.X] name; "" = not bound to a window
    owners: tuple[str, ...] = ()  # from the VM's owner label/tags (notifications name them "@owner")


@dataclass(frozen=True)
class HostStep:
    step_id: str  # stable: host_step_id(host)
    host: HostRef
    failure_domain: str
    evacuate: bool
    patch: str  # "platform" | "ssh" | "none"
    reboot: RebootPolicy
    est_duration_s: int
    window: str = ""  # the failure domain's maintenance window ("" = none: the host starts at once)
    worst_s: int = (
        0  # worst case of this host (evacuate + patch + reboot + exit): longest past run, else default
    )
    need_s: int = 0  # admission need: worst cases of this host and the later hosts of its domain


@dataclass(frozen=True)
class FailureDomain:
    """Hosts patched strictly one at a time within a domain; domains one after another."""

    domain_id: str
    hosts: tuple[HostStep, ...]
    window: str = ""  # the domain's maintenance window ("" = none)
    worst_case_s: int = 0  # sum of its hosts' worst cases: the domain starts only if this fits
    est_start: str = ""  # ISO UTC: predicted start (orchestrator.windows.hosts.place_hosts)
    est_end: str = ""  # ISO UTC: predicted end


@dataclass(frozen=True)
class Wave:
    wave_id: str  # stable: f"{ring}:{index}"
    ring: str
    index: int
    vms: tuple[VmStep, ...]
    concurrency: int
    soak_s: int = 0  # wait after the wave before promoting the next ring
    approval: bool = False  # wait for `patchwave approve RUN` before the next ring
    window: str = ""  # window its VMs are bound to ("" = none; waves never mix windows)
    prepare_ahead: int = 0  # VMs prepared (baseline, snapshot) ahead of the concurrency slots
    est_start: str = ""  # ISO UTC: predicted start (planner's timeline, waits for the window)
    est_duration_s: int = 0  # predicted duration: ceil(n / concurrency) * slowest VM estimate
    fits: bool = True  # every VM can start and, worst case, roll back before the window's cutoff

    def info(self, position: int) -> WaveInfo:
        """This wave without its VMs, at ``position`` in the plan's wave order."""
        return WaveInfo(
            position=position, wave_id=self.wave_id, ring=self.ring, size=len(self.vms),
            concurrency=self.concurrency, soak_s=self.soak_s, approval=self.approval, window=self.window,
            est_duration_s=self.est_duration_s, prepare_ahead=self.prepare_ahead,
        )  # fmt: skip


@dataclass(frozen=True)
class WaveInfo:
    """A wave without its VMs: what the workflows carry. The VMs are read from the fact store in
    batches (``wave_batch``), so no payload grows with the fleet."""

    position: int  # 0-based place in the plan's wave order (``Wave.index`` counts within a ring)
    wave_id: str
    ring: str
    size: int  # number of VMs
    concurrency: int
    soak_s: int = 0
    approval: bool = False
    window: str = ""
    est_duration_s: int = 0  # the planner's learned estimate for the whole wave (Wave.est_duration_s)
    prepare_ahead: int = 0  # Wave.prepare_ahead (absent from plans and histories of before: 0)


@dataclass(frozen=True)
class WindowFit:
    """Where the plan's waves fall in the maintenance window (filled by the planner)."""

    window: str  # window name, "" = no window (run now, unbounded)
    start: str = ""  # ISO UTC of the window the run starts in
    end: str = ""  # ISO UTC of that window's end
    cutoff: str = ""  # ISO UTC: no VM starts after (end - cutoff - est - rollback)
    fits: bool = True
    note: str = ""


@dataclass(frozen=True)
class Plan:
    plan_id: str  # content hash of the ordered steps; equal inputs -> equal id
    created_at: str  # ISO UTC (the `now` the planner was given)
    sites: tuple[str, ...]
    host_phase: tuple[FailureDomain, ...]
    waves: tuple[Wave, ...]
    blocked: tuple[Blocker, ...]
    failure_budget: int  # max FAILED VMs across all waves before the run halts
    window: WindowFit = field(default_factory=lambda: WindowFit(window=""))
    window_fits: tuple[WindowFit, ...] = ()  # one per window the waves use (``window`` is the first)
    warnings: tuple[Blocker, ...] = ()  # not blocking: e.g. snapshot_memory downgraded (code "capability")

    @property
    def vm_steps(self) -> tuple[VmStep, ...]:
        return tuple(step for wave in self.waves for step in wave.vms)

    @property
    def host_steps(self) -> tuple[HostStep, ...]:
        return tuple(step for domain in self.host_phase for step in domain.hosts)


# ------------------------------------------------------------------------------------------
# Run inputs / outcomes (workflow <-> activities <-> fact store)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """What starts a run. The worker resolves everything else from its own configuration."""

    run_id: str
    config_digest: str  # hash of the config the plan was made with (refuse on mismatch)
    selection: tuple[str, ...] = ()  # explicit VM/host names from the CLI; empty = config targets
    hosts: bool = True  # run the hypervisor phase
    guests: bool = True  # run the guest waves
    requested_by: str = ""
    groups: tuple[str, ...] = ()  # only VMs of these [[groups]] (a scheduled run's scope); empty = all
    sites: tuple[str, ...] = ()  # only these sites; empty = every configured site
    window: str = ""  # a scheduled run's window: VMs whose group has no window of their own wait for it
    cves: tuple[str, ...] = ()  # `run --cve`: only the packages fixing these, on the affected VMs
    now: bool = False  # `run --now`: windows overridden (recorded with the run)


@dataclass(frozen=True)
class VmOutcome:
    step_id: str
    vm: VmRef
    status: StepStatus
    snapshot_id: str = ""
    packages_changed: int = 0
    rebooted: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""


@dataclass(frozen=True)
class HostOutcome:
    step_id: str
    host: HostRef
    status: StepStatus
    build_before: str = ""
    build_after: str = ""
    rebooted: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    detail: str = ""  # e.g. a report-only host: "report only: 3 updates pending (...)"


@dataclass(frozen=True)
class RunSummary:
    """A run's result. Bounded: ``counts`` covers every VM of the run, ``vms`` / ``hosts`` list at
    most a page of outcomes (the failed and rolled-back ones first; the fact store has them all,
    ``patchwave status RUN --page N``). Without ``counts`` (a summary built by hand) the lists count."""

    run_id: str
    status: str  # "succeeded" | "halted" | "failed" | "paused"
    hosts: tuple[HostOutcome, ...] = ()
    vms: tuple[VmOutcome, ...] = ()
    halted_reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # VM step status -> number of VMs (all of them)
    hosts_failed: int = 0  # FAILED hosts (all of them; ``hosts`` may be a page)

    def count(self, status: StepStatus) -> int:
        if self.counts:
            return self.counts.get(status.value, 0)
        return sum(1 for v in self.vms if v.status is status)

    @property
    def vms_total(self) -> int:
        return sum(self.counts.values()) if self.counts else len(self.vms)

    @property
    def exit_code(self) -> ExitCode:
        if self.status == "halted":
            return ExitCode.HALTED
        bad = self.count(StepStatus.FAILED) + self.count(StepStatus.ROLLED_BACK)
        if bad or self.hosts_failed or any(h.status is StepStatus.FAILED for h in self.hosts):
            return ExitCode.SOME_FAILED
        return ExitCode.OK


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
class CleanupResult:
    """What a snapshot cleanup of one site did (:func:`orchestrator.snapshots.clean_up`).

    Each entry is a "vm/snapshot" label."""

    deleted: tuple[str, ...] = ()  # deleted now
    gone: tuple[str, ...] = ()  # already gone (marked deleted)
    refused: tuple[str, ...] = ()  # ownership did not match: left alone and marked leaked
    in_use: tuple[str, ...] = ()  # its run is not finished, or another run/operation holds the VM: kept
