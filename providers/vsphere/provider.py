"""The vSphere Provider: inventory, snapshots, power, maintenance mode, host patching and reboot.

Snapshot verbs are in :mod:`providers.vsphere.snapshots`, guest operations in
:mod:`providers.vsphere.guest`, host patching in :mod:`providers.vsphere.patch`.

Every verb checks reality first and does only what is missing (activities are delivered at least
once), waits through the PropertyCollector with a deadline, and raises translated ProviderErrors.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from pyVmomi import vim

from providers.backups import BackupVerbs
from providers.base import (
    Capability,
    ExecResult,
    HostInfo,
    HostPatchResult,
    HostPatchSpec,
    HostRef,
    Inventory,
    PowerState,
    SnapshotInfo,
    VmInfo,
    VmRef,
)
from providers.errors import CapabilityMissing, NotFound, OperationRefused
from providers.timing import SYSTEM_CLOCK, Clock
from providers.vsphere.backups import VmBackups
from providers.vsphere.guest import GuestOperations
from providers.vsphere.inventory import (
    HOST_PATHS,
    VM_PATHS,
    Snapshot,
    evacuation_refusal,
    find_by_name,
    host_info,
    read_host,
    read_inventory,
    read_one,
    runs_on,
    vm_info,
    vm_power,
)
from providers.vsphere.session import Session
from providers.vsphere.settings import VsphereSettings
from providers.vsphere.snapshots import VmSnapshots
from providers.vsphere.tasks import run_task, watch

log = structlog.get_logger("patchwave.providers.vsphere")

BASE_CAPABILITIES = frozenset(
    {
        Capability.INVENTORY, Capability.POWER, Capability.GUEST_REBOOT, Capability.SNAPSHOT,
        Capability.SNAPSHOT_MEMORY, Capability.SNAPSHOT_QUIESCE, Capability.HOST_MAINTENANCE,
        Capability.HOST_EVACUATE, Capability.HOST_PATCH, Capability.HOST_REBOOT,
    }
)  # fmt: skip
EVACUATION_OVERCOMMIT = 1.5  # configured VM memory may exceed physical memory by this factor


class VsphereProvider(BackupVerbs):
    """A vCenter site. Safe to share between threads."""

    def __init__(self, settings: VsphereSettings, session: Session) -> None:
        self.settings = settings
        self.site = settings.site
        self.session = session
        self.guest = GuestOperations(session) if settings.guest_credentials else None
        self.capabilities = BASE_CAPABILITIES | ({Capability.GUEST_EXEC} if self.guest else frozenset())
        if settings.backup_folder:  # BACKUP verbs: providers.vsphere.backups (clone-as-template)
            self.capabilities |= {Capability.BACKUP, Capability.BACKUP_VERIFY}
        self._backups = VmBackups(session, settings, resolve=self._vm, guest=self.guest)
        self._lock = threading.Lock()
        self._root: Any = None
        self._host_names: dict[str, str] = {}
        self._fields: dict[int, str] = {}
        self._snapshots = VmSnapshots(
            session, site=self.site, task_timeout=settings.task_timeout, resolve=self._vm
        )

    @classmethod
    def connect(cls, settings: VsphereSettings, *, clock: Clock = SYSTEM_CLOCK) -> VsphereProvider:
        return cls(settings, Session(settings, clock=clock).open())

    def close(self) -> None:
        self.session.close()

    # -- inventory ----------------------------------------------------------------------------

    def _scope(self) -> Any:
        """The container inventory is read from: the root folder or the configured datacenter."""
        with self._lock:
            if self._root is None:
                root = self.session.content.rootFolder
                if self.settings.datacenter:
                    root = find_by_name(self.session, root, vim.Datacenter, self.settings.datacenter)
                self._root = root
            return self._root

    def _snapshot(self) -> Snapshot:
        snap = read_inventory(self.session, self._scope())
        if self.settings.cluster:
            ids = {m for m, c in snap.clusters.items() if c.get("name") == self.settings.cluster}
            if not ids:
                raise NotFound(
                    f"no cluster named {self.settings.cluster!r}", target=self.site, code="not_found"
                )
            hosts = {m: p for m, p in snap.hosts.items() if getattr(p.get("parent"), "_moId", None) in ids}
            vms = {
                m: p for m, p in snap.vms.items() if getattr(p.get("runtime.host"), "_moId", None) in hosts
            }
            snap = Snapshot(
                hosts=hosts, vms=vms, clusters={m: snap.clusters[m] for m in ids}, fields=snap.fields
            )
        with self._lock:
            self._host_names.update({m: str(p.get("name", m)) for m, p in snap.hosts.items()})
            self._fields.update(snap.fields)
        return snap

    def inventory(self) -> Inventory:
        snap = self._snapshot()
        running: dict[str, int] = {}
        vms = []
        for moref, props in sorted(snap.vms.items(), key=lambda kv: str(kv[1].get("name"))):
            if props.get("config.template"):
                continue
            info = vm_info(self.site, moref, props, self._host_names, snap.fields, self.settings.tags_field,
                           self.capabilities)  # fmt: skip
            if info.host is not None and info.power is PowerState.RUNNING:
                running[info.host.id] = running.get(info.host.id, 0) + 1
            vms.append(info)
        hosts = tuple(
            host_info(self.site, m, p, snap, self.settings.tags_field, running.get(m, 0))
            for m, p in sorted(snap.hosts.items(), key=lambda kv: str(kv[1].get("name")))
        )
        return Inventory(site=self.site, hosts=hosts, vms=tuple(vms))

    def get_vm(self, vm: VmRef) -> VmInfo:
        props = read_one(self.session, self._vm(vm), VM_PATHS, target=str(vm))
        host = props.get("runtime.host")
        if host is not None and host._moId not in self._host_names:
            name = read_one(self.session, host, ["name"], target=str(vm)).get("name", host._moId)
            with self._lock:
                self._host_names[host._moId] = str(name)
        if any(int(v.key) not in self._fields for v in props.get("customValue") or ()):
            self._snapshot()  # refreshes custom field names
        return vm_info(self.site, vm.id, props, self._host_names, self._fields, self.settings.tags_field,
                       self.capabilities)  # fmt: skip

    def get_host(self, host: HostRef) -> HostInfo:
        snap = read_host(self.session, self._host(host), target=str(host))
        props = snap.hosts[host.id]
        if any(int(v.key) not in self._fields for v in props.get("customValue") or ()):
            self._snapshot()  # refreshes custom field names
        snap = Snapshot(hosts=snap.hosts, vms=snap.vms, clusters=snap.clusters, fields=self._fields)
        running = sum(1 for p in snap.vms.values() if runs_on(p, host.id))
        return host_info(self.site, host.id, props, snap, self.settings.tags_field, running)

    def _cluster_of(self, host: HostRef) -> Snapshot:
        """The host's cluster (or the host alone) as raw inventory: for get_host and capacity checks."""
        self._check_site(host.site, str(host))
        snap = self._snapshot()
        if host.id not in snap.hosts:
            raise NotFound(f"host {host} not found", target=str(host), code="not_found")
        domain = getattr(snap.hosts[host.id].get("parent"), "_moId", None)
        hosts = {m: p for m, p in snap.hosts.items() if getattr(p.get("parent"), "_moId", None) == domain}
        vms = {m: p for m, p in snap.vms.items() if getattr(p.get("runtime.host"), "_moId", None) in hosts}
        return Snapshot(hosts=hosts, vms=vms, clusters=snap.clusters, fields=snap.fields)

    # -- references ---------------------------------------------------------------------------

    def _check_site(self, site: str, what: str) -> None:
        if site != self.site:
            raise NotFound(
                f"{what} belongs to site {site!r}, not {self.site!r}", target=what, code="wrong_site"
            )

    def _vm(self, vm: VmRef) -> Any:
        self._check_site(vm.site, str(vm))
        return self.session.mo(vim.VirtualMachine, vm.id)

    def _host(self, host: HostRef) -> Any:
        self._check_site(host.site, str(host))
        return self.session.mo(vim.HostSystem, host.id)

    def _task(self, start: Any, *, what: str, target: str, timeout: float | None = None) -> Any:
        timeout = timeout or self.settings.task_timeout
        return run_task(self.session, start, timeout=timeout, what=what, target=target)

    # -- snapshots (providers.vsphere.snapshots) ---------------------------------------------

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        return self._snapshots.list(vm)

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        return self._snapshots.create(vm, name, description, memory=memory, quiesce=quiesce)

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        """Revert to the snapshot's state: a snapshot without memory leaves the VM powered off (as
        vSphere does), a memory snapshot of a running VM leaves it running."""
        self._snapshots.revert(vm, snapshot_id)

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        self._snapshots.delete(vm, snapshot_id)

    # -- power --------------------------------------------------------------------------------

    def _power(self, vm: VmRef) -> tuple[PowerState, bool]:
        props = read_one(self.session, self._vm(vm), VM_PATHS, target=str(vm))
        return vm_power(props), props.get("guest.toolsRunningStatus") == "guestToolsRunning"

    def power_on(self, vm: VmRef) -> None:
        if self._power(vm)[0] is PowerState.RUNNING:
            return
        mo = self._vm(vm)
        self._task(lambda: mo.PowerOnVM_Task(), what="power on", target=str(vm))

    def power_off(self, vm: VmRef) -> None:
        if self._power(vm)[0] is PowerState.STOPPED:
            return
        mo = self._vm(vm)
        self._task(lambda: mo.PowerOffVM_Task(), what="power off", target=str(vm))

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        """Guest shutdown through VMware Tools, then wait until powered off. Without running tools:
        ``guest_fallback = "hard"`` powers off, ``"none"`` refuses (code ``tools_unavailable``)."""
        power, tools = self._power(vm)
        if power is PowerState.STOPPED:
            return
        if not tools:
            self._fallback(vm, "shutdown")
            self.power_off(vm)
            return
        mo = self._vm(vm)
        self.session.call(lambda c: mo.ShutdownGuest(), target=str(vm))
        watch(
            self.session, mo, ["runtime.powerState"], lambda p: p.get("runtime.powerState") == "poweredOff",
            timeout=timeout, what="guest shutdown", target=str(vm),
        )  # fmt: skip

    def reboot_guest(self, vm: VmRef) -> None:
        """RebootGuest through VMware Tools; returns once the guest was asked to reboot. Without
        running tools: ``guest_fallback = "hard"`` resets the VM, ``"none"`` refuses."""
        power, tools = self._power(vm)
        if power is not PowerState.RUNNING:
            raise OperationRefused(
                f"{vm} is {power.value}, not running", target=str(vm), code="invalid_power_state"
            )
        mo = self._vm(vm)
        if not tools:
            self._fallback(vm, "reboot")
            self._task(lambda: mo.ResetVM_Task(), what="reset", target=str(vm))
            return
        self.session.call(lambda c: mo.RebootGuest(), target=str(vm))

    def _fallback(self, vm: VmRef, verb: str) -> None:
        if self.settings.guest_fallback != "hard":
            raise OperationRefused(
                f"VMware Tools are not running in {vm}; cannot {verb} the guest gracefully "
                '(set guest_fallback = "hard" to allow a hard power operation)',
                target=str(vm),
                code="tools_unavailable",
            )
        log.warning("guest_fallback_hard", site=self.site, vm=vm.name, verb=verb)

    # -- guest exec ---------------------------------------------------------------------------

    def _guest(self) -> GuestOperations:
        if self.guest is None:
            raise CapabilityMissing(
                f"site {self.site!r} has no guest credentials (guest_user/guest_password)", code="capability"
            )
        return self.guest

    def guest_ping(self, vm: VmRef) -> bool:
        return self._guest().ping(self._vm(vm), target=str(vm))

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        return self._guest().run(self._vm(vm), argv, timeout=timeout, env=env, stdin=stdin, target=str(vm))

    # -- hosts --------------------------------------------------------------------------------

    def enter_maintenance(self, host: HostRef, *, evacuate: bool, timeout: float) -> None:
        """Enter maintenance mode. With ``evacuate``, refuse up front when the rest of the cluster
        cannot take the host's powered-on VMs; afterwards verify that none is left running on it."""
        snap = self._cluster_of(host)
        props = snap.hosts[host.id]
        if props.get("runtime.inMaintenanceMode"):
            return
        running = [p for p in snap.vms.values() if runs_on(p, host.id)]
        if not evacuate and running:
            raise OperationRefused(
                f"{len(running)} powered-on VMs on {host} and evacuate=False",
                target=str(host),
                code="vms_running",
            )
        refusal = evacuation_refusal(host.id, snap, overcommit=EVACUATION_OVERCOMMIT) if evacuate else ""
        if refusal:
            raise OperationRefused(
                f"cannot evacuate {host}: {refusal}", target=str(host), code="evacuation_impossible"
            )
        mo = self._host(host)
        self._task(
            lambda: mo.EnterMaintenanceMode_Task(timeout=int(timeout), evacuatePoweredOffVms=False),
            what="enter maintenance mode", target=str(host), timeout=timeout,
        )  # fmt: skip
        left = [p.get("name") for p in self._cluster_of(host).vms.values() if runs_on(p, host.id)]
        if left:
            raise OperationRefused(
                f"{host} is in maintenance mode but {len(left)} VMs still run on it: {', '.join(map(str, left[:5]))}",
                target=str(host),
                code="evacuation_incomplete",
            )
        log.info("host_maintenance_entered", site=self.site, host=host.name, evacuated=len(running))

    def maintenance_refusal(self, host: HostRef, *, evacuate: bool) -> str:
        """What :meth:`enter_maintenance` would refuse, read-only: powered-on VMs with ``evacuate`` off,
        or the rest of the cluster cannot take them (:func:`evacuation_refusal`)."""
        snap = self._cluster_of(host)
        if snap.hosts[host.id].get("runtime.inMaintenanceMode"):
            return ""
        running = [p for p in snap.vms.values() if runs_on(p, host.id)]
        if not evacuate:
            return f"{len(running)} powered-on VMs on {host} and evacuate is off" if running else ""
        refusal = evacuation_refusal(host.id, snap, overcommit=EVACUATION_OVERCOMMIT)
        return f"cannot evacuate {host}: {refusal}" if refusal else ""

    def exit_maintenance(self, host: HostRef, *, timeout: float) -> None:
        mo = self._host(host)
        if not read_one(self.session, mo, ["runtime.inMaintenanceMode"], target=str(host)).get(
            "runtime.inMaintenanceMode"
        ):
            return
        self._task(
            lambda: mo.ExitMaintenanceMode_Task(timeout=int(timeout)),
            what="exit maintenance mode", target=str(host), timeout=timeout,
        )  # fmt: skip
        log.info("host_maintenance_exited", site=self.site, host=host.name)

    def patch_host(self, host: HostRef, spec: HostPatchSpec, *, timeout: float) -> HostPatchResult:
        """Scan, stage (where the host supports it) and install through the host's HostPatchManager.
        ``depot_urls`` ending in .zip are offline bundles, others depot metadata (index.xml) URLs."""
        from providers.vsphere.patch import patch_host

        return patch_host(self.session, self._host(host), spec, timeout=timeout, target=str(host))

    def reboot_host(self, host: HostRef, *, timeout: float) -> None:
        """RebootHost_Task (host must be in maintenance mode), then wait until the host is connected
        again with a new boot time."""
        mo = self._host(host)
        deadline = self.session.clock.monotonic() + timeout
        props = read_one(self.session, mo, HOST_PATHS, target=str(host))
        if not props.get("runtime.inMaintenanceMode"):
            raise OperationRefused(
                f"{host} is not in maintenance mode", target=str(host), code="not_in_maintenance"
            )
        booted = props.get("runtime.bootTime")
        self._task(
            lambda: mo.RebootHost_Task(force=False), what="host reboot", target=str(host), timeout=timeout
        )
        watch(
            self.session, mo, ["runtime.connectionState", "runtime.bootTime"],
            lambda p: p.get("runtime.connectionState") == "connected" and p.get("runtime.bootTime") not in (None, booted),
            timeout=max(1.0, deadline - self.session.clock.monotonic()), what="host to reconnect after reboot",
            target=str(host),
        )  # fmt: skip
        log.info("host_rebooted", site=self.site, host=host.name)


def open_provider(settings: VsphereSettings, **kwargs: Any) -> VsphereProvider:
    """Connect to vCenter. ``kwargs``: ``clock`` for tests."""
    return VsphereProvider.connect(settings, **kwargs)
