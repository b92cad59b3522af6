"""The provider contract suite against the Proxmox adapter and the PVE simulator (real HTTPS).

Two configurations: a three-node cluster with ticket auth and HA maintenance over SSH, and a
standalone node (no cluster: the failure domain is the node) with an API token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.backups import RestoreProbe
from providers.base import Capability, HostRef, VmRef
from providers.errors import AuthenticationFailed, GuestAgentUnavailable, ProviderTimeout
from providers.proxmox.agent import AgentExec
from providers.proxmox.provider import ProxmoxProvider, open_provider
from providers.proxmox.session import PveSession
from tests.contract.suite import ProviderContract
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for

pytestmark = pytest.mark.e2e

FAST = {"task_duration": 0.02, "migrate_duration": 0.05, "ha_delay": 0.05, "reboot_offline": 0.2}


@pytest.fixture(scope="module")
def cluster_sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(**FAST)) as sim:
        yield sim


@pytest.fixture(scope="module")
def standalone_sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(cluster_name=None, **FAST), ssh=False) as sim:
        yield sim


class TestProxmoxContract(ProviderContract):
    missing_vm_id = "qemu/999999"  # well-formed, no such guest
    missing_host_id = "pve9"
    power_timeout = 10.0
    exec_timeout = 10.0
    backup_timeout = 20.0

    @pytest.fixture
    def provider(self, cluster_sim: Simulator, tmp_path: Path) -> Iterator[ProxmoxProvider]:
        provider = open_provider(
            settings_for(cluster_sim, ssh_dir=tmp_path, maintenance="ha", backup_storage="backup-nfs")
        )
        yield provider
        provider.close()

    @pytest.fixture
    def contract_vm(self, provider: ProxmoxProvider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/100")

    @pytest.fixture
    def contract_host(self, provider: ProxmoxProvider) -> HostRef:
        return next(h.ref for h in provider.inventory().hosts if h.ref.id == "pve3")

    @pytest.fixture
    def agent_vm(self, provider: ProxmoxProvider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/103")

    @pytest.fixture
    def verify_vm(self, provider: ProxmoxProvider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/103")

    @pytest.fixture
    def verify_probes(self) -> tuple[RestoreProbe, ...]:
        return (RestoreProbe("os-release", ("/bin/sh", "-c", "test -f /etc/os-release"), interval=0.1),)


class TestProxmoxStandaloneTokenContract(ProviderContract):
    missing_vm_id = "lxc/999999"  # well-formed, no such container
    missing_host_id = "pve9"
    power_timeout = 10.0
    exec_timeout = 10.0
    backup_timeout = 20.0

    @pytest.fixture
    def provider(self, standalone_sim: Simulator) -> Iterator[ProxmoxProvider]:
        provider = open_provider(
            settings_for(standalone_sim, token=True, maintenance="none", backup_storage="local")
        )
        yield provider
        provider.close()

    @pytest.fixture
    def contract_vm(self, provider: ProxmoxProvider) -> VmRef:
        # Not the container: SNAPSHOT_MEMORY is declared per provider, and LXC has no RAM snapshots
        # (nor agent exec). Containers are covered by tests/e2e/test_proxmox_faults.py.
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/104")

    @pytest.fixture
    def contract_host(self, provider: ProxmoxProvider) -> HostRef:
        host = next(h for h in provider.inventory().hosts if h.ref.id == "pve1")
        assert host.failure_domain == "pve1", "a standalone node is its own failure domain"
        return host.ref

    @pytest.fixture
    def agent_vm(self, provider: ProxmoxProvider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/100")

    @pytest.fixture
    def verify_vm(self, provider: ProxmoxProvider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.id == "qemu/100")


# ------------------------------------------------------------------------------------------------
# Contract details the PVE adapter fills in
# ------------------------------------------------------------------------------------------------


def test_guests_list_what_they_lack_and_nodes_their_address(cluster_sim: Simulator, tmp_path: Path) -> None:
    provider = open_provider(settings_for(cluster_sim, ssh_dir=tmp_path))
    legacy = VmRef("pve", "qemu/104", "legacy-1")  # its config does not enable the agent
    try:
        inventory = provider.inventory()
        lacks = {v.ref.id: v.unsupported for v in inventory.vms}
        assert lacks["lxc/102"] == (Capability.GUEST_EXEC, Capability.SNAPSHOT_MEMORY)
        assert lacks["qemu/100"] == lacks["qemu/103"] == ()
        assert lacks["qemu/104"] == (), "stopped: its agent setting is not read"
        assert {h.ref.id: h.address for h in inventory.hosts} == {
            node.name: node.ip for node in cluster_sim.cluster.nodes.values()
        }
        provider.power_on(legacy)
        assert provider.get_vm(legacy).unsupported == (Capability.GUEST_EXEC,)
    finally:
        provider.power_off(legacy)
        provider.close()


def test_an_agent_that_never_answers_is_unavailable_and_a_timeout(cluster_sim: Simulator) -> None:
    provider = open_provider(settings_for(cluster_sim, agent_wait=0.3))
    guest = cluster_sim.cluster.guests[103]
    cluster_sim.inject("agent_not_ready", vmid=103, seconds=600)
    try:
        with pytest.raises(GuestAgentUnavailable) as caught:
            provider.guest_exec(VmRef("pve", "qemu/103", "app-1"), ["true"], timeout=5)
        assert isinstance(caught.value, ProviderTimeout) and caught.value.code == "agent_not_ready"
        assert provider.get_vm(VmRef("pve", "qemu/103", "app-1")).unsupported == (), "transient, not static"
    finally:
        guest.agent_ready_at = 0.0
        provider.close()


def test_an_agent_that_stops_answering_at_exec_is_unavailable_not_refused(cluster_sim: Simulator) -> None:
    settings = settings_for(cluster_sim)
    session = PveSession(settings)
    agent = AgentExec(session, poll_interval=settings.poll_interval, output_cap=settings.exec_output_cap)
    node = cluster_sim.cluster.guests[103].node
    cluster_sim.inject("agent_down", vmid=103, count=2)  # agent/exec, then the ping that checks it
    try:
        with pytest.raises(GuestAgentUnavailable) as caught:
            agent.run(node, 103, ["true"], timeout=5, env=None, stdin=None, target="pve/app-1")
        assert caught.value.retryable and caught.value.code == "agent_not_ready"
        assert agent.run(node, 103, ["true"], timeout=5, env=None, stdin=None, target="pve/app-1").ok
    finally:
        cluster_sim.clear_faults()
        session.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_a_tls_rejection_is_authentication_failed_tls(standalone_sim: Simulator) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        open_provider(settings_for(standalone_sim, token=True, ca_file=""))
    assert caught.value.code == "tls" and not caught.value.retryable
