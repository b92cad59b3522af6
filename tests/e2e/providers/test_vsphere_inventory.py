"""Inventory through the vSphere adapter: round trips, paging, filters, custom fields as labels/tags.

Custom fields are set with plain pyVmomi (as an admin would in the vSphere client), then read back
through the adapter. Round trips are counted by the launcher (/vcsim-control/stats).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from providers.base import HostState, PowerState
from providers.errors import NotFound
from tests.simulators.vcsim.launcher import Vcsim, open_vsphere, start_or_skip

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip("-dc", "2", "-cluster", "2", "-host", "3", "-vm", "6", "-balance")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def admin(sim: Vcsim):
    """A plain pyVmomi session, for what an administrator does outside patchwave."""
    si = SmartConnect(
        host=sim.host,
        port=sim.port,
        user=sim.user,
        pwd=sim.password,
        sslContext=ssl.create_default_context(cafile=str(sim.cert_file)),
    )
    yield si.RetrieveContent()
    Disconnect(si)


def test_inventory_is_three_round_trips_whatever_its_size(sim: Vcsim) -> None:
    provider = open_vsphere(sim)
    try:
        sim.reset_stats()
        inventory = provider.inventory()
        assert (len(inventory.hosts), len(inventory.vms)) == (12, 24)
        assert sim.stats() == {"CreateContainerView": 1, "RetrievePropertiesEx": 1, "DestroyView": 1}
        assert {h.failure_domain for h in inventory.hosts} == {"DC0_C0", "DC0_C1", "DC1_C0", "DC1_C1"}
        assert all(h.state is HostState.CONNECTED and h.running_vms == 2 for h in inventory.hosts)
        assert all(v.power is PowerState.RUNNING and v.agent_ready and v.ip_addresses for v in inventory.vms)
    finally:
        provider.close()


def test_inventory_pages_follow_the_token(sim: Vcsim) -> None:
    provider = open_vsphere(sim, page_size=10)
    try:
        sim.reset_stats()
        everything = provider.inventory()
        # 4 clusters + 12 hosts + 24 VMs + the CustomFieldsManager = 41 objects = 5 pages of 10
        assert sim.stats()["ContinueRetrievePropertiesEx"] == 4
        assert len(everything.vms) == 24
    finally:
        provider.close()


def test_datacenter_and_cluster_filters(sim: Vcsim) -> None:
    provider = open_vsphere(sim, datacenter="DC1", cluster="DC1_C0")
    try:
        inventory = provider.inventory()
        assert {h.ref.name for h in inventory.hosts} == {f"DC1_C0_H{i}" for i in range(3)}
        assert {v.ref.name for v in inventory.vms} == {f"DC1_C0_RP0_VM{i}" for i in range(6)}
    finally:
        provider.close()
    provider = open_vsphere(sim, datacenter="DC9")
    try:
        with pytest.raises(NotFound):
            provider.inventory()
    finally:
        provider.close()


def test_custom_fields_become_labels_and_tags(sim: Vcsim, admin) -> None:
    fields = admin.customFieldsManager
    tags = fields.AddCustomFieldDef(name="tags", moType=vim.VirtualMachine)
    ring = fields.AddCustomFieldDef(name="ring", moType=vim.VirtualMachine)
    vm = next(v for v in admin.viewManager.CreateContainerView(admin.rootFolder, [vim.VirtualMachine], True).view
              if v.name == "DC0_C0_RP0_VM3")  # fmt: skip
    fields.SetField(entity=vm, key=tags.key, value="web, no-patch")
    fields.SetField(entity=vm, key=ring.key, value="wave-1")
    fields.SetField(entity=vm, key=ring.key, value="canary")  # the last value wins
    provider = open_vsphere(sim, site="lab")
    try:
        listed = next(v for v in provider.inventory().vms if v.ref.name == "DC0_C0_RP0_VM3")
        assert dict(listed.labels) == {"tags": "web, no-patch", "ring": "canary"}
        assert listed.tags == ("web", "no-patch", "ring=canary")
        assert provider.get_vm(listed.ref) == listed
    finally:
        provider.close()
