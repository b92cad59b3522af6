"""PatchRun's hypervisor phase against our vCenter simulator (tests/simulators/vcsim), on the time-skipping server.

The real host activities run against the real vSphere adapter: enter maintenance (evacuating) ->
patch through the platform (HostPatchManager) -> reboot when required -> verify -> exit maintenance,
one host at a time. The simulator records every maintenance transition, so "one host at a time"
and "always leaves maintenance" are checked from its side, not from our own notes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from tests.simulators.vcsim.launcher import Vcsim, start_or_skip
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e

OLD, NEW = "21930508", "23307199"
DEPOT = "https://depot.example/VMware-ESXi-7.0U3-sim-depot.zip"
PASSWORD_ENV = "PW_TEST_VCSIM_PASSWORD"


@pytest.fixture
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip(
        "-host", "3", "-vm", "6", "-balance", "-host-reboot-ms", "300", "-esx-build", OLD, "-patch-to", f"7.0.3:{NEW}"
    )  # fmt: skip
    yield sim
    sim.stop()


def write_config(tmp_path: Path, sim: Vcsim) -> Path:
    table = sim.provider_table()
    config = tmp_path / "patchwave.toml"
    config.write_text(f"""
[state]
dir = "{tmp_path / "state"}"
[temporal]
address = "127.0.0.1:{unused_port()}"
[providers.vc]
kind = "vsphere"
host = "{table["host"]}"
port = {table["port"]}
user = "{table["user"]}"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{table["ca_file"]}"
[targets]
names = ["*"]
[hosts]
enabled = true
scope = "all"
patch = "platform"
reboot = "if-required"
evacuate = true
depot_urls = ["{DEPOT}"]
""")
    return config


async def run_host_phase(
    env: WorkflowEnvironment, tmp_path: Path, sim: Vcsim
) -> tuple[RunSummary, FactStore]:
    settings = load_settings(write_config(tmp_path, sim), environ={PASSWORD_ENV: sim.password})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            request = RunRequest(run_id="run-hosts", config_digest=settings.digest, guests=False)
            return await (await start_run(env.client, request)).result(), facts
    finally:
        ctx.close()


async def test_hosts_are_patched_one_at_a_time_and_always_leave_maintenance(env, tmp_path: Path, sim) -> None:
    summary, facts = await run_host_phase(env, tmp_path, sim)
    try:
        assert summary.status == "succeeded", summary
        assert [(h.host.name, h.status, h.build_after, h.rebooted) for h in summary.hosts] == [
            (f"DC0_C0_H{i}", StepStatus.SUCCEEDED, NEW, True) for i in range(3)
        ]
        record = sim.maintenance()
        assert record["max_concurrent"] == {"DC0_C0": 1}
        assert [e["event"] for e in record["events"]] == ["enter", "exit"] * 3
        assert record["in_maintenance"] == []
        assert facts.hosts_in_maintenance() == []
        assert {facts.outcome("run-hosts", h.step_id).status for h in summary.hosts} == {StepStatus.SUCCEEDED}
    finally:
        facts.close()


async def test_a_failed_host_patch_halts_the_phase_and_the_host_leaves_maintenance(
    env, tmp_path: Path, sim
) -> None:
    sim.add_fault(
        "method=InstallHostPatchV2_Task,target=DC0_C0_H1,fault=PatchInstallFailed,msg=VIB checksum mismatch"
    )
    summary, facts = await run_host_phase(env, tmp_path, sim)
    try:
        hosts = {h.host.name: h for h in summary.hosts}
        assert summary.status == "halted" and "DC0_C0_H1" in summary.halted_reason
        assert hosts["DC0_C0_H0"].status is StepStatus.SUCCEEDED
        assert (
            hosts["DC0_C0_H1"].status is StepStatus.FAILED
            and "VIB checksum mismatch" in hosts["DC0_C0_H1"].error
        )
        assert "DC0_C0_H2" not in hosts  # never touched
        record = sim.maintenance()
        assert [(e["event"], e["host"]) for e in record["events"]] == [
            ("enter", "DC0_C0_H0"),
            ("exit", "DC0_C0_H0"),
            ("enter", "DC0_C0_H1"),
            ("exit", "DC0_C0_H1"),
        ]
        assert record["in_maintenance"] == [] and facts.hosts_in_maintenance() == []
    finally:
        facts.close()
