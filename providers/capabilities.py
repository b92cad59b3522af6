"""What each :class:`~providers.base.Capability` lets the engine call: a Protocol per verb group.

Each Protocol is a :class:`~providers.base.Provider` that has the capability. Adapters do not
inherit them (they implement the verbs of the capabilities they declare); the engine gets a
provider typed as one through :func:`require`, the one capability check, which raises
:class:`~providers.errors.CapabilityMissing` when the provider does not declare it — the planner
has checked capabilities before the run, so that is a bug or a changed platform, not a plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, overload

from providers.backups import BackupInfo, BackupOwnership, RestoreCheck, RestoredCopy, RestoreProbe
from providers.base import (
    Capability,
    ExecResult,
    HostPatchResult,
    HostPatchSpec,
    HostRef,
    Provider,
    SnapshotInfo,
    VmRef,
)
from providers.errors import CapabilityMissing


class SnapshotOps(Provider, Protocol):
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


class PowerOps(Provider, Protocol):
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


class GuestExecOps(Provider, Protocol):
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


class MaintenanceOps(Provider, Protocol):
    """Capability.HOST_MAINTENANCE (HOST_EVACUATE when ``evacuate`` moves guests away)."""

    def enter_maintenance(self, host: HostRef, *, evacuate: bool, timeout: float) -> None:
        """Idempotent: on a host already in maintenance, only what is left is done (with
        ``evacuate``: move the guests still running there; a retry after a crash relies on it)."""
        ...

    def exit_maintenance(self, host: HostRef, *, timeout: float) -> None: ...

    def maintenance_refusal(self, host: HostRef, *, evacuate: bool) -> str:
        """Why :meth:`enter_maintenance` (with ``evacuate``) would be refused on ``host`` now, found
        read-only before anything is touched; "" = nothing stands in the way (a host already in
        maintenance included). Reasons are platform facts: the rest of the cluster lacks the memory
        for the guests that must move, no other host can take them, guests run and ``evacuate`` is
        off where the platform cannot keep them, a channel the platform's maintenance needs refuses
        us. A check that could not be made raises (transient: try again)."""
        ...


class HostPatchOps(Provider, Protocol):
    """Capability.HOST_PATCH: the platform patches the host itself."""

    def patch_host(self, host: HostRef, spec: HostPatchSpec, *, timeout: float) -> HostPatchResult:
        """Install ``spec`` on ``host`` (in maintenance mode); ``build_after`` is the build reported
        when the install finished, which on ESXi is still the old one until the host reboots."""
        ...


class HostRebootOps(Provider, Protocol):
    """Capability.HOST_REBOOT: reboot and wait until the host is connected again."""

    def reboot_host(self, host: HostRef, *, timeout: float) -> None: ...


class BackupOps(Provider, Protocol):
    """Capability.BACKUP: full backups outside the VM's storage chain (:mod:`providers.backups`)."""

    def create_backup(
        self, vm: VmRef, *, ownership: BackupOwnership, target: str = "", timeout: float
    ) -> BackupInfo:
        """A full backup of ``vm`` to ``target`` ("" = the adapter's configured backup target),
        waited for (bounded by ``timeout``, the platform's job/task status checked). When a complete
        backup with the same ownership exists, it is returned and nothing is done."""
        ...

    def list_backups(self, vm: VmRef, *, target: str = "") -> list[BackupInfo]:
        """Complete backups of ``vm`` in ``target``, oldest first (any owner: check ``ownership``).
        By the VM's id: a VM that is gone may still have backups; one that never had any gets []."""
        ...

    def delete_backup(self, backup: BackupInfo, *, timeout: float) -> None:
        """Delete ``backup``; :class:`~providers.errors.NotFound` when it is gone already."""
        ...


class BackupVerifyOps(Provider, Protocol):
    """Capability.BACKUP_VERIFY: restore a backup into an isolated copy, probe it, destroy it."""

    def restore_copy(self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float) -> RestoredCopy:
        """Restore ``backup`` into a new isolated copy marked with ``ownership`` (role "restore") and
        start it. A copy with the same ownership left by an earlier attempt is removed first."""
        ...

    def list_restored_copies(self) -> list[RestoredCopy]:
        """Every copy carrying a restore ownership on this site (left-overs included)."""
        ...

    def probe_copy(
        self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float
    ) -> RestoreCheck:
        """Wait (bounded) for the copy's agent or heartbeat, then run ``probes`` through the agent.
        A copy that does not come up is a failed check (``ok=False``), not an error."""
        ...

    def destroy_copy(self, copy: RestoredCopy, *, timeout: float) -> None:
        """Stop and remove the copy; a copy that is gone already is no error. Refuses
        (:class:`~providers.errors.OperationRefused`, code ``not_ours``) anything not marked as a
        restored copy."""
        ...


#: The capabilities whose verbs one Protocol holds (what :func:`require` returns for them).
SnapshotCapability = Literal[Capability.SNAPSHOT, Capability.SNAPSHOT_MEMORY, Capability.SNAPSHOT_QUIESCE]
PowerCapability = Literal[Capability.POWER, Capability.GUEST_REBOOT]
MaintenanceCapability = Literal[Capability.HOST_MAINTENANCE, Capability.HOST_EVACUATE]


@overload
def require(provider: Provider, capability: Literal[Capability.INVENTORY]) -> Provider: ...
@overload
def require(provider: Provider, capability: SnapshotCapability) -> SnapshotOps: ...
@overload
def require(provider: Provider, capability: PowerCapability) -> PowerOps: ...
@overload
def require(provider: Provider, capability: Literal[Capability.GUEST_EXEC]) -> GuestExecOps: ...
@overload
def require(provider: Provider, capability: MaintenanceCapability) -> MaintenanceOps: ...
@overload
def require(provider: Provider, capability: Literal[Capability.HOST_PATCH]) -> HostPatchOps: ...
@overload
def require(provider: Provider, capability: Literal[Capability.HOST_REBOOT]) -> HostRebootOps: ...
@overload
def require(provider: Provider, capability: Literal[Capability.BACKUP]) -> BackupOps: ...
@overload
def require(provider: Provider, capability: Literal[Capability.BACKUP_VERIFY]) -> BackupVerifyOps: ...
@overload
def require(provider: Provider, capability: Capability) -> Provider: ...
def require(provider: Provider, capability: Capability) -> Provider:
    """``provider`` typed as the Protocol of ``capability`` if it declares it (the one check every
    caller uses; :meth:`orchestrator.context.Context.require` by site); :class:`CapabilityMissing`
    otherwise. A capability known only at run time gets the plain :class:`Provider`."""
    if capability not in provider.capabilities:
        raise CapabilityMissing(
            f"provider for site {provider.site!r} does not support {capability.value}", code="capability"
        )
    return provider
