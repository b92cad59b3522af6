"""A VM that no health check applies to is not patched and counted healthy without a word (PVE simulator).

A real ``PatchRun`` (time-skipping Temporal server, real activities, the Proxmox adapter against the PVE
simulator, fake Debian guests through the real ``local`` channel): the demo-app health check applies to
web-1 only. With ``[policy] require_health = true`` (the default) db-1 is blocked (``no_health_check``,
the reason naming the fix) and nothing touches it: no PVE snapshot, no apt run in its guest. A group
that says ``health = "none"`` lets it be patched, and the plan carries a warning saying it was
patched unchecked.
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
from orchestrator.model import Plan, RunRequest, RunSummary, StepStatus
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.support.platformbed import PlatformBed, build_platform_bed
from tests.support.testbed import INSTALLED, UPGRADES

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
VMS = ("web-1", "db-1")  # qemu 100 and 101 of the simulator
UNCHECKED = '[[groups]]\nname = "unchecked"\nmatch = { names = ["db-1"] }\n[groups.policy]\nhealth = "none"\n'


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02), ssh=False) as simulator:
        yield simulator


def bed_for(sim: Simulator, root: Path, extra: str = "") -> PlatformBed:
    provider = (
        f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {sim.port}\nca_file = "{sim.ca_file}"\n'
        f'user = "root@pam"\npassword = {{ env = "{PASSWORD_ENV}" }}\npoll_interval = 0.02'
    )
    return build_platform_bed(
        root, site="pve", provider_toml=provider, vms=VMS, checked=["web-1"], extra=extra
    )


async def patch_run(env: WorkflowEnvironment, bed: PlatformBed) -> tuple[RunSummary, Plan]:
    settings = load_settings(bed.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            request = RunRequest(run_id="run-health", config_digest=settings.digest)
            summary = await (await start_run(env.client, request)).result()
        plan = facts.run_plan("run-health")
        assert plan is not None
        return summary, plan
    finally:
        ctx.close()
        facts.close()


async def test_a_vm_without_a_health_check_is_blocked_and_never_touched(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    bed = bed_for(sim, tmp_path)
    summary, plan = await patch_run(env, bed)
    assert {o.vm.name: o.status for o in summary.vms} == {"web-1": StepStatus.SUCCEEDED}
    [blocker] = [b for b in plan.blocked if b.target == "pve/db-1"]
    assert blocker.code == "no_health_check"
    assert "no [[health]] check applies to pve/db-1" in blocker.reason and 'health = "none"' in blocker.reason
    assert bed.guests["db-1"].upgrades() == 0 and bed.guests["db-1"].installed() == INSTALLED
    assert sim.state()["guests"][101]["snapshots"] == []  # never snapshotted either
    assert bed.guests["web-1"].installed() == UPGRADES


async def test_a_group_that_says_health_none_is_patched_with_a_warning(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    bed = bed_for(sim, tmp_path, extra=UNCHECKED)
    summary, plan = await patch_run(env, bed)
    assert {o.vm.name: o.status for o in summary.vms} == {
        "web-1": StepStatus.SUCCEEDED,
        "db-1": StepStatus.SUCCEEDED,
    }
    assert [(w.target, w.code) for w in plan.warnings] == [("pve/db-1", "no_health_check")]
    assert "counted healthy without a check" in plan.warnings[0].reason
    assert bed.guests["db-1"].installed() == UPGRADES
