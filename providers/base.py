"""The provider contract: what the orchestrator may ask of a hypervisor platform.

Everything that talks to libvirt, vSphere or Proxmox lives in an adapter module next to this one
and implements the small Protocols: :class:`Provider` below, and the verbs of each capability it
declares (:mod:`providers.capabilities`). An adapter declares what it can do as a set of
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

The BACKUP and BACKUP_VERIFY verbs and their values are in :mod:`providers.backups`.

Values crossing this boundary are frozen dataclasses of plain types so that they serialise into
Temporal payloads and the fact store without custom converters.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

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
    BACKUP = "backup"  # full backups outside the VM's own storage chain: create / list / delete
    BACKUP_VERIFY = "backup_verify"  # restore a backup into an isolated copy, probe it, destroy it


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

    def owned_by(self, run_id: str, step_id: str) -> bool:
        """True only when the description's ownership names this (run, step) — never by name."""
        owner = self.ownership
        return owner is not None and (owner.run_id, owner.step_id) == (run_id, step_id)


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
# The Protocols
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """What every adapter offers. The verbs of each capability are in :mod:`providers.capabilities`:
    a Protocol per verb group (a provider that has it), which ``require`` returns the provider as."""

    site: str
    capabilities: frozenset[Capability]

    def inventory(self) -> Inventory: ...
    def get_vm(self, vm: VmRef) -> VmInfo: ...
    def get_host(self, host: HostRef) -> HostInfo: ...
    def close(self) -> None: ...
