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


class StepKind(enum.StrEnum):
    HOST = "host"
    VM = "vm"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # patched (or nothing to do) and healthy
    ROLLED_BACK = "rolled_back"  # patch failed health; snapshot reverted; healthy again
    FAILED = "failed"  # failed and could not be made healthy (counts against the budget)
    SKIPPED = "skipped"  # not attempted (blocked, budget exhausted, window closed)


class RebootPolicy(enum.StrEnum):
    IF_REQUIRED = "if-required"
    ALWAYS = "always"
    NEVER = "never"


class UpdateMode(enum.StrEnum):
    ALL = "all"
    SECURITY = "security"
    PINNED = "pinned"


@dataclass(frozen=True)
class Blocker:
    """Why a target cannot be (fully) handled. Shown by ``plan``; the step is skipped."""

    target: str  # "site/name"
    reason: str  # human sentence naming the fix
    code: str  # stable: "capability", "powered_off", "locked", "no_channel", "excluded", "window"


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


@dataclass(frozen=True)
class VmStep:
    step_id: str  # stable: f"vm:{site}:{vm.id}" — the same VM always gets the same id
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
    step_id: str  # stable: f"host:{site}:{host.id}"
    host: HostRef
    failure_domain: str
    evacuate: bool
    patch: str  # "platform" | "ssh" | "none"
    reboot: RebootPolicy
    est_duration_s: int


@dataclass(frozen=True)
class FailureDomain:
    """Hosts patched strictly one at a time within a domain; domains one after another."""

    domain_id: str
    hosts: tuple[HostStep, ...]


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
    est_start: str = ""  # ISO UTC: predicted start (planner's timeline, waits for the window)
    est_duration_s: int = 0  # predicted duration: ceil(n / concurrency) * slowest VM estimate
    fits: bool = True  # every VM can start and, worst case, roll back before the window's cutoff


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
    dry_run: bool = False
    requested_by: str = ""
    groups: tuple[str, ...] = ()  # only VMs of these [[groups]] (a scheduled run's scope); empty = all
    sites: tuple[str, ...] = ()  # only these sites; empty = every configured site


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
    run_id: str
    status: str  # "succeeded" | "halted" | "failed" | "paused"
    hosts: tuple[HostOutcome, ...] = ()
    vms: tuple[VmOutcome, ...] = ()
    halted_reason: str = ""

    def count(self, status: StepStatus) -> int:
        return sum(1 for v in self.vms if v.status is status)
