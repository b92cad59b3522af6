"""The provider contract: what the orchestrator may ask of a hypervisor platform.

Everything that talks to libvirt, vSphere or Proxmox lives in an adapter module next to this one
and implements the small Protocols below. An adapter declares what it can do as a set of
:class:`Capability` values; the planner checks capabilities before a run starts, so a missing
feature is a *blocker in the plan*, never an exception half-way through a rollout.

Adapters translate their SDK's exceptions into :class:`ProviderError` subclasses at their boundary.
``TransientProviderError`` means "retry may help" (timeouts, dropped connections, a busy lock, a
guest agent that does not answer yet); ``PermanentProviderError`` means "do not retry" (not found,
refused, bad credentials). A TLS rejection (unknown CA, wrong certificate pin, hostname mismatch) is
``AuthenticationFailed`` with ``code="tls"``: the platform's identity could not be verified, and
retrying will not change that.

Capabilities are declared per provider; a guest that lacks one of them for a *static* reason (a
Proxmox container has no agent exec and no RAM state, a libvirt domain has no agent channel
configured, a vSphere VM has no VMware Tools installed) lists it in :attr:`VmInfo.unsupported`, and
the planner treats it like a capability the provider lacks for that guest only. Transient facts
(the agent is not answering *right now*) are not capabilities: they are ``VmInfo.agent_ready`` and
:class:`GuestAgentUnavailable`.

Values crossing this boundary are frozen dataclasses of plain types so that they serialise into
Temporal payloads and the fact store without custom converters.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar, runtime_checkable

import tenacity

# --------------------------------------------------------------------------------------------
# Capabilities
# --------------------------------------------------------------------------------------------


class Capability(enum.StrEnum):
    """A verb group an adapter supports. Checked by the planner, never discovered mid-run."""

    INVENTORY = "inventory"  # hosts + VMs with state and tags
    POWER = "power"  # power on / graceful shutdown / hard off
    GUEST_REBOOT = "guest_reboot"  # graceful reboot of a guest through the platform
    SNAPSHOT = "snapshot"  # create / list / revert / delete
    SNAPSHOT_MEMORY = "snapshot_memory"  # snapshots that include RAM state
    SNAPSHOT_QUIESCE = "snapshot_quiesce"  # filesystem-quiesced snapshots (tools/agent)
    GUEST_EXEC = "guest_exec"  # run a command in the guest through the platform's agent
    HOST_MAINTENANCE = "host_maintenance"  # enter/exit maintenance mode
    HOST_EVACUATE = "host_evacuate"  # maintenance mode moves running guests away
    HOST_PATCH = "host_patch"  # the platform itself can patch a host (e.g. HostPatchManager)
    HOST_REBOOT = "host_reboot"  # reboot a host and wait for it to reconnect


# --------------------------------------------------------------------------------------------
# Typed references and infos
# --------------------------------------------------------------------------------------------


class PowerState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class HostState(enum.StrEnum):
    CONNECTED = "connected"
    MAINTENANCE = "maintenance"
    DISCONNECTED = "disconnected"  # not reachable (rebooting, down, network)
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class HostRef:
    """A hypervisor host. ``id`` is the platform's stable identifier (moref, node name, URI)."""

    site: str
    id: str
    name: str

    def __str__(self) -> str:
        return f"{self.site}/{self.name}"


@dataclass(frozen=True, slots=True)
class VmRef:
    """A guest (VM or container). ``id`` is the platform's stable identifier (UUID, moref, vmid)."""

    site: str
    id: str
    name: str

    def __str__(self) -> str:
        return f"{self.site}/{self.name}"


@dataclass(frozen=True, slots=True)
class HostInfo:
    """A hypervisor host as the platform reports it.

    ``address`` is the host's management address (IP or DNS name) when the platform knows it
    (Proxmox: the node's ``ip`` in ``/cluster/status``; vSphere: the name vCenter connected the host
    by; libvirt: the URI's host, or this machine's hostname for a local URI), else ``""``. SSH host
    patching (``[hosts] patch = "ssh"``) should connect to it, falling back to ``ref.name``.
    """

    ref: HostRef
    state: HostState
    failure_domain: str  # cluster / rack / the host itself when nothing groups hosts
    version: str = ""  # hypervisor product version
    build: str = ""  # hypervisor build; changes when a host patch is applied
    boot_time: str = ""  # ISO-8601 UTC when known; changes on reboot
    running_vms: int = 0
    tags: tuple[str, ...] = ()
    address: str = ""  # management address (IP/DNS name) when known; "" = use ref.name

    @property
    def in_maintenance(self) -> bool:
        return self.state is HostState.MAINTENANCE


@dataclass(frozen=True, slots=True)
class VmInfo:
    """A guest as the platform reports it.

    ``unsupported`` lists capabilities the provider declares but this guest lacks for a *static*
    reason, i.e. one that holds until someone reconfigures the guest (Proxmox containers:
    GUEST_EXEC and SNAPSHOT_MEMORY; a libvirt domain without a qemu-ga channel: GUEST_EXEC; a
    vSphere VM without VMware Tools installed: GUEST_EXEC and SNAPSHOT_QUIESCE). Whether an agent
    answers right now is ``agent_ready``, never ``unsupported``. The planner uses
    ``provider.capabilities - set(vm.unsupported)`` for the guest.
    """

    ref: VmRef
    power: PowerState
    host: HostRef | None = None
    kind: str = "vm"  # "vm" or "container"
    tags: tuple[str, ...] = ()  # free-form tags ("web", "ring:canary")
    labels: Mapping[str, str] = field(default_factory=dict)  # key/value metadata
    guest_os: str = ""
    ip_addresses: tuple[str, ...] = ()
    agent_ready: bool = False  # the platform's guest agent answers right now
    locked: str = ""  # non-empty when the platform holds a lock (Proxmox "snapshot", "backup")
    unsupported: tuple[Capability, ...] = ()  # declared by the provider, lacking for this guest (static)


@dataclass(frozen=True, slots=True)
class Inventory:
    site: str
    hosts: tuple[HostInfo, ...]
    vms: tuple[VmInfo, ...]


# --------------------------------------------------------------------------------------------
# Snapshot ownership
# --------------------------------------------------------------------------------------------

OWNERSHIP_PREFIX = "patchwave:"
SNAPSHOT_NAME_PREFIX = "pw-"


@dataclass(frozen=True, slots=True)
class SnapshotOwnership:
    """Who made a snapshot and why. Stored in the snapshot's description on every platform.

    Identity is (run_id, step_id), never the name alone: a weeks-old snapshot that happens to have
    the same name is not ours unless its ownership record says so.
    """

    run_id: str
    step_id: str
    created_at: str  # ISO-8601 UTC
    expires_at: str = ""  # ISO-8601 UTC; empty = keep until the run says otherwise

    def to_description(self, note: str = "") -> str:
        payload = {"run": self.run_id, "step": self.step_id, "created": self.created_at}
        if self.expires_at:
            payload["expires"] = self.expires_at
        text = OWNERSHIP_PREFIX + json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return f"{text}\n{note}" if note else text

    @classmethod
    def from_description(cls, description: str | None) -> SnapshotOwnership | None:
        if not description or not description.startswith(OWNERSHIP_PREFIX):
            return None
        first_line = description.splitlines()[0][len(OWNERSHIP_PREFIX) :]
        try:
            payload = json.loads(first_line)
            return cls(
                run_id=str(payload["run"]),
                step_id=str(payload["step"]),
                created_at=str(payload["created"]),
                expires_at=str(payload.get("expires", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def snapshot_name(run_id: str, step_id: str) -> str:
    """A deterministic snapshot name for (run, step); short enough for Proxmox (40 chars)."""
    import hashlib

    digest = hashlib.sha256(f"{run_id}/{step_id}".encode()).hexdigest()[:12]
    return f"{SNAPSHOT_NAME_PREFIX}{run_id[:20]}-{digest}"[:40]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    vm: VmRef
    id: str  # platform id (libvirt: name, vSphere: moref, Proxmox: snapname)
    name: str
    description: str = ""
    created_at: str = ""  # ISO-8601 UTC
    has_memory: bool = False
    parent: str = ""

    @property
    def ownership(self) -> SnapshotOwnership | None:
        return SnapshotOwnership.from_description(self.description)


# --------------------------------------------------------------------------------------------
# Guest exec and host patching values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int | None  # None when killed by a signal
    stdout: str = ""
    stderr: str = ""
    signal: int | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True, slots=True)
class HostPatchSpec:
    """What to install on a hypervisor host through the platform (HOST_PATCH capability)."""

    depot_urls: tuple[str, ...] = ()  # vSphere: offline bundle / depot URLs
    bulletins: tuple[str, ...] = ()  # vSphere: bulletin ids; empty = everything in the depot


@dataclass(frozen=True, slots=True)
class HostPatchResult:
    """What :meth:`HostPatchOps.patch_host` did.

    ``build_after`` is the build the host reported when the install finished. ESXi reports the new
    build only after the reboot, so a change that needs a reboot may show ``build_after ==
    build_before``; the engine reads the final build from ``get_host`` after rebooting.
    """

    changed: bool
    reboot_required: bool
    build_before: str = ""
    build_after: str = ""
    detail: str = ""


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base class. ``retryable`` tells the engine whether another attempt may succeed."""

    retryable: bool = False

    def __init__(self, message: str, *, target: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.code = code  # short stable machine code, e.g. "locked", "not_found", "auth"

    def __str__(self) -> str:
        where = f" [{self.target}]" if self.target else ""
        return f"{self.message}{where}"


class TransientProviderError(ProviderError):
    retryable = True


class PermanentProviderError(ProviderError):
    retryable = False


class ProviderTimeout(TransientProviderError):
    """A wait exceeded its deadline. Never returned silently as ``None``."""


class ProviderUnavailable(TransientProviderError):
    """Connection refused/dropped, HTTP 5xx from a proxy, node offline."""


class ResourceBusy(TransientProviderError):
    """A lock or a conflicting task holds the object (Proxmox lock, vSphere TaskInProgress)."""


class GuestAgentUnavailable(TransientProviderError):
    """The guest's agent (qemu-ga, VMware Tools) does not answer now: not started yet, restarting,
    hung. Transient by definition; an agent that is not *configured* is a static fact instead
    (``CapabilityMissing`` when called, :attr:`VmInfo.unsupported` when planning). Adapters keep
    their codes (libvirt ``agent_unresponsive``/``agent_unsynced``, Proxmox ``agent_not_ready``)."""


class NotFound(PermanentProviderError):
    pass


class AuthenticationFailed(PermanentProviderError):
    """Credentials refused (``code="auth"``), access denied, or the platform's TLS certificate was
    rejected (``code="tls"``: unknown CA, wrong pin, hostname mismatch)."""


class OperationRefused(PermanentProviderError):
    """The platform understood and said no (invalid state, ZFS newest-only rollback, ...)."""


class CapabilityMissing(PermanentProviderError):
    pass


class SdkMissing(PermanentProviderError):
    """The adapter's SDK is not installed; the message names the extra to install."""


# --------------------------------------------------------------------------------------------
# Clock (injectable time for waits and retries)
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def utc_now_iso(clock: Clock = SYSTEM_CLOCK) -> str:
    return clock.now().astimezone(UTC).isoformat(timespec="seconds")


T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    what: str,
    clock: Clock = SYSTEM_CLOCK,
    target: str = "",
) -> T:
    """Poll ``probe`` until it returns something truthy; raise :class:`ProviderTimeout` at the deadline."""
    deadline = clock.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if clock.monotonic() >= deadline:
            raise ProviderTimeout(f"timed out after {timeout:.0f}s waiting for {what}", target=target)
        clock.sleep(min(interval, max(0.0, deadline - clock.monotonic())) or interval)


# --------------------------------------------------------------------------------------------
# Named retry policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A named, bounded retry policy. Used with tenacity in-process and mapped to Temporal's."""

    name: str
    max_attempts: int
    initial_s: float
    max_s: float
    multiplier: float = 2.0
    deadline_s: float | None = None

    def retrying(self, clock: Clock = SYSTEM_CLOCK) -> tenacity.Retrying:
        stops = [tenacity.stop_after_attempt(self.max_attempts)]
        if self.deadline_s is not None:
            stops.append(tenacity.stop_after_delay(self.deadline_s))
        return tenacity.Retrying(
            stop=tenacity.stop_any(*stops),
            wait=tenacity.wait_exponential(multiplier=self.initial_s, max=self.max_s, exp_base=self.multiplier),
            retry=tenacity.retry_if_exception(is_retryable),
            sleep=clock.sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], T], clock: Clock = SYSTEM_CLOCK) -> T:
        return self.retrying(clock)(fn)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


#: An API call against a hypervisor manager (vCenter, PVE API, libvirtd).
API_CALL = RetryPolicy("api_call", max_attempts=5, initial_s=0.5, max_s=10.0, deadline_s=120.0)
#: Re-establishing a session (re-login after NotAuthenticated / expired ticket).
RELOGIN = RetryPolicy("relogin", max_attempts=2, initial_s=0.2, max_s=1.0)
#: Waiting for an object lock held by someone else to be released.
LOCK_WAIT = RetryPolicy("lock_wait", max_attempts=30, initial_s=1.0, max_s=10.0, deadline_s=300.0)

POLICIES: Mapping[str, RetryPolicy] = {p.name: p for p in (API_CALL, RELOGIN, LOCK_WAIT)}


# --------------------------------------------------------------------------------------------
# The Protocols
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """What every adapter offers. Capability verbs are in the Protocols below."""

    site: str
    capabilities: frozenset[Capability]

    def inventory(self) -> Inventory: ...
    def get_vm(self, vm: VmRef) -> VmInfo: ...
    def get_host(self, host: HostRef) -> HostInfo: ...
    def close(self) -> None: ...


class SnapshotOps(Protocol):
    """Capability.SNAPSHOT (and SNAPSHOT_MEMORY / SNAPSHOT_QUIESCE for the flags)."""

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]: ...

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        """Create a snapshot and return it as listed afterwards.

        ``memory`` and ``quiesce`` are *requests*: a provider without SNAPSHOT_MEMORY /
        SNAPSHOT_QUIESCE raises :class:`CapabilityMissing` when asked, but a provider may capture
        memory although it was not asked to (libvirt internal snapshots of a running domain are
        always checkpoints). The returned ``SnapshotInfo.has_memory`` is authoritative: it says what
        a revert will restore (a running guest from a memory snapshot, a stopped one otherwise).
        """
        ...

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None: ...
    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None: ...


class PowerOps(Protocol):
    """Capability.POWER and Capability.GUEST_REBOOT.

    ``power_on``, ``shutdown`` and ``power_off`` are idempotent: a guest already in the target state
    is no error and nothing is done (activities are delivered at least once). The contract suite
    checks this for every adapter.
    """

    def power_on(self, vm: VmRef) -> None:
        """Start (or resume) the guest; no-op when it is running."""
        ...

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        """Graceful shutdown, waiting (bounded by ``timeout``) until it is off; no-op when it is off."""
        ...

    def power_off(self, vm: VmRef) -> None:
        """Hard power off; no-op when the guest is not running."""
        ...

    def reboot_guest(self, vm: VmRef) -> None:
        """Ask the guest to reboot and return once the request was accepted (a platform task that
        restarts the VM, like Proxmox's, is waited for and its exit status checked). It does *not*
        wait for the guest OS to come back: the engine does, through the guest layer (a new
        ``boot_id``, see ``orchestrator/guests/reboot.py``). A guest that is not running is refused
        (:class:`OperationRefused`)."""
        ...


class GuestExecOps(Protocol):
    """Capability.GUEST_EXEC: run a program in the guest through the platform's agent.

    ``guest_ping`` never raises for agent trouble (it answers ``False``). ``guest_exec`` raises
    :class:`GuestAgentUnavailable` when the agent does not answer, :class:`ProviderTimeout` when the
    program outlives ``timeout``, :class:`CapabilityMissing` when this guest cannot run agent
    commands at all (e.g. a container); a non-zero exit status is in the :class:`ExecResult`.
    """

    def guest_ping(self, vm: VmRef) -> bool: ...
    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult: ...


class MaintenanceOps(Protocol):
    """Capability.HOST_MAINTENANCE (HOST_EVACUATE when ``evacuate`` moves guests away)."""

    def enter_maintenance(self, host: HostRef, *, evacuate: bool, timeout: float) -> None:
        """Idempotent: on a host already in maintenance, only what is left is done (with
        ``evacuate``: move the guests still running there; a retry after a crash relies on it)."""
        ...

    def exit_maintenance(self, host: HostRef, *, timeout: float) -> None: ...


class HostPatchOps(Protocol):
    """Capability.HOST_PATCH: the platform patches the host itself."""

    def patch_host(self, host: HostRef, spec: HostPatchSpec, *, timeout: float) -> HostPatchResult:
        """Install ``spec`` on ``host`` (in maintenance mode); ``build_after`` is the build reported
        when the install finished, which on ESXi is still the old one until the host reboots."""
        ...


class HostRebootOps(Protocol):
    """Capability.HOST_REBOOT: reboot and wait until the host is connected again."""

    def reboot_host(self, host: HostRef, *, timeout: float) -> None: ...


def require(provider: Provider, capability: Capability) -> object:
    """Return ``provider`` if it declares ``capability``; raise :class:`CapabilityMissing` otherwise."""
    if capability not in provider.capabilities:
        raise CapabilityMissing(
            f"provider for site {provider.site!r} does not support {capability.value}", code="capability"
        )
    return provider


# --------------------------------------------------------------------------------------------
# Settings and secrets shared by adapters
# --------------------------------------------------------------------------------------------


class Secret:
    """A credential. Its repr/str never reveal the value; call :meth:`reveal` at the SDK boundary."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class SettingsError(ValueError):
    """A provider setting is invalid. ``field`` is the dotted key, ``fix`` says what to write."""

    def __init__(self, field_name: str, message: str, fix: str = "") -> None:
        super().__init__(f"{field_name}: {message}" + (f" (fix: {fix})" if fix else ""))
        self.field = field_name
        self.message = message
        self.fix = fix
