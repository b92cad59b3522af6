"""A fleet of thousands of VMs over sites and hosts, and the provider that serves one site of it.

:class:`ScaleFleet` holds the platform side: every site's hosts and VMs (power, snapshots) and each
VM's :class:`~tests.simulators.scalesim.guest.ScaleGuest`. :class:`ScaleProvider` implements the
provider contract (:mod:`providers.base`, :mod:`providers.capabilities`) for one site, in process:
tasks are instant (optionally a fixed snapshot time), the guest agent answers at once, a reboot is a
new boot id. Nothing goes over a network, so what a run through it costs is the orchestration's own
cost (Temporal, the workers, the fact store, the guest layer's parsers) — what the scale benchmark
measures. The platform adapters' own cost at scale is the contract suite's and the simulators'
(pvesim, vcsim) business.

Thread-safe for the engine's use: activities of one VM run one after another; every mutation of
shared state holds the fleet's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from providers.base import (
    Capability,
    ExecResult,
    HostInfo,
    HostPatchResult,
    HostPatchSpec,
    HostRef,
    HostState,
    Inventory,
    PowerState,
    SnapshotInfo,
    VmInfo,
    VmRef,
)
from providers.errors import NotFound, OperationRefused
from tests.simulators.scalesim.guest import GuestState, GuestTimes, ScaleGuest

CAPABILITIES = frozenset({
    Capability.INVENTORY, Capability.POWER, Capability.GUEST_REBOOT, Capability.SNAPSHOT, Capability.GUEST_EXEC,
    Capability.HOST_MAINTENANCE, Capability.HOST_PATCH, Capability.HOST_REBOOT,
})  # fmt: skip


@dataclass(frozen=True)
class FleetShape:
    """``vms`` VMs spread evenly over ``sites`` sites of ``hosts_per_site`` hosts each. Every
    ``kernel_every``-th VM gets a kernel update (and a reboot; 0 = none); the VMs named in
    ``broken`` fail their health check after the upgrade (rolled back). ``canary``: the first VMs
    of each site tagged ``ring-canary``."""

    vms: int
    sites: int = 1
    hosts_per_site: int = 4
    kernel_every: int = 10
    broken: frozenset[str] = frozenset()
    canary: int = 0
    times: GuestTimes = field(default_factory=GuestTimes)
    snapshot_s: float = 0.0


def site_name(index: int) -> str:
    return f"s{index}"


def vm_name(site: str, index: int) -> str:
    return f"{site}-vm-{index:05d}"


@dataclass
class _Host:
    ref: HostRef
    state: HostState = HostState.CONNECTED
    build: str = "100"
    boots: int = 1


@dataclass
class _Vm:
    ref: VmRef
    host: HostRef
    tags: tuple[str, ...]
    guest: ScaleGuest
    power: PowerState = PowerState.RUNNING
    snapshots: dict[str, tuple[SnapshotInfo, GuestState]] = field(default_factory=dict)


class ScaleFleet:
    def __init__(self, shape: FleetShape) -> None:
        self.shape = shape
        self.lock = threading.Lock()
        self.hosts: dict[str, dict[str, _Host]] = {}
        self.vms: dict[str, dict[str, _Vm]] = {}
        for s in range(shape.sites):
            site = site_name(s)
            hosts = [
                _Host(HostRef(site, f"{site}-host-{h:03d}", f"{site}-host-{h:03d}"))
                for h in range(shape.hosts_per_site)
            ]
            self.hosts[site] = {h.ref.id: h for h in hosts}
            count = shape.vms // shape.sites + (1 if s < shape.vms % shape.sites else 0)
            self.vms[site] = {}
            for i in range(count):
                name = vm_name(site, i)
                kernel = bool(shape.kernel_every) and i % shape.kernel_every == 0
                guest = ScaleGuest(
                    f"{site}-{i}", kernel=kernel, broken=name in shape.broken, times=shape.times
                )
                tags = ("scale", "ring-canary") if i < shape.canary else ("scale",)
                ref = VmRef(site, f"vm-{i:05d}", name)
                self.vms[site][ref.id] = _Vm(ref, hosts[i % len(hosts)].ref, tags, guest)

    @property
    def sites(self) -> list[str]:
        return list(self.vms)

    def provider(self, site: str) -> ScaleProvider:
        return ScaleProvider(self, site)

    def guests(self) -> list[ScaleGuest]:
        return [vm.guest for site in self.vms.values() for vm in site.values()]


class ScaleProvider:
    """One site of a :class:`ScaleFleet` behind the provider contract."""

    capabilities = CAPABILITIES

    def __init__(self, fleet: ScaleFleet, site: str) -> None:
        self.fleet, self.site = fleet, site
        self._vms, self._hosts = fleet.vms[site], fleet.hosts[site]

    # -- inventory ------------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        hosts = tuple(self._host_info(h) for h in self._hosts.values())
        return Inventory(site=self.site, hosts=hosts, vms=tuple(self._info(vm) for vm in self._vms.values()))

    def get_vm(self, vm: VmRef) -> VmInfo:
        return self._info(self._vm(vm))

    def get_host(self, host: HostRef) -> HostInfo:
        if host.id not in self._hosts:
            raise NotFound(f"no host {host.id}", target=str(host), code="not_found")
        return self._host_info(self._hosts[host.id])

    def close(self) -> None:
        return None

    def _vm(self, vm: VmRef) -> _Vm:
        found = self._vms.get(vm.id)
        if found is None:
            raise NotFound(f"no VM {vm.id} in site {self.site}", target=str(vm), code="not_found")
        return found

    def _info(self, vm: _Vm) -> VmInfo:
        return VmInfo(
            ref=vm.ref, power=vm.power, host=vm.host, tags=vm.tags, guest_os="Debian GNU/Linux 12 (bookworm)",
            ip_addresses=(), agent_ready=vm.power is PowerState.RUNNING,
        )  # fmt: skip

    def _host_info(self, host: _Host) -> HostInfo:
        return HostInfo(
            ref=host.ref, state=host.state, failure_domain=f"{self.site}-cluster", version="8.0",
            build=host.build, boot_time=f"2026-11-{host.boots:02d}T00:00:00+00:00",
        )  # fmt: skip

    # -- snapshots ------------------------------------------------------------------------------
    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        return [info for info, _ in self._vm(vm).snapshots.values()]

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        target = self._vm(vm)
        if self.fleet.shape.snapshot_s:
            time.sleep(self.fleet.shape.snapshot_s)
        with self.fleet.lock:
            if name in target.snapshots:
                info, _ = target.snapshots[name]
                if info.description != description:
                    raise OperationRefused(
                        f"a snapshot named {name!r} exists", target=str(vm), code="name_taken"
                    )
                return info
            info = SnapshotInfo(vm=vm, id=name, name=name, description=description)
            target.snapshots[name] = (info, target.guest.state)
            return info

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        """A disk-only snapshot: the guest's state as it was, powered off."""
        target = self._vm(vm)
        with self.fleet.lock:
            if snapshot_id not in target.snapshots:
                raise NotFound(f"no snapshot {snapshot_id}", target=str(vm), code="not_found")
            target.guest.state = target.snapshots[snapshot_id][1]
            target.power = PowerState.STOPPED

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        with self.fleet.lock:
            self._vm(vm).snapshots.pop(snapshot_id, None)

    # -- power ----------------------------------------------------------------------------------
    def power_on(self, vm: VmRef) -> None:
        target = self._vm(vm)
        if target.power is not PowerState.RUNNING:
            target.guest.boot()
            target.power = PowerState.RUNNING

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        self._vm(vm).power = PowerState.STOPPED

    def power_off(self, vm: VmRef) -> None:
        self._vm(vm).power = PowerState.STOPPED

    def reboot_guest(self, vm: VmRef) -> None:
        target = self._vm(vm)
        if target.power is not PowerState.RUNNING:
            raise OperationRefused("guest is not running", target=str(vm), code="not_running")
        target.guest.boot()

    # -- guest agent ----------------------------------------------------------------------------
    def guest_ping(self, vm: VmRef) -> bool:
        return self._vm(vm).power is PowerState.RUNNING

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        target = self._vm(vm)
        if target.power is not PowerState.RUNNING:
            raise OperationRefused("guest is not running", target=str(vm), code="not_running")
        if list(argv[:2]) != ["/bin/sh", "-c"] or len(argv) != 3:
            return ExecResult(127, "", f"scale guest: only /bin/sh -c COMMAND, not {list(argv)!r}\n")
        code, out, err = target.guest.run(argv[2])
        return ExecResult(code, out, err)

    # -- hosts ----------------------------------------------------------------------------------
    def maintenance_refusal(self, host: HostRef, *, evacuate: bool) -> str:
        """The scale fleet's hosts have room for any evacuation (capacity is not what it measures)."""
        return "" if host.id in self._hosts else f"no host {host}"

    def enter_maintenance(self, host: HostRef, *, evacuate: bool, timeout: float) -> None:
        self._hosts[host.id].state = HostState.MAINTENANCE

    def exit_maintenance(self, host: HostRef, *, timeout: float) -> None:
        self._hosts[host.id].state = HostState.CONNECTED

    def patch_host(self, host: HostRef, spec: HostPatchSpec, *, timeout: float) -> HostPatchResult:
        target = self._hosts[host.id]
        before, target.build = target.build, "101"
        return HostPatchResult(changed=before != target.build, reboot_required=before != target.build,
                               build_before=before, build_after=target.build)  # fmt: skip

    def reboot_host(self, host: HostRef, *, timeout: float) -> None:
        self._hosts[host.id].boots += 1
