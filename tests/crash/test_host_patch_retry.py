"""Regression (found by crash injection, vsphere/server seed ci1 #21): a host left at its old build.

The dev server was killed while ``host_patch`` ran: the install finished (ESXi stages the new build;
the reboot applies it) but its completion never reached Temporal. The retried ``host_patch`` scanned
again, found the bulletin *installed* — nothing pending — and answered "no reboot required", so the
host was verified and reported SUCCEEDED still running the old build. Now a retry that finds nothing
to install keeps the reboot of an earlier attempt of the same run (recorded result, or an attempt
interrupted before its result: assume it installed).

The activities are called directly, as a retry would call them, against our vcsim.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.activities.hosts import HostActivities
from orchestrator.engine.payloads import HostTask
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.store import FactStore
from tests.crash.scenarios import DEPOT, ESX_NEW, ESX_OLD, PASSWORD_ENV
from tests.simulators.vcsim.launcher import Vcsim, start_or_skip

pytestmark = pytest.mark.e2e

RUN = "run-host-retry"


@pytest.fixture
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip("-host", "2", "-vm", "2", "-balance", "-host-reboot-ms", "200",
                        "-esx-build", ESX_OLD, "-patch-to", f"7.0.3:{ESX_NEW}")  # fmt: skip
    yield sim
    sim.stop()


@pytest.fixture
def hosts(tmp_path: Path, sim: Vcsim) -> Iterator[tuple[HostActivities, HostTask]]:
    table = sim.provider_table()
    config = tmp_path / "patchwave.toml"
    config.write_text(f"""
[state]
dir = "{tmp_path / "state"}"
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
evacuate = true
depot_urls = ["{DEPOT}"]
""")
    settings = load_settings(config, environ={PASSWORD_ENV: sim.password})
    step = operations.plan(settings, guests=False).host_steps[0]
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        yield HostActivities(ctx), HostTask(RUN, step)
    finally:
        ctx.close()
        facts.close()


def build_of(sim: Vcsim, name: str) -> str:
    return next(h["build"] for h in sim.hosts() if h["name"] == name)


def test_a_retried_host_patch_keeps_the_reboot_of_the_attempt_that_installed(hosts, sim) -> None:
    acts, task = hosts
    acts.host_enter_maintenance(task)
    first = acts.host_patch(task)  # installs; its completion is what the crash lost
    assert first.changed and first.reboot_required

    retried = acts.host_patch(task)  # the platform now lists the bulletin as installed

    assert retried.reboot_required, retried
    acts.host_reboot(task)
    assert acts.host_verify(task).build == ESX_NEW == build_of(sim, task.step.host.name)
    acts.host_exit_maintenance(task)


def test_an_attempt_interrupted_before_its_result_counts_as_installed(hosts, sim) -> None:
    acts, task = hosts
    acts.host_enter_maintenance(task)
    acts.host_patch(task)
    facts = acts.ctx.facts
    # what a crash between the install and record_result leaves: an intent without a result
    last_result = facts.step_history(RUN, task.step.step_id, action=Action.HOST_PATCH)[-1]
    assert last_result.phase is Phase.RESULT
    with sqlite3.connect(acts.ctx.settings.state.facts_path) as db:  # the file, as the crash left it
        db.execute("DELETE FROM steps WHERE id = ?", (last_result.id,))

    assert acts.host_patch(task).reboot_required
    acts.host_exit_maintenance(task)


def test_a_first_attempt_with_nothing_to_install_needs_no_reboot(hosts, sim) -> None:
    acts, task = hosts
    sim.set_host_build(task.step.host.name, "7.0.3", ESX_NEW)  # already patched before the run
    acts.host_enter_maintenance(task)
    first = acts.host_patch(task)
    acts.host_exit_maintenance(task)
    assert (first.changed, first.reboot_required) == (False, False)
