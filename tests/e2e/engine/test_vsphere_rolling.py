"""A rolling host patch across a 4-host cluster, at the adapter level, against our vcsim launcher.

Per host, one at a time: enter maintenance (evacuating) -> patch -> reboot if required -> verify the
new build -> exit maintenance (always). The launcher records every maintenance transition, so "never
more than one host in maintenance" is checked from the simulator's side, not from our own notes.
"""

from __future__ import annotations

import pytest

from providers.base import HostPatchSpec, HostState, PowerState
from providers.errors import PermanentProviderError
from tests.simulators.vcsim.launcher import open_vsphere, start_or_skip

pytestmark = pytest.mark.e2e

OLD, NEW = "21930508", "23307199"
SPEC = HostPatchSpec(depot_urls=("https://depot.example/VMware-ESXi-7.0U3-sim-depot.zip",))


@pytest.fixture
def sim():
    sim = start_or_skip(
        "-host", "4", "-vm", "20", "-balance", "-host-reboot-ms", "300", "-esx-build", OLD, "-patch-to", f"7.0.3:{NEW}"
    )  # fmt: skip
    yield sim
    sim.stop()


def roll(provider, timeout: float = 120) -> dict[str, str]:
    """Patch every host of the cluster one at a time; return host name -> outcome."""
    outcomes: dict[str, str] = {}
    for host in provider.inventory().hosts:
        ref = host.ref
        provider.enter_maintenance(ref, evacuate=True, timeout=timeout)
        try:
            assert provider.get_host(ref).running_vms == 0
            result = provider.patch_host(ref, SPEC, timeout=timeout)
            if result.reboot_required:
                provider.reboot_host(ref, timeout=timeout)
            outcomes[ref.name] = provider.get_host(ref).build
        except PermanentProviderError as exc:
            outcomes[ref.name] = f"failed: {exc.code}"
        finally:
            provider.exit_maintenance(ref, timeout=timeout)
    return outcomes


def test_every_host_ends_on_the_new_build_one_host_at_a_time(sim):
    provider = open_vsphere(sim)
    try:
        before = provider.inventory()
        assert {h.build for h in before.hosts} == {OLD}
        assert sum(v.power is PowerState.RUNNING for v in before.vms) == 20

        outcomes = roll(provider)

        assert outcomes == {f"DC0_C0_H{i}": NEW for i in range(4)}
        after = provider.inventory()
        assert all(h.state is HostState.CONNECTED and h.build == NEW for h in after.hosts)
        assert all(h.boot_time != b.boot_time for h, b in zip(after.hosts, before.hosts, strict=True))
        assert sum(v.power is PowerState.RUNNING for v in after.vms) == 20  # evacuated, never stopped
        record = sim.maintenance()
        assert record["max_concurrent"] == {"DC0_C0": 1}
        assert [e["event"] for e in record["events"]] == ["enter", "exit"] * 4
        assert record["in_maintenance"] == []
        # a second run finds nothing to do
        result = provider.patch_host(after.hosts[0].ref, SPEC, timeout=60)
        assert not result.changed and not result.reboot_required
    finally:
        provider.close()


def test_a_failed_install_stops_that_host_only_and_it_leaves_maintenance(sim):
    sim.add_fault(
        "method=InstallHostPatchV2_Task,target=DC0_C0_H1,fault=PatchInstallFailed,msg=VIB checksum mismatch"
    )
    provider = open_vsphere(sim)
    try:
        outcomes = roll(provider)
        assert outcomes == {
            "DC0_C0_H0": NEW,
            "DC0_C0_H1": "failed: patch_failed",
            "DC0_C0_H2": NEW,
            "DC0_C0_H3": NEW,
        }
        assert all(h.state is HostState.CONNECTED for h in provider.inventory().hosts)
        assert sim.maintenance()["max_concurrent"] == {"DC0_C0": 1}
    finally:
        provider.close()
