"""Regression (found by crash injection, proxmox/worker seed pve1 #4, kill point records:9): a node
that could not be rebooted, and a halted run.

The worker was killed inside ``host_enter_maintenance(pve1)`` after the HA maintenance request was
sent but before the provider moved the guests the HA manager does not move (PVE HA maintenance
migrates HA-managed guests only). The retried activity saw the node in maintenance, recorded as
this run's, recorded "in" and returned; ``host_reboot`` then (rightly) refused to reboot a node
still running web-1 and app-1, and the run halted with the node on its old kernel. On vSphere the
same shortcut was harmless: a host is only in maintenance once it is empty.

Now a retry on a node already in maintenance for this run finishes the evacuation
(``enter_maintenance`` is idempotent and only does what is left). The activities are called
directly, as the retry calls them, against the PVE simulator of the crash scenario.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.activities.hosts import HostActivities
from orchestrator.engine.payloads import HostTask
from orchestrator.facts.store import FactStore
from tests.crash.scenarios import PVE_NEW_KERNEL, ProxmoxScenario
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e

RUN = "run-enter-retry"
NODE = "pve1"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[HostActivities, HostTask, object]]:
    scenario = ProxmoxScenario()
    try:
        target = scenario.target(tmp_path, unused_port())
        settings = load_settings(target.config, environ=target.env)
        step = next(s for s in operations.plan(settings, guests=False).host_steps if s.host.name == NODE)
        assert step.evacuate
        facts = FactStore(settings.state.facts_path)
        ctx = Context(settings, facts)
        try:
            yield HostActivities(ctx), HostTask(RUN, step), scenario.simulator(target)
        finally:
            ctx.close()
            facts.close()
    finally:
        scenario.close()


def ha_maintenance(acts: HostActivities, task: HostTask, sim) -> None:
    """Send the HA maintenance request over the node's SSH, as the killed attempt did, and wait
    until the CRM applied it (the simulator's HA manager acts after its delay)."""
    code, _, err = sim._run_ssh(NODE, f"ha-manager crm-command node-maintenance enable {NODE}")
    assert code == 0, err
    provider = acts.ctx.provider(task.step.host.site)
    deadline = time.monotonic() + 30  # "never", not a timing
    while not provider.get_host(task.step.host).in_maintenance:
        assert time.monotonic() < deadline, "the HA manager never applied the maintenance request"
        time.sleep(0.05)


def running_on(sim, node: str) -> list[str]:
    with sim.cluster.lock:
        sim.cluster.tick()
        return sorted(g.name for g in sim.cluster.guests_on(node) if g.status == "running")


def test_a_retried_enter_maintenance_finishes_the_evacuation(node) -> None:
    acts, task, sim = node
    assert running_on(sim, NODE) == ["app-1", "web-1"]
    # What the killed attempt left: its intent recorded, the HA request sent, nothing moved yet.
    acts.ctx.facts.record_maintenance(RUN, task.step.host, "entering")
    ha_maintenance(acts, task, sim)
    assert running_on(sim, NODE) == ["app-1", "web-1"]  # neither is HA-managed

    acts.host_enter_maintenance(task)  # the retry

    assert running_on(sim, NODE) == []
    acts.host_patch(task)
    acts.host_reboot(task)  # refused before the fix: "pve1 still runs guests"
    assert acts.host_verify(task).build == PVE_NEW_KERNEL
    acts.host_exit_maintenance(task)
    assert acts.ctx.facts.hosts_in_maintenance() == []


def test_a_node_an_admin_put_in_maintenance_is_left_alone(node) -> None:
    acts, task, sim = node
    ha_maintenance(acts, task, sim)  # an admin's, before the run

    acts.host_enter_maintenance(task)  # not this run's: no evacuation, nothing recorded as ours

    assert running_on(sim, NODE) == ["app-1", "web-1"]
    assert acts.ctx.facts.hosts_in_maintenance() == []
