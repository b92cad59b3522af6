"""The provider contract suite against the vSphere adapter and our vcsim launcher (tests/simulators/vcsim).

vcsim cannot run programs in guests (no GuestProcessManager in 0.24), so the contract provider has
no guest credentials and does not declare GUEST_EXEC: the suite proves that capability refused. A
second provider with guest credentials shows that GUEST_EXEC is then declared and that vcsim's
refusal surfaces as CapabilityMissing; the happy path of guest exec needs a real vSphere lab.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.base import Capability, HostRef, PowerState, VmRef
from providers.errors import CapabilityMissing
from tests.contract.suite import ProviderContract
from tests.simulators.vcsim.launcher import Vcsim, open_vsphere, start_or_skip

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip("-host", "3", "-vm", "6", "-balance", "-host-reboot-ms", "300")
    yield sim
    sim.stop()


class TestVsphereContract(ProviderContract):
    missing_vm_id = "vm-999999"
    missing_host_id = "host-999999"
    power_timeout = 30.0
    backup_timeout = 60.0

    @pytest.fixture
    def provider(self, sim: Vcsim):
        provider = open_vsphere(sim, site="vcsim", backup_folder="patchwave/backups")
        yield provider
        provider.close()

    @pytest.fixture
    def contract_vm(self, provider) -> VmRef:
        return next(v.ref for v in provider.inventory().vms if v.ref.name == "DC0_C0_RP0_VM0")

    @pytest.fixture
    def contract_host(self, provider) -> HostRef:
        return next(h.ref for h in provider.inventory().hosts if h.ref.name == "DC0_C0_H0")

    @pytest.fixture
    def verify_vm(self, provider, contract_vm: VmRef) -> VmRef:
        return contract_vm  # the launcher reports a Tools heartbeat for powered-on VMs


def test_guest_exec_is_declared_with_guest_credentials_and_refused_by_vcsim(sim: Vcsim) -> None:
    provider = open_vsphere(sim, guest_user="root", guest_password="guest-pw")
    try:
        assert Capability.GUEST_EXEC in provider.capabilities
        vm = next(v for v in provider.inventory().vms if v.power is PowerState.RUNNING)
        assert vm.agent_ready  # the launcher reports VMware Tools running for powered-on VMs
        with pytest.raises(CapabilityMissing):
            provider.guest_exec(vm.ref, ["/bin/true"], timeout=10)
    finally:
        provider.close()


def test_snapshot_flags_reach_vsphere(sim: Vcsim) -> None:
    """memory/quiesce are passed through: read back with plain pyVmomi, not through the adapter."""
    import ssl

    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    provider = open_vsphere(sim)
    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                      sslContext=ssl.create_default_context(cafile=str(sim.cert_file)))  # fmt: skip
    try:
        vm = next(v.ref for v in provider.inventory().vms if v.power is PowerState.RUNNING)
        quiet = provider.create_snapshot(vm, "pw-quiesce", "patchwave:{}", quiesce=True)
        memory = provider.create_snapshot(vm, "pw-memory", "patchwave:{}", memory=True)
        tree = {}
        stack = list(vim.VirtualMachine(vm.id, si._stub).snapshot.rootSnapshotList)
        while stack:
            node = stack.pop()
            tree[node.snapshot._moId] = node
            stack.extend(node.childSnapshotList)
        assert (tree[quiet.id].quiesced, tree[quiet.id].state) == (True, "poweredOff")
        assert (tree[memory.id].quiesced, tree[memory.id].state) == (False, "poweredOn")
        assert (quiet.has_memory, memory.has_memory) == (False, True)
        for snap in (memory, quiet):
            provider.delete_snapshot(vm, snap.id)
    finally:
        Disconnect(si)
        provider.close()


def test_hosts_are_addressed_by_name_and_guests_with_tools_lack_nothing(sim: Vcsim) -> None:
    provider = open_vsphere(sim, guest_user="root", guest_password="guest-pw")
    try:
        inventory = provider.inventory()
        assert all(h.address == h.ref.name for h in inventory.hosts)
        assert all(v.unsupported == () for v in inventory.vms), "the launcher reports VMware Tools installed"
    finally:
        provider.close()


def test_a_vm_without_vmware_tools_lacks_guest_exec_and_quiesce() -> None:
    from providers.vsphere.inventory import vm_info

    props = {
        "name": "bare",
        "runtime.powerState": "poweredOn",
        "guest.toolsVersionStatus2": "guestToolsNotInstalled",
    }
    every = frozenset(Capability)
    lacks = vm_info("vcsim", "vm-1", props, {}, {}, "tags", every).unsupported
    assert lacks == (Capability.GUEST_EXEC, Capability.SNAPSHOT_QUIESCE)
    without_exec = every - {Capability.GUEST_EXEC}  # no guest credentials: only what is declared
    assert vm_info("vcsim", "vm-1", props, {}, {}, "tags", without_exec).unsupported == (
        Capability.SNAPSHOT_QUIESCE,
    )
    props["guest.toolsVersionStatus2"] = "guestToolsCurrent"  # installed; whether it runs is agent_ready
    assert vm_info("vcsim", "vm-1", props, {}, {}, "tags", every).unsupported == ()
