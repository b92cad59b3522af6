"""Rolling node maintenance and reboots through the Proxmox adapter, against the PVE simulator.

HA mode drives ``ha-manager crm-command node-maintenance`` over real SSH (paramiko, host keys
verified against a known_hosts file) into the simulator's per-node SSH servers; migrate mode uses
``POST /nodes/{node}/migrateall``. The simulator's event log is the witness of what happened when.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import Capability, HostRef, HostState, PowerState
from providers.errors import (
    CapabilityMissing,
    HostKeyRejected,
    NotFound,
    OperationRefused,
    ProviderTimeout,
)
from providers.proxmox.node_shell import NodeShell
from providers.proxmox.provider import ProxmoxProvider, open_provider
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
    with Simulator(config) as simulator:
        yield simulator


def open_for(sim: Simulator, tmp_path: Path, maintenance: str, **kw: object) -> ProxmoxProvider:
    return open_provider(settings_for(sim, ssh_dir=tmp_path, maintenance=maintenance, **kw))


def events(sim: Simulator, kind: str) -> list[dict[str, object]]:
    return [e for e in sim.state()["events"] if e["kind"] == kind]


def patch_over_ssh(sim: Simulator, provider: ProxmoxProvider, node: str) -> None:
    """What the orchestrator does with ``[hosts] patch = "ssh"`` (not a provider capability)."""
    ssh = dataclasses.replace(provider.settings.ssh, port=sim.ssh_servers[node].port)
    shell = NodeShell(ssh, "127.0.0.1", connect_timeout=10)
    result = shell.run("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y dist-upgrade", timeout=30)
    assert result.exit_code == 0 and "Setting up proxmox-kernel-6.14" in result.stdout


def roll(sim: Simulator, provider: ProxmoxProvider) -> list[str]:
    """What the orchestrator's hypervisor phase does, one node at a time."""
    order = []
    for host in sorted((h.ref for h in provider.inventory().hosts), key=lambda ref: ref.name):
        others = [h for h in provider.inventory().hosts if h.ref != host]
        assert all(h.state is HostState.CONNECTED for h in others), "another node is still in maintenance"
        provider.enter_maintenance(host, evacuate=True, timeout=10)
        assert provider.get_host(host).state is HostState.MAINTENANCE
        running_here = [
            v for v in provider.inventory().vms if v.host == host and v.power is PowerState.RUNNING
        ]
        assert running_here == []
        patch_over_ssh(sim, provider, host.name)
        assert provider.get_host(host).build == "6.14.8-2-pve", "the new kernel runs only after a reboot"
        provider.reboot_host(host, timeout=10)
        assert provider.get_host(host).build == "6.14.11-1-pve"
        provider.exit_maintenance(host, timeout=10)
        assert provider.get_host(host).state is HostState.CONNECTED
        order.append(host.name)
    return order


@pytest.mark.parametrize("mode", ["ha", "migrate"])
def test_rolling_maintenance_reboots_one_empty_node_at_a_time(
    sim: Simulator, tmp_path: Path, mode: str
) -> None:
    provider = open_for(sim, tmp_path, mode)
    try:
        assert {
            Capability.HOST_MAINTENANCE,
            Capability.HOST_EVACUATE,
            Capability.HOST_REBOOT,
        } <= provider.capabilities
        running_before = {v.ref for v in provider.inventory().vms if v.power is PowerState.RUNNING}
        assert roll(sim, provider) == ["pve1", "pve2", "pve3"]
        reboots = events(sim, "node_reboot")
        assert [e["subject"] for e in reboots] == ["pve1", "pve2", "pve3"]
        for reboot in reboots:
            assert reboot["running_guests"] == [], "a node was rebooted with guests on it"
            assert reboot["maintenance"] == ([reboot["subject"]] if mode == "ha" else [])
        assert all(node["boot_count"] == 1 for node in sim.state()["nodes"].values())
        running_after = {v.ref for v in provider.inventory().vms if v.power is PowerState.RUNNING}
        assert running_after == running_before, "evacuation must not stop guests"
    finally:
        provider.close()


def test_ha_maintenance_is_idempotent_and_visible_through_the_api(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "ha")
    pve2 = HostRef("pve", "pve2", "pve2")
    try:
        provider.enter_maintenance(pve2, evacuate=True, timeout=10)
        provider.enter_maintenance(pve2, evacuate=True, timeout=10)  # at-least-once delivery
        assert len(events(sim, "maintenance_enabled")) == 1
        assert sim.state()["guests"][101]["node"] != "pve2"  # the HA-managed guest was moved by HA
        provider.exit_maintenance(pve2, timeout=10)
        provider.exit_maintenance(pve2, timeout=10)
        assert len(events(sim, "maintenance_disabled")) == 1
    finally:
        provider.close()


def test_skipped_guest_in_migrateall_is_caught_by_rechecking_every_guest(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.inject("migrate_skip", vmid=100)
    provider = open_for(sim, tmp_path, "migrate")
    try:
        with pytest.raises(ProviderTimeout) as caught:
            provider.enter_maintenance(HostRef("pve", "pve1", "pve1"), evacuate=True, timeout=1)
        assert "web-1" in caught.value.message
        migrateall = next(t for t in sim.cluster.tasks.values() if t.type == "migrateall")
        assert migrateall.exitstatus == "WARNINGS: 1"  # success for PVE, not for us
    finally:
        provider.close()


def test_reboot_is_refused_while_guests_run_on_the_node(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "ha")
    try:
        with pytest.raises(OperationRefused) as caught:
            provider.reboot_host(HostRef("pve", "pve1", "pve1"), timeout=5)
        assert caught.value.code == "guests_running"
        assert events(sim, "node_reboot") == []
    finally:
        provider.close()


def test_node_that_does_not_come_back_times_out(tmp_path: Path) -> None:
    with Simulator(SimConfig(task_duration=0.02, migrate_duration=0.05, reboot_offline=60)) as sim:
        provider = open_for(sim, tmp_path, "migrate")
        pve3 = HostRef("pve", "pve3", "pve3")
        try:
            provider.enter_maintenance(pve3, evacuate=True, timeout=10)
            with pytest.raises(ProviderTimeout) as caught:
                provider.reboot_host(pve3, timeout=0.5)
            assert "seen offline" in caught.value.message
            assert provider.get_host(pve3).state is HostState.DISCONNECTED
        finally:
            provider.close()


def test_no_node_left_to_evacuate_to(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "ha")
    try:
        for name in ("pve2", "pve3"):
            provider.enter_maintenance(HostRef("pve", name, name), evacuate=False, timeout=10)
        with pytest.raises(OperationRefused) as caught:
            provider.enter_maintenance(HostRef("pve", "pve1", "pve1"), evacuate=True, timeout=10)
        assert caught.value.code == "no_target"
    finally:
        provider.close()


def test_unknown_node(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "migrate")
    try:
        with pytest.raises(NotFound):
            provider.enter_maintenance(HostRef("pve", "pve9", "pve9"), evacuate=True, timeout=5)
        with pytest.raises(NotFound):
            provider.get_host(HostRef("pve", "pve9", "pve9"))
    finally:
        provider.close()


def test_maintenance_none_declares_no_capability(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "none")
    try:
        assert Capability.HOST_MAINTENANCE not in provider.capabilities
        assert Capability.HOST_REBOOT in provider.capabilities
        with pytest.raises(CapabilityMissing):
            provider.enter_maintenance(HostRef("pve", "pve1", "pve1"), evacuate=True, timeout=5)
    finally:
        provider.close()


def test_ssh_host_key_is_verified(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "ha")
    pve1 = HostRef("pve", "pve1", "pve1")
    known_hosts = Path(provider.settings.ssh.known_hosts or "")
    try:
        lines = known_hosts.read_text().splitlines()
        other_key = lines[1].split(" ", 1)[1]  # pve2's key written for pve1's address
        known_hosts.write_text(f"{lines[0].split(' ', 1)[0]} {other_key}\n")
        with pytest.raises(HostKeyRejected) as caught:
            provider.enter_maintenance(pve1, evacuate=False, timeout=5)
        assert caught.value.code == "host_key_mismatch" and not caught.value.retryable
        assert known_hosts.read_text() == f"{lines[0].split(' ', 1)[0]} {other_key}\n"  # left as it was
        known_hosts.write_text("")
        with pytest.raises(HostKeyRejected) as unknown:
            provider.enter_maintenance(pve1, evacuate=False, timeout=5)
        assert unknown.value.code == "host_key_unknown" and not unknown.value.retryable
        assert known_hosts.read_text() == ""  # never trusted on first use
        assert events(sim, "maintenance_enabled") == []
    finally:
        provider.close()
