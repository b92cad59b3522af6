"""The hypervisor phase inside maintenance windows: real ``PatchRun`` workflows on Temporal's
time-skipping test server against the PVE simulator (tests/simulators/pvesim), ``[hosts] patch = "ssh"``.

The three simulated nodes form one failure domain (the cluster). The guests' group is bound to a
window; ``[hosts]`` names none, so the nodes wait for the guests' window. Waiting is a durable
timer the test server skips while the test awaits the run's result; before that (no skipping) the
run is observed paused with no node touched. The witnesses: the simulator's event log and node
state (maintenance, reboots), the run's status events and progress, and the hosts' outcomes, whose
``started_at`` is workflow time — compared with the plan's host-phase start from the fact store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.runs import RunHandle, progress, start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.store import FactStore
from orchestrator.model import HostOutcome, RunRequest, RunSummary, StepStatus, host_step_id
from patchwave_lab.fakeguest import FakeGuest
from providers.base import HostRef
from tests.e2e.engine.test_proxmox_run import NODES, PASSWORD_ENV, VMS, Bed, write_config
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.support.snapshot_disks import SnapshotDisks
from tests.support.testbed import INSTALLED, UPGRADES

pytestmark = pytest.mark.e2e

RUN = "run-host-windows"


@pytest.fixture
def pve(tmp_path: Path) -> Iterator[Bed]:
    config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
    with Simulator(config) as sim:
        guests = {
            name: FakeGuest.create(tmp_path / "guests" / name, installed=INSTALLED, repo=UPGRADES)
            for name in VMS
        }
        disks = SnapshotDisks(guests)
        sim.cluster.listeners.append(disks.pvesim_listener())
        bed = Bed(sim, tmp_path, guests, disks)
        write_config(bed)
        yield bed


def bind_guests_to(bed: Bed, window: str, host_duration: str) -> None:
    """Every guest in group ``main`` bound to window ``w``; nodes predicted ``host_duration`` each."""
    text = bed.config.read_text().replace('default_duration = "5m"', f'default_duration = "{host_duration}"')
    text += '\n[[groups]]\nname = "main"\nring = "default"\nmatch = { names = ["*"] }\nwindow = "w"\n'
    text += f'\n[windows.w]\n{window}\ntimezone = "UTC"\n'
    bed.config.write_text(text)


class Rollout:
    def __init__(self, env: WorkflowEnvironment, bed: Bed) -> None:
        self.env, self.bed = env, bed
        self.settings = load_settings(bed.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
        self.facts = FactStore(self.settings.state.facts_path)
        self.ctx = Context(self.settings, self.facts)
        self.request = RunRequest(run_id=RUN, config_digest=self.settings.digest, requested_by="e2e")

    def close(self) -> None:
        self.ctx.close()
        self.facts.close()

    def maintenance_events(self) -> list[dict]:
        return [
            e for e in self.bed.sim.state()["events"] if e["kind"] in ("maintenance_enabled", "node_reboot")
        ]

    def plan_start(self) -> datetime:
        plan = self.facts.run_plan(RUN)
        assert plan is not None and plan.host_phase, plan
        return datetime.fromisoformat(plan.host_phase[0].est_start)

    def host_starts(self, summary: RunSummary) -> dict[str, datetime]:
        assert [(h.host.name, h.status) for h in summary.hosts] == [(n, StepStatus.SUCCEEDED) for n in NODES]
        return {h.host.name: datetime.fromisoformat(h.started_at) for h in summary.hosts}


@pytest.fixture
def rollout(env: WorkflowEnvironment, pve: Bed) -> Iterator[Callable[[], Rollout]]:
    """A factory: the test writes the bed's window first, then makes the rollout."""
    made: list[Rollout] = []

    def make() -> Rollout:
        made.append(Rollout(env, pve))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def paused_on_hosts(handle: RunHandle, facts: FactStore) -> str:
    """Poll (the test server does not skip time meanwhile) until the host phase waits for its window
    and the run's status says so."""
    for _ in range(600):
        current = await progress(handle)
        paused = [e.status for e in facts.run_events(RUN)][-1:] == ["paused"]
        if current is not None and current.window_until and paused:
            assert current.phase == "window" and current.hosts_done == 0, current
            return current.window_until
        await asyncio.sleep(0.1)
    raise AssertionError("the run never reported waiting for its window")


async def test_no_node_enters_maintenance_before_the_guests_window_opens(
    env: WorkflowEnvironment, pve: Bed, rollout
) -> None:
    now = await env.get_current_time()
    opens = (now + timedelta(hours=20)).replace(second=0, microsecond=0)
    bind_guests_to(pve, f'cron = "{opens.minute} {opens.hour} * * *"\nduration = "2h"\ncutoff = "15m"', "5m")
    r: Rollout = rollout()
    async with workers(env.client, r.ctx):
        handle = await start_run(env.client, r.request)
        until = await paused_on_hosts(handle, r.facts)
        # Paused, and not one node touched (the old engine had all three patched by now).
        assert until == f"w until {opens.isoformat()}"
        assert r.maintenance_events() == []
        assert not any(n["ha_maintenance"] for n in pve.sim.state()["nodes"].values())
        events = [(e.status, e.reason) for e in r.facts.run_events(RUN)]
        assert events[-1] == ("paused", f"waiting for maintenance window 'w' until {opens.isoformat()}")
        summary: RunSummary = await handle.result()  # the test server skips the 20 h

    assert summary.status == "succeeded", summary
    starts = r.host_starts(summary)
    # The plan said the host phase starts at the window's opening; the engine started it there.
    assert r.plan_start() == opens
    assert opens <= starts["pve1"] < opens + timedelta(seconds=5), starts
    assert all(opens <= t for t in starts.values())
    assert [e["subject"] for e in r.maintenance_events() if e["kind"] == "node_reboot"] == NODES
    # The guests come after the hosts, inside the same window.
    last_host = max(datetime.fromisoformat(h.finished_at) for h in summary.hosts)
    assert all(last_host <= datetime.fromisoformat(o.started_at) for o in summary.vms)
    assert [e.status for e in r.facts.run_events(RUN)][-3:] == ["paused", "running", "succeeded"]
    # The nodes' durations are learned from their outcomes (the next plan's worst case).
    assert set(r.facts.history([h.step_id for h in summary.hosts])) == {h.step_id for h in summary.hosts}


async def test_a_domain_whose_learned_worst_case_does_not_fit_waits_for_the_next_occurrence(
    env: WorkflowEnvironment, pve: Bed, rollout
) -> None:
    # The daily window opened 40 min ago (1 h, cutoff 5 min): 15 min are left. The nodes are
    # predicted 2 min each, but pve3 once took 20 min: the cluster's worst case (24 min) does not
    # fit, so no node is touched before tomorrow's occurrence.
    now = await env.get_current_time()
    opened = (now - timedelta(minutes=40)).replace(second=0, microsecond=0)
    bind_guests_to(pve, f'cron = "{opened.minute} {opened.hour} * * *"\nduration = "1h"\ncutoff = "5m"', "2m")
    r: Rollout = rollout()
    pve3 = HostRef("pve", "pve3", "pve3")
    r.facts.set_outcome("an-earlier-run", HostOutcome(
        host_step_id(pve3), pve3, StepStatus.SUCCEEDED, started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:20:00+00:00"))  # fmt: skip
    tomorrow = opened + timedelta(days=1)
    async with workers(env.client, r.ctx):
        handle = await start_run(env.client, r.request)
        assert (
            await paused_on_hosts(handle, r.facts) == f"w until {(opened + timedelta(hours=1)).isoformat()}"
        )
        assert r.maintenance_events() == []
        summary: RunSummary = await handle.result()

    assert summary.status == "succeeded", summary
    plan = r.facts.run_plan(RUN)
    assert plan is not None and plan.host_phase[0].worst_case_s == 24 * 60
    assert r.plan_start() == tomorrow
    starts = r.host_starts(summary)
    assert tomorrow <= starts["pve1"] < tomorrow + timedelta(seconds=5), starts
    assert all(tomorrow <= t for t in starts.values())
