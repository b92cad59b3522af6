"""Inventory mapping and thread safety of the Proxmox adapter, against the PVE simulator."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from providers.base import HostState, PowerState, VmRef
from providers.proxmox.provider import ProxmoxProvider, open_provider
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02), ssh=False) as simulator:
        yield simulator


@pytest.fixture
def provider(sim: Simulator) -> Iterator[ProxmoxProvider]:
    opened = open_provider(settings_for(sim))
    yield opened
    opened.close()


def test_inventory_maps_cluster_resources(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject("stale_lock", vmid=103, lock="backup")
    inventory = provider.inventory()
    vms = {v.ref.id: v for v in inventory.vms}
    assert set(vms) == {"qemu/100", "qemu/101", "lxc/102", "qemu/103", "qemu/104"}, "templates are not guests"
    web = vms["qemu/100"]
    assert (web.ref.name, web.kind, web.power, web.tags) == (
        "web-1",
        "vm",
        PowerState.RUNNING,
        ("web", "ring-canary"),
    )
    assert dict(web.labels) == {"pve.vmid": "100", "pve.type": "qemu", "pve.node": "pve1"}
    assert web.agent_ready and web.ip_addresses == ("10.20.0.100",)  # loopback and link-local dropped
    assert vms["qemu/101"].labels["pve.hastate"] == "started"
    assert (vms["lxc/102"].kind, vms["lxc/102"].agent_ready) == ("container", False)
    assert vms["qemu/103"].locked == "backup"
    assert (vms["qemu/104"].power, vms["qemu/104"].agent_ready) == (PowerState.STOPPED, False)
    hosts = {h.ref.id: h for h in inventory.hosts}
    assert set(hosts) == {"pve1", "pve2", "pve3"}
    pve1 = hosts["pve1"]
    assert (pve1.state, pve1.failure_domain, pve1.running_vms) == (HostState.CONNECTED, "lab", 2)
    assert pve1.version.startswith("pve-manager/9.1") and pve1.build == "6.14.8-2-pve" and pve1.boot_time


def test_offline_node_is_disconnected(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.cluster.nodes["pve3"].online = False  # crashed: its guests still look "running" cluster-wide
    inventory = provider.inventory()
    pve3 = next(h for h in inventory.hosts if h.ref.id == "pve3")
    assert (pve3.state, pve3.version, pve3.boot_time) == (HostState.DISCONNECTED, "", "")
    app = next(v for v in inventory.vms if v.ref.id == "qemu/103")
    assert (app.power, app.agent_ready) == (PowerState.UNKNOWN, False)


def test_one_provider_serves_many_threads(sim: Simulator, provider: ProxmoxProvider) -> None:
    vms = [VmRef("pve", "qemu/100", "web-1"), VmRef("pve", "qemu/103", "app-1")] * 3

    def work(vm: VmRef) -> str:
        provider.get_vm(vm)
        return provider.guest_exec(vm, ["hostname"], timeout=10).stdout

    with ThreadPoolExecutor(max_workers=3) as pool:
        outputs = list(pool.map(work, vms))
    assert outputs == ["web-1\n", "app-1\n"] * 3
    assert 2 <= sim.auth.logins <= 4  # one client (and one login) per thread, not per call
