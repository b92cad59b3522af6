"""The provider contract suite against the Proxmox adapter and the PVE simulator (real HTTPS).

Two configurations: a three-node cluster with ticket auth and HA maintenance over SSH, and a
standalone node (no cluster: the failure domain is the node) with an API token.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import HostRef, VmRef
from providers.proxmox import ProxmoxProvider, open_provider
from tests.contract.suite import ProviderContract
from tests.pvesim import SimConfig, Simulator
from tests.pvesim.harness import settings_for

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

    @pytest.fixture
    def provider(self, cluster_sim: Simulator, tmp_path: Path) -> Iterator[ProxmoxProvider]:
        provider = open_provider(settings_for(cluster_sim, ssh_dir=tmp_path, maintenance="ha"))
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


class TestProxmoxStandaloneTokenContract(ProviderContract):
    missing_vm_id = "lxc/999999"  # well-formed, no such container
    missing_host_id = "pve9"
    power_timeout = 10.0
    exec_timeout = 10.0

    @pytest.fixture
    def provider(self, standalone_sim: Simulator) -> Iterator[ProxmoxProvider]:
        provider = open_provider(settings_for(standalone_sim, token=True, maintenance="none"))
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
