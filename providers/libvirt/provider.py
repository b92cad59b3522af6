"""libvirt adapter: one libvirt connection (``qemu:///system``, ``qemu+ssh://...``, ``test:///default``).

Modules (the adapter family; this module re-exports their public names)
    :mod:`providers.libvirt` -- :class:`LibvirtProvider` and :func:`open_provider`;
    :mod:`providers.libvirt.settings` -- settings, validated without importing libvirt;
    :mod:`providers.libvirt.connection` -- the shared connection, calls on it, ``translate_error``;
    :mod:`providers.libvirt.inventory` -- host and domain infos, agent readiness;
    :mod:`providers.libvirt.xml` -- tag metadata and snapshot XML (pure);
    :mod:`providers.libvirt.snapshots` -- internal qcow2 snapshots;
    :mod:`providers.libvirt.power` -- power verbs;
    :mod:`providers.libvirt.agent` -- qemu-ga: ping, addresses, ``guest-exec``.

Model
    One connection is one host (``HostRef.id`` = the canonical URI); VMs are domains, by UUID.

Capabilities
    INVENTORY, POWER, GUEST_REBOOT, SNAPSHOT, SNAPSHOT_MEMORY (a snapshot of a running domain is
    always a checkpoint); GUEST_EXEC on the QEMU driver only, and a domain without a qemu-ga
    channel lists it in ``VmInfo.unsupported``. ``quiesce`` is refused (``CapabilityMissing``).
    BACKUP + BACKUP_VERIFY on the QEMU driver with a local ``backup_dir``
    (:mod:`providers.libvirt.backups`; the test driver has no backup job).

Threads, retries, errors
    libvirt connections are thread-safe, so activities share one connection. Read-only calls are
    retried under the named ``API_CALL`` policy; state-changing calls are not. ``libvirtError`` is
    translated by error code and error domain (never message text) into ``providers.base`` errors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import structlog

from providers.backups import BackupVerbs
from providers.base import Capability, ExecResult, HostInfo, HostRef, Inventory, SnapshotInfo, VmInfo, VmRef
from providers.errors import CapabilityMissing, NotFound, SdkMissing
from providers.guest_environment import GUEST_PATH
from providers.libvirt.agent import KILL_TREE, GuestAgent
from providers.libvirt.backups import LibvirtBackups
from providers.libvirt.connection import Connection, LibvirtSession, alive, translate_error
from providers.libvirt.inventory import InventoryReader
from providers.libvirt.power import DomainPower
from providers.libvirt.settings import (
    DEFAULT_TAG_NAMESPACE,
    SUPPORTED_DRIVERS,
    SUPPORTED_TRANSPORTS,
    LibvirtSettings,
    parse_settings,
)
from providers.libvirt.snapshots import DomainSnapshots
from providers.libvirt.xml import (
    AGENT_CHANNEL,
    LIBOSINFO_NS,
    TAG_PREFIX,
    agent_channel_state,
    decode_version,
    guest_os,
    parse_snapshot,
    parse_tags,
    snapshot_state,
    snapshot_xml,
    tags_xml,
)
from providers.timing import API_CALL, SYSTEM_CLOCK, Clock

__all__ = [
    "AGENT_CHANNEL",
    "DEFAULT_TAG_NAMESPACE",
    "GUEST_PATH",
    "KILL_TREE",
    "LIBOSINFO_NS",
    "SUPPORTED_DRIVERS",
    "SUPPORTED_TRANSPORTS",
    "TAG_PREFIX",
    "Connection",
    "LibvirtProvider",
    "LibvirtSettings",
    "agent_channel_state",
    "alive",
    "decode_version",
    "guest_os",
    "open_provider",
    "parse_settings",
    "parse_snapshot",
    "parse_tags",
    "snapshot_state",
    "snapshot_xml",
    "tags_xml",
    "translate_error",
]

log = structlog.get_logger("patchwave.providers.libvirt")

T = TypeVar("T")


class LibvirtProvider(BackupVerbs):
    """Provider + SnapshotOps + PowerOps + GuestExecOps over one libvirt connection."""

    def __init__(self, settings: LibvirtSettings, libvirt: Any, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.site = settings.site
        self.settings = settings
        self._lv = libvirt
        self._clock = clock
        self._connection = Connection(
            libvirt, settings.uri, timeout=settings.connect_timeout, site=settings.site
        )
        self._session = LibvirtSession(libvirt, self._connection, site=settings.site, clock=clock)
        conn = API_CALL.call(self._connection.get, clock)
        self._driver = self._session.call(conn, "getType", settings.uri, lambda c: c.getType())
        self.capabilities = frozenset(
            {
                Capability.INVENTORY,
                Capability.POWER,
                Capability.GUEST_REBOOT,
                Capability.SNAPSHOT,
                Capability.SNAPSHOT_MEMORY,
            }
            | ({Capability.GUEST_EXEC} if self._driver == "QEMU" else set())
            | (  # the backup job, qemu-img and the checksums need QEMU and a local backup_dir
                {Capability.BACKUP, Capability.BACKUP_VERIFY}
                if self._driver == "QEMU" and settings.backup_dir
                else set()
            )
        )
        self._agent = GuestAgent(self._session, timeout=settings.agent_timeout)
        self._infos = InventoryReader(
            libvirt,
            settings,
            driver=self._driver,
            capabilities=self.capabilities,
            agent=self._agent,
            ping=self._ping,
        )
        self._snapshots = DomainSnapshots(self._session)
        self._backups = LibvirtBackups(self._session, self._agent, settings)  # providers.libvirt.backups
        self._power = DomainPower(self._session, driver=self._driver, ping=self._ping)

    # ------------------------------------------------------------------ plumbing

    def _read(self, what: str, target: str, fn: Callable[[Any], T]) -> T:
        """A read-only call on the connection (retried under API_CALL, errors translated)."""
        return self._session.read(what, target, fn)

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise CapabilityMissing(
                f"the {self._driver} driver does not support {capability.value}",
                target=self.settings.uri,
                code="capability",
            )

    def _ping(self, dom: Any) -> bool:
        """True when qemu-ga answers ``guest-ping`` within ``agent_timeout``; never raises for agent trouble."""
        return Capability.GUEST_EXEC in self.capabilities and self._agent.ping(dom)

    # ------------------------------------------------------------------ inventory

    def inventory(self) -> Inventory:
        def collect(conn: Any) -> Inventory:
            host = self._infos.host(conn)
            vms = []
            for dom in conn.listAllDomains(0):
                try:
                    vms.append(self._infos.vm(dom, host.ref, probe_agent=False))
                except self._lv.libvirtError as exc:
                    if exc.get_error_code() != self._lv.VIR_ERR_NO_DOMAIN:  # vanished while listing
                        raise
            return Inventory(site=self.site, hosts=(host,), vms=tuple(vms))

        return self._read("inventory", self.settings.uri, collect)

    def get_vm(self, vm: VmRef) -> VmInfo:
        def lookup(conn: Any) -> VmInfo:
            return self._infos.vm(
                self._session.domain(conn, vm), self._infos.host_ref(conn), probe_agent=True
            )

        return self._read("get_vm", str(vm), lookup)

    def get_host(self, host: HostRef) -> HostInfo:
        def lookup(conn: Any) -> HostInfo:
            info = self._infos.host(conn)
            if (host.site, host.id) != (info.ref.site, info.ref.id):
                raise NotFound(
                    f"this connection's host is {info.ref.id!r}", target=str(host), code="not_found"
                )
            return info

        return self._read("get_host", str(host), lookup)

    def close(self) -> None:
        self._connection.close()

    def write_tags(
        self, vm: VmRef, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None
    ) -> None:
        """Replace the VM's patchwave tags/labels metadata (live and persistent config). Not in the Protocol."""
        labels = dict(labels or {})

        def write(dom: Any) -> None:
            flags = (self._lv.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0) | (
                self._lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
            )
            xml = tags_xml(tags, labels) if tags or labels else None
            dom.setMetadata(
                self._lv.VIR_DOMAIN_METADATA_ELEMENT,
                xml,
                TAG_PREFIX if xml else None,
                self.settings.tag_namespace,
                flags,
            )

        self._session.write_domain("write_tags", vm, write)
        log.info("vm_tags_written", site=self.site, vm=vm.name, tags=list(tags), labels=labels)

    # ------------------------------------------------------------------ snapshots

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        return self._snapshots.list(vm)

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        """An internal snapshot; ``has_memory`` of the result is authoritative (see libvirt_snapshots)."""
        if quiesce:
            self._require(Capability.SNAPSHOT_QUIESCE)
        if memory:
            self._require(Capability.SNAPSHOT_MEMORY)
        return self._snapshots.create(vm, name, description)

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        self._snapshots.revert(vm, snapshot_id)

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        self._snapshots.delete(vm, snapshot_id)

    # ------------------------------------------------------------------ power

    def power_on(self, vm: VmRef) -> None:
        """Start a stopped (or managed-saved) domain, resume a paused one; no-op when running."""
        self._power.power_on(vm)

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        """Graceful shutdown (agent when it answers, else ACPI), waiting until the domain is off."""
        self._power.shutdown(vm, timeout=timeout)

    def power_off(self, vm: VmRef) -> None:
        """Hard power off (``virDomainDestroy``); no-op when the domain is not running."""
        self._power.power_off(vm)

    def reboot_guest(self, vm: VmRef) -> None:
        """Ask the guest to reboot (agent, else ACPI); returns once requested, does not wait."""
        self._power.reboot_guest(vm)

    # ------------------------------------------------------------------ guest agent

    def guest_ping(self, vm: VmRef) -> bool:
        self._require(Capability.GUEST_EXEC)
        return self._session.read_domain("guest_ping", vm, self._ping)

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` through qemu-ga ``guest-exec`` and wait (bounded) for it to exit."""
        self._require(Capability.GUEST_EXEC)
        return self._agent.run(vm, argv, timeout=timeout, env=env, stdin=stdin)


# ============================================================================================
# Entry point
# ============================================================================================

_handler_lock = threading.Lock()
_handler_registered = False


def _silence_libvirt_stderr(libvirt: Any) -> None:
    """libvirt prints every error (e.g. each agent poll while the agent boots) to stderr unless a
    handler is registered (GUEST-LAB pitfall 14). Errors still raise ``libvirtError``; the handler is
    process-wide, registered once."""
    global _handler_registered
    with _handler_lock:
        if not _handler_registered:
            libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
            _handler_registered = True


def open_provider(settings: LibvirtSettings, *, clock: Clock = SYSTEM_CLOCK) -> LibvirtProvider:
    """Connect to ``settings.uri``; libvirt-python is imported here, not at module import."""
    try:
        import libvirt
    except ImportError as exc:
        raise SdkMissing(
            "the libvirt provider needs libvirt-python: pip install 'patchwave[libvirt]'", code="sdk_missing"
        ) from exc
    _silence_libvirt_stderr(libvirt)
    provider = LibvirtProvider(settings, libvirt, clock=clock)
    log.info("provider_connected", site=settings.site, uri=settings.uri, driver=provider._driver)
    return provider
