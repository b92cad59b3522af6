"""Every precondition of a host's patch is checked before the host is touched (PVE simulator).

The hypervisor phase of a real ``PatchRun`` (time-skipping Temporal server, real activities, the real
Proxmox adapter against the PVE simulator, ``[hosts] patch = "ssh"`` over the simulator's per-node SSH
servers, HA maintenance). Before a node is put into maintenance, ``host_preflight`` opens the SSH
channel the patch will use and runs a no-op (reachability, host key, login) and asks the adapter
whether maintenance would be refused (the memory of the guests that must move vs what the other
nodes have available). A node that fails is SKIPPED with the reason — never put into HA maintenance,
its guests never moved — and the phase goes on with the next node. The simulator's event log is the
witness: no ``maintenance_enabled`` and no SSH command for the skipped node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.payloads import RunProgress
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.workers import workers
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.simulators.pvesim.harness import FAST
from tests.simulators.pvesim.sshd import new_ed25519
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
NODES = ["pve1", "pve2", "pve3"]
GIB = 1024**3


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
    with Simulator(config) as simulator:
        yield simulator


def write_config(sim: Simulator, root: Path, *, mismatched: str = "") -> Path:
    """Hosts only; ``mismatched``: a node whose known_hosts entry holds another key."""
    key = sim.client_key(root / "id_ed25519")
    known = sim.write_known_hosts(root / "known_hosts")
    if mismatched:
        port, (other, _) = sim.ssh_servers[mismatched].port, new_ed25519()
        lines = [
            f"[127.0.0.1]:{port} {other.get_name()} {other.get_base64()}" if f"]:{port} " in line else line
            for line in known.read_text().splitlines()
        ]
        known.write_text("\n".join(lines) + "\n")
    fast = "\n".join(f"{k} = {v}" for k, v in FAST.items())
    overrides = "".join(
        f'[hosts.overrides."{n}"]\nssh = {{ port = {sim.ssh_servers[n].port} }}\n' for n in NODES
    )
    config = root / "patchwave.toml"
    config.write_text(f"""
[state]
dir = "{root / "state"}"
[temporal]
address = "127.0.0.1:{unused_port()}"
[providers.pve]
kind = "proxmox"
host = "127.0.0.1"
port = {sim.port}
user = "root@pam"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{sim.ca_file}"
maintenance = "ha"
{fast}
ssh = {{ user = "root", host = "127.0.0.1", port = {sim.ssh_servers["pve1"].port}, key_file = "{key}", known_hosts = "{known}" }}
[targets]
names = ["*"]
[hosts]
enabled = true
scope = "all"
patch = "ssh"
reboot = "if-required"
evacuate = true
ssh = {{ user = "root", host = "127.0.0.1", key_file = "{key}", known_hosts = "{known}" }}
{overrides}
""")
    return config


async def host_phase(env: WorkflowEnvironment, config: Path) -> tuple[RunSummary, FactStore]:
    settings = load_settings(config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            request = RunRequest(run_id="run-preflight", config_digest=settings.digest, guests=False)
            return await (await start_run(env.client, request)).result(), facts
    finally:
        ctx.close()


def events(sim: Simulator, kind: str) -> list[dict[str, Any]]:
    return [e for e in sim.state()["events"] if e["kind"] == kind]


async def test_a_node_whose_ssh_host_key_does_not_match_is_skipped_untouched(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    summary, facts = await host_phase(env, write_config(sim, tmp_path, mismatched="pve2"))
    try:
        hosts = {h.host.name: h for h in summary.hosts}
        assert {n: h.status for n, h in hosts.items()} == {
            "pve1": StepStatus.SUCCEEDED,
            "pve2": StepStatus.SKIPPED,
            "pve3": StepStatus.SUCCEEDED,
        }
        assert "not touched: preflight failed" in hosts["pve2"].error
        assert "host key of 127.0.0.1:" in hosts["pve2"].error and "does not match" in hosts["pve2"].error
        # never in HA maintenance, its guests never moved, nothing ran on it over SSH
        assert [e["subject"] for e in events(sim, "maintenance_enabled")] == ["pve1", "pve3"]
        assert not [e for e in events(sim, "ssh_command") if e["subject"] == "pve2"]
        assert sim.state()["guests"][101]["node"] == "pve2"  # db-1 (HA-managed) was not evacuated
        assert sim.state()["nodes"]["pve2"]["boot_count"] == 0
        assert summary.status == "succeeded" and summary.halted_reason == ""
        assert facts.outcome("run-preflight", hosts["pve2"].step_id).status is StepStatus.SKIPPED
        assert facts.hosts_in_maintenance() == []
    finally:
        facts.close()


async def test_a_node_whose_guests_do_not_fit_on_the_others_is_skipped_untouched(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    for name in ("pve2", "pve3"):  # 8 GiB: 4 for the host, 2 for its own guest, 2 available
        sim.cluster.nodes[name].memory_total = 8 * GIB
    summary, facts = await host_phase(env, write_config(sim, tmp_path))
    try:
        hosts = {h.host.name: h for h in summary.hosts}
        assert hosts["pve1"].status is StepStatus.SKIPPED
        assert "cannot evacuate pve1" in hosts["pve1"].error and "4096 MiB" in hosts["pve1"].error
        assert [hosts[n].status for n in ("pve2", "pve3")] == [StepStatus.SUCCEEDED] * 2
        assert "pve1" not in [e["subject"] for e in events(sim, "maintenance_enabled")]
        assert {sim.state()["guests"][vmid]["node"] for vmid in (100, 102)} == {"pve1"}  # not migrated
        assert sim.state()["nodes"]["pve1"]["boot_count"] == 0
        assert summary.status == "succeeded"
    finally:
        facts.close()


HOST_STAGES = {"preflight", "enter-maintenance", "patch", "reboot", "verify", "exit-maintenance"}


async def test_the_live_view_shows_the_host_in_flight_with_its_stage(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    config = write_config(sim, tmp_path)
    settings = load_settings(config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    seen: list[RunProgress] = []
    try:
        async with workers(env.client, ctx):
            request = RunRequest(run_id="run-host-view", config_digest=settings.digest, guests=False)
            summary = await watch(await start_run(env.client, request), seen.append, interval_s=0.05)
    finally:
        ctx.close()
        facts.close()
    assert summary.status == "succeeded"
    rows = [vm for p in seen for vm in p.vms]
    assert rows and {vm.ring for vm in rows} == {"hosts"}  # one row: the host in flight
    assert all(len([vm for vm in p.vms if vm.ring == "hosts"]) <= 1 for p in seen)  # one at a time
    assert {vm.name for vm in rows} <= set(NODES) and {vm.stage for vm in rows} <= HOST_STAGES
    assert {vm.stage for vm in rows} & {"enter-maintenance", "patch", "reboot", "verify"}
    assert all(vm.channel == "ssh" and vm.started and vm.since for vm in rows)
    assert seen[-1].vms == () and seen[-1].hosts_done == len(NODES)
    for name in {vm.name for vm in rows}:  # a host's elapsed time runs from its first stage, not each stage's
        assert len({vm.started for vm in rows if vm.name == name}) == 1
