"""The three providers a crash injection runs against, and what each one says about its real state.

Every scenario builds a fresh, small target per injection (fake Debian guests reached through the
real ``local`` channel, so a double patch shows in the guest's own upgrade log) and a
``patchwave.toml`` for it, and afterwards reads back the provider's real state: the snapshots that
carry a run's ownership, the hosts in maintenance, the hosts' builds.

* ``libvirt`` — ``qemu:///system`` with three tiny TCG domains (empty qcow2 disks), defined once per
  harness and reused: libvirtd keeps domains and snapshots outside the killed worker. The test
  driver is not used because its state lives inside the worker process (a SIGKILL would wipe the
  "hypervisor" together with the worker and there would be nothing to check); serving it from a
  separate long-lived process would need a libvirt daemon for the test driver, which libvirt does
  not provide. Our snapshots are deleted after each injection's checks.
* ``vsphere`` — our vcsim launcher (tests/simulators/vcsim), 2 hosts / 3 VMs, a fresh simulator per
  injection: hypervisor phase (maintenance with evacuation, platform patch, reboot) and guests.
* ``proxmox`` — the PVE simulator (tests/simulators/pvesim) in this process (threads: the API and one SSH
  server per node), 2 nodes / 3 VMs (one HA-managed), fresh per injection: hypervisor phase (HA node
  maintenance over SSH with evacuation, ``[hosts] patch = "ssh"``: ``apt dist-upgrade`` onto a new
  kernel over each node's own SSH port, reboot) and guests, as tests/e2e/test_proxmox_run.py runs it.
  Its host report comes from the simulator's state and event log (kernels, maintenance, apt runs).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.model import vm_step_id
from patchwave_lab.fakeguest import FakeGuest
from providers.base import SnapshotInfo, VmRef
from tests.support.tcg_domains import domain_xml
from tests.support.testbed import INSTALLED, UPGRADES, fake_guest_tables

PASSWORD_ENV = "PW_CRASH_PASSWORD"
ESX_OLD, ESX_NEW = "21930508", "23307199"
DEPOT = "https://depot.example/VMware-ESXi-7.0U3-sim-depot.zip"
#: The PVE nodes' packages (as tests/simulators/pvesim's populated cluster): the kernel package's candidate adds
#: a kernel, so each node is rebooted from PVE_OLD_KERNEL onto PVE_NEW_KERNEL.
PVE_PACKAGES = {
    "proxmox-ve": ["9.1.0", "9.1.0"],
    "pve-manager": ["9.1.3", "9.1.4"],
    "proxmox-kernel-6.14": ["6.14.8-2", "6.14.11-1"],
    "openssl": ["3.5.1-1", "3.5.1-1+deb13u1"],
}
PVE_OLD_KERNEL, PVE_NEW_KERNEL = "6.14.8-2-pve", "6.14.11-1-pve"
#: The simulator's events a Proxmox host report reads.
PVE_HOST_EVENTS = ("maintenance_enabled", "maintenance_disabled", "apt_upgrade", "node_reboot", "node_online")


class Unavailable(RuntimeError):
    """The provider's test service cannot run here (the reason says what to install)."""


@dataclass
class Target:
    """One injection's target: the config, the fake guests (by VM name) and the provider state."""

    root: Path
    site: str
    guests: dict[str, FakeGuest]
    vms: dict[str, VmRef]  # name -> ref (ids as the provider reports them)
    env: dict[str, str] = field(default_factory=dict)
    hosts: bool = False  # does the plan have a hypervisor phase

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def step_id(self, name: str) -> str:
        return vm_step_id(VmRef(self.site, self.vms[name].id, name))


class Scenario(Protocol):
    name: str

    def target(self, root: Path, port: int) -> Target: ...  # a fresh target for one injection
    def owned_snapshots(self, target: Target, run_id: str) -> dict[str, list[SnapshotInfo]]: ...
    def hosts_in_maintenance(self, target: Target) -> list[str]: ...
    def host_report(self, target: Target) -> dict[str, Any]: ...
    def release(self, target: Target) -> None: ...  # after the checks: free the target
    def close(self) -> None: ...


# ------------------------------------------------------------------------------------ config


def make_guests(root: Path, names: list[str]) -> dict[str, FakeGuest]:
    return {
        name: FakeGuest.create(root / "guests" / name, installed=INSTALLED, repo=UPGRADES) for name in names
    }


def write_config(
    target: Target, *, port: int, provider: str, hosts: str = "", guests: Mapping[str, FakeGuest]
) -> None:
    names = sorted(guests)
    host_table = hosts or '[hosts]\nenabled = false\npatch = "none"\n'
    target.config.write_text(
        f"""
[state]
dir = "{target.state}"

[temporal]
mode = "embedded"
address = "127.0.0.1:{port}"
retention = "3d"

[logging]
format = "json"
level = "info"

[providers.{target.site}]
{provider}

[targets]
names = {names!r}

[policy]
concurrency = 2
failure_budget = 0
snapshot_ttl = "2h"
default_vm_duration = "1m"
health_deadline = "5s"
patch_timeout = "2m"

{host_table}
{fake_guest_tables({name: guests[name].root for name in names})}""".replace("'", '"')
    )


def _owned(snaps: list[SnapshotInfo], run_id: str) -> list[SnapshotInfo]:
    return [s for s in snaps if s.ownership is not None and s.ownership.run_id == run_id]


# ------------------------------------------------------------------------------------ libvirt


class LibvirtScenario:
    """Three running TCG domains on qemu:///system, defined once and reused by every injection."""

    name = "libvirt"
    uri = "qemu:///system"

    def __init__(self, workdir: Path, count: int = 3) -> None:
        try:
            import libvirt
        except ImportError as exc:
            raise Unavailable("libvirt-python is not installed") from exc
        emulator, qemu_img = shutil.which("qemu-system-x86_64"), shutil.which("qemu-img")
        if not emulator or not qemu_img:
            raise Unavailable("qemu-system-x86_64 / qemu-img are not installed")
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise Unavailable(f"libvirtd does not answer on {self.uri}: {exc.get_error_message()}") from exc
        self._libvirt = libvirt
        self._domains: list[Any] = []
        tag = uuid.uuid4().hex[:6]
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            for index in range(1, count + 1):
                disk = workdir / f"crash-{tag}-{index}.qcow2"
                subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
                xml = domain_xml(f"pw-crash-{tag}-{index}", emulator, disk, memory_mib=32)
                dom = self._conn.defineXML(xml)
                self._domains.append(dom)
                dom.create()
        except BaseException:
            self.close()
            raise
        from providers.libvirt import provider as adapter

        self._provider = adapter.open_provider(adapter.parse_settings("td", {"uri": self.uri}))

    def target(self, root: Path, port: int) -> Target:
        vms = {d.name(): VmRef("td", d.UUIDString(), d.name()) for d in self._domains}
        guests = make_guests(root, sorted(vms))
        target = Target(root=root, site="td", guests=guests, vms=vms)
        write_config(target, port=port, provider=f'kind = "libvirt"\nuri = "{self.uri}"', guests=guests)
        return target

    def owned_snapshots(self, target: Target, run_id: str) -> dict[str, list[SnapshotInfo]]:
        return {n: _owned(self._provider.list_snapshots(ref), run_id) for n, ref in target.vms.items()}

    def hosts_in_maintenance(self, target: Target) -> list[str]:
        return []  # no hypervisor phase for a single libvirt host

    def host_report(self, target: Target) -> dict[str, Any]:
        return {}

    def release(self, target: Target) -> None:
        """Delete every snapshot patchwave made on the shared domains (ownership present)."""
        for ref in target.vms.values():
            for snap in self._provider.list_snapshots(ref):
                if snap.ownership is not None:
                    self._provider.delete_snapshot(ref, snap.id)

    def close(self) -> None:
        provider = getattr(self, "_provider", None)
        if provider is not None:
            provider.close()
        for dom in self._domains:
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(
                    self._libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | self._libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                )
            except self._libvirt.libvirtError:
                pass
        self._domains = []
        self._conn.close()


# ------------------------------------------------------------------------------------ vSphere


class VsphereScenario:
    """A fresh vcsim (2 hosts, 3 VMs) per injection; hypervisor phase + guests."""

    name = "vsphere"

    def __init__(self) -> None:
        from tests.simulators.vcsim.launcher import VcsimUnavailable, build

        try:
            build()
        except VcsimUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        self._sims: dict[Path, Any] = {}
        self._providers: dict[Path, Any] = {}

    def target(self, root: Path, port: int) -> Target:
        from tests.simulators.vcsim.launcher import open_vsphere, start

        sim = start("-host", "2", "-vm", "3", "-balance", "-host-reboot-ms", "300",
                    "-esx-build", ESX_OLD, "-patch-to", f"7.0.3:{ESX_NEW}")  # fmt: skip
        self._sims[root] = sim
        provider = open_vsphere(sim, site="vc")
        self._providers[root] = provider
        vms = {vm.ref.name: vm.ref for vm in provider.inventory().vms}
        guests = make_guests(root, sorted(vms))
        table = sim.provider_table()
        provider_toml = (
            f'kind = "vsphere"\nhost = "{table["host"]}"\nport = {table["port"]}\nuser = "{table["user"]}"\n'
            f'password = {{ env = "{PASSWORD_ENV}" }}\nca_file = "{table["ca_file"]}"'
        )
        hosts = (
            '[hosts]\nenabled = true\nscope = "targets"\npatch = "platform"\nreboot = "if-required"\n'
            f'evacuate = true\ndefault_duration = "5m"\ndepot_urls = ["{DEPOT}"]\n'
        )
        target = Target(
            root=root, site="vc", guests=guests, vms=vms, env={PASSWORD_ENV: sim.password}, hosts=True
        )
        write_config(target, port=port, provider=provider_toml, hosts=hosts, guests=guests)
        return target

    def owned_snapshots(self, target: Target, run_id: str) -> dict[str, list[SnapshotInfo]]:
        provider = self._providers[target.root]
        return {n: _owned(provider.list_snapshots(ref), run_id) for n, ref in target.vms.items()}

    def hosts_in_maintenance(self, target: Target) -> list[str]:
        sim = self._sims[target.root]
        from_sim = list(sim.maintenance()["in_maintenance"])
        from_hosts = [h["name"] for h in sim.hosts() if h.get("maintenance")]
        return sorted(set(from_sim) | set(from_hosts))

    def host_report(self, target: Target) -> dict[str, Any]:
        sim = self._sims[target.root]
        record = sim.maintenance()
        return {
            "builds": {h["name"]: h["build"] for h in sim.hosts()},
            "max_concurrent": record["max_concurrent"],
            "events": [(e["event"], e["host"]) for e in record["events"]],
            "expected_build": ESX_NEW,
        }

    def release(self, target: Target) -> None:
        provider = self._providers.pop(target.root, None)
        if provider is not None:
            provider.close()
        sim = self._sims.pop(target.root, None)
        if sim is not None:
            sim.stop()

    def close(self) -> None:
        for root in list(self._sims):
            self.release(Target(root=root, site="vc", guests={}, vms={}))


# ------------------------------------------------------------------------------------ Proxmox


class ProxmoxScenario:
    """A fresh PVE simulator (threads in this process) per injection: 2 nodes, 3 running VMs (web-2
    HA-managed); hypervisor phase + guests, configured as tests/e2e/test_proxmox_run.py does."""

    name = "proxmox"
    nodes = ("pve1", "pve2")

    def __init__(self) -> None:
        try:
            import proxmoxer  # noqa: F401
        except ImportError as exc:
            raise Unavailable("proxmoxer is not installed") from exc
        self._sims: dict[Path, Any] = {}
        self._providers: dict[Path, Any] = {}

    def target(self, root: Path, port: int) -> Target:
        from providers.proxmox.provider import open_provider
        from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
        from tests.simulators.pvesim.harness import FAST, settings_for

        config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
        (root / "pvesim").mkdir(parents=True, exist_ok=True)
        sim = Simulator(config, populated=False, workdir=root / "pvesim")
        for node in self.nodes:  # before start(): each node gets its own SSH server
            sim.cluster.add_node(
                node,
                kernel_running=PVE_OLD_KERNEL,
                kernels_installed=[PVE_OLD_KERNEL],
                packages={name: list(versions) for name, versions in PVE_PACKAGES.items()},
            )
        for vmid, name, node, ha in (
            (100, "web-1", "pve1", False),
            (101, "web-2", "pve2", True),
            (102, "app-1", "pve1", False),
        ):
            sim.cluster.add_guest(vmid, "qemu", name, node, ha_managed=ha)
        self._sims[root] = sim
        sim.start()
        provider = open_provider(settings_for(sim))
        self._providers[root] = provider
        vms = {vm.ref.name: vm.ref for vm in provider.inventory().vms}
        guests = make_guests(root, sorted(vms))
        key = sim.client_key(root / "id_ed25519")
        known = sim.write_known_hosts(root / "known_hosts")
        ssh = f'user = "root", host = "127.0.0.1", key_file = "{key}", known_hosts = "{known}"'
        fast = "".join(f"{k} = {v}\n" for k, v in FAST.items())
        provider_toml = (
            f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {sim.port}\nca_file = "{sim.ca_file}"\n'
            f'user = "root@pam"\npassword = {{ env = "{PASSWORD_ENV}" }}\nmaintenance = "ha"\n{fast}'
            f"ssh = {{ {ssh}, port = {sim.ssh_servers[self.nodes[0]].port} }}"
        )
        hosts = (
            '[hosts]\nenabled = true\nscope = "all"\npatch = "ssh"\nreboot = "if-required"\n'
            f'evacuate = true\ndefault_duration = "5m"\nssh = {{ {ssh} }}\n'
            + "".join(
                f'[hosts.overrides."{node}"]\nssh = {{ port = {sim.ssh_servers[node].port} }}\n'
                for node in self.nodes
            )
        )
        target = Target(
            root=root, site="pve", guests=guests, vms=vms, env={PASSWORD_ENV: ROOT_PASSWORD}, hosts=True
        )
        write_config(target, port=port, provider=provider_toml, hosts=hosts, guests=guests)
        return target

    def owned_snapshots(self, target: Target, run_id: str) -> dict[str, list[SnapshotInfo]]:
        provider = self._providers[target.root]
        return {n: _owned(provider.list_snapshots(ref), run_id) for n, ref in target.vms.items()}

    def simulator(self, target: Target) -> Any:
        """The target's :class:`tests.simulators.pvesim.Simulator` (tests that stage a crash's leftovers)."""
        return self._sims[target.root]

    def hosts_in_maintenance(self, target: Target) -> list[str]:
        """Nodes with an HA maintenance request (``ha-manager crm-command node-maintenance enable``)
        or in maintenance as the CRM reports it (``node_status`` "maintenance")."""
        cluster = self._sims[target.root].cluster
        with cluster.lock:
            cluster.tick()
            return sorted(cluster.in_maintenance())

    def host_report(self, target: Target) -> dict[str, Any]:
        """From the simulator: each node's running kernel (its "build"; PVE_OLD_KERNEL before the
        run), and from its event log the most nodes in maintenance at once (a request counts, as in
        :meth:`hosts_in_maintenance`), what each ``apt dist-upgrade`` run changed per node (the
        simulator's count of lines; 0: nothing), how often each node was rebooted (the new kernel
        needs one reboot) and every reboot of a node that was not the only one in maintenance or
        still ran guests."""
        state = self._sims[target.root].state()
        events = [e for e in state["events"] if e["kind"] in PVE_HOST_EVENTS]
        in_maintenance: set[str] = set()
        most = 0
        upgrades: dict[str, list[int]] = {node: [] for node in state["nodes"]}
        reboots = dict.fromkeys(state["nodes"], 0)
        unsafe = []
        for event in events:
            kind, node = event["kind"], event["subject"]
            if kind == "maintenance_enabled":
                in_maintenance.add(node)
                most = max(most, len(in_maintenance))
            elif kind == "maintenance_disabled":
                in_maintenance.discard(node)
            elif kind == "apt_upgrade":
                upgrades[node].append(int(event["changed"]))
            elif kind == "node_reboot":
                reboots[node] += 1
                if event["maintenance"] != [node] or event["running_guests"]:
                    unsafe.append(
                        f"{node} rebooted with nodes {event['maintenance']} in maintenance "
                        f"and guests {event['running_guests']} running on it"
                    )
        return {
            "builds": {node: s["kernel"] for node, s in state["nodes"].items()},
            "expected_build": PVE_NEW_KERNEL,
            "max_concurrent": {"lab": most},
            "events": [(e["kind"], e["subject"]) for e in events],
            "upgrades": upgrades,
            "reboots": reboots,
            "unsafe_reboots": unsafe,
        }

    def release(self, target: Target) -> None:
        provider = self._providers.pop(target.root, None)
        if provider is not None:
            provider.close()
        sim = self._sims.pop(target.root, None)
        if sim is not None:
            sim.stop()

    def close(self) -> None:
        for root in list(self._sims):
            self.release(Target(root=root, site="pve", guests={}, vms={}))


FACTORIES = {"libvirt": LibvirtScenario, "vsphere": VsphereScenario, "proxmox": ProxmoxScenario}


@contextmanager
def opened(name: str, workdir: Path) -> Iterator[Scenario]:
    scenario: Scenario = LibvirtScenario(workdir) if name == "libvirt" else FACTORIES[name]()
    try:
        yield scenario
    finally:
        scenario.close()
