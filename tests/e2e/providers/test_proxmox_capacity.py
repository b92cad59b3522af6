"""A PVE node whose guests have nowhere to go is refused before it is touched (PVE simulator).

The adapter checks, read-only, whether the running guests of a node fit on the other online nodes
outside maintenance (``maintenance_refusal``, which the engine's host preflight calls) and checks it
again in ``enter_maintenance`` itself before it asks for maintenance (``OperationRefused``, code
``evacuation_impossible``, like vSphere's adapter). Memory is what the nodes report
(``/nodes/{node}/status``) and the guests' configured memory (``maxmem``); HA-managed guests may only
go where the strict node-affinity rules (``/cluster/ha/rules``) allow. The witness that nothing was
touched is the simulator's event log: no maintenance request, no migration task.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import HostRef
from providers.errors import OperationRefused
from providers.proxmox.provider import ProxmoxProvider, open_provider
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for
from tests.simulators.pvesim.sshd import new_ed25519

pytestmark = pytest.mark.e2e

GIB = 1024**3
PVE1, PVE2 = HostRef("pve", "pve1", "pve1"), HostRef("pve", "pve2", "pve2")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
    with Simulator(config) as simulator:
        yield simulator


def open_for(sim: Simulator, tmp_path: Path, maintenance: str) -> ProxmoxProvider:
    return open_provider(settings_for(sim, ssh_dir=tmp_path, maintenance=maintenance))


def untouched(sim: Simulator) -> None:
    state = sim.state()
    kinds = {e["kind"] for e in state["events"]}
    assert "maintenance_enabled" not in kinds
    assert not [e for e in state["events"] if e["kind"] == "task_stopped" and "migrate" in e["type"]]
    assert not any(n["ha_maintenance"] for n in state["nodes"].values())


@pytest.mark.parametrize("mode", ["ha", "migrate"])
def test_a_node_whose_guests_do_not_fit_elsewhere_is_refused_before_maintenance(
    sim: Simulator, tmp_path: Path, mode: str
) -> None:
    for name in ("pve2", "pve3"):  # 8 GiB: 4 for the host, 2 for its own guest, 2 available
        sim.cluster.nodes[name].memory_total = 8 * GIB
    provider = open_for(sim, tmp_path, mode)
    try:
        # pve1 runs web-1 and cache-1 (2 GiB each), which the evacuation sends to one node together
        why = provider.maintenance_refusal(PVE1, evacuate=True)
        assert "need 4096 MiB on pve2" in why and "2048 MiB available" in why, why
        with pytest.raises(OperationRefused) as refused:
            provider.enter_maintenance(PVE1, evacuate=True, timeout=10)
        assert refused.value.code == "evacuation_impossible"
        untouched(sim)
        assert {g["node"] for vmid, g in sim.state()["guests"].items() if vmid in (100, 102)} == {"pve1"}
        assert provider.maintenance_refusal(PVE1, evacuate=False) == ""  # nothing must move
    finally:
        provider.close()


def test_a_strict_node_affinity_rule_keeps_an_ha_guest_from_moving(sim: Simulator, tmp_path: Path) -> None:
    sim.cluster.add_ha_rule("db-stays-on-pve2", resources="vm:101", nodes="pve2", strict=True)
    provider = open_for(sim, tmp_path, "ha")
    try:
        why = provider.maintenance_refusal(PVE2, evacuate=True)
        assert "vm:101 (db-1) may only run on pve2" in why and "'db-stays-on-pve2'" in why, why
        with pytest.raises(OperationRefused):
            provider.enter_maintenance(PVE2, evacuate=True, timeout=10)
        untouched(sim)
    finally:
        provider.close()


def test_guests_that_fit_are_not_refused_and_a_non_strict_rule_is_a_preference(
    sim: Simulator, tmp_path: Path
) -> None:
    sim.cluster.add_ha_rule("db-prefers-pve2", resources="vm:101", nodes="pve2", strict=False)
    sim.cluster.add_ha_rule(
        "ct999-on-pve2", resources="ct:999", nodes="pve2", strict=True
    )  # names another guest
    provider = open_for(sim, tmp_path, "ha")
    try:
        assert [
            provider.maintenance_refusal(HostRef("pve", n, n), evacuate=True)
            for n in ("pve1", "pve2", "pve3")
        ] == [
            "",
            "",
            "",
        ]
        provider.enter_maintenance(PVE2, evacuate=True, timeout=10)
        assert sim.state()["guests"][101]["node"] != "pve2"
        provider.exit_maintenance(PVE2, timeout=10)
    finally:
        provider.close()


def test_a_node_shell_with_a_changed_host_key_is_a_refusal(sim: Simulator, tmp_path: Path) -> None:
    provider = open_for(sim, tmp_path, "ha")
    try:
        known = tmp_path / "known_hosts"
        first = next(iter(sim.ssh_servers.values()))
        other, _ = new_ed25519()
        known.write_text(f"[127.0.0.1]:{first.port} {other.get_name()} {other.get_base64()}\n")
        why = provider.maintenance_refusal(PVE2, evacuate=True)
        assert "node shell" in why and "host key" in why.lower(), why
        untouched(sim)
    finally:
        provider.close()
