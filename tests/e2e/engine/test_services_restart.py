"""Services left running old libraries: kept in the fact store, in the report, and restarted on request.

A real ``PatchRun`` (time-skipping Temporal server, real activities, the Proxmox adapter against the PVE
simulator, fake Debian guests through the real ``local`` channel, each with a fake ``needrestart`` that
speaks its batch format, ``patchwave_lab/fakeguest/bin/needrestart``; a VM reboot by the simulator
reboots the fake guest behind it: :func:`follow_reboots`). Upgrading openssl leaves services on the old
library in each guest:

* web-1 (``restart_services = "needrestart"``): openssl also flags a reboot (not a kernel): the services
  are restarted instead (``needrestart -r a``), the guest is health-checked and never rebooted;
* app-1 (same group): a kernel came too: it reboots, and needrestart restarts nothing;
* cache-1 (same group): needrestart keeps dbus.service running (its override list), so the reboot the
  guest asked for still happens after nginx.service was restarted;
* db-1 (default policy): nothing is restarted; postgresql.service is recorded (patch result, assessment)
  and the compliance report lists it under "services running old libraries".
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.activities.services import ServiceActivities
from orchestrator.engine.payloads import ServicesResult, VmTask
from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import PatchDetail, ServicesDetail
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from orchestrator.reporting.compliance import build_report
from orchestrator.reporting.render import render
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.support.platformbed import PlatformBed, build_platform_bed

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
RUN = "run-services"
VMS = ("web-1", "app-1", "cache-1", "db-1")
GUESTS = {
    "web-1": {"restart_pkgs": {"openssl": ["nginx.service", "cron.service"]}, "reboot_pkgs": ["openssl"]},
    "app-1": {
        "installed": {"linux-image-amd64": "6.1.0-12"},
        "repo": {"linux-image-amd64": "6.1.0-13"},
        "reboot_pkgs": ["linux-image-amd64"],
        "restart_pkgs": {"openssl": ["nginx.service"]},
    },
    "cache-1": {
        "restart_pkgs": {"openssl": ["nginx.service", "dbus.service"]},
        "reboot_pkgs": ["openssl"],
        "keep_running": ["dbus.service"],
    },
    "db-1": {"restart_pkgs": {"openssl": ["postgresql.service"]}},
}
RESTARTING = """
[[groups]]
name = "restarting"
match = { names = ["web-1", "app-1", "cache-1"] }
[groups.policy]
restart_services = "needrestart"
"""


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02), ssh=False) as simulator:
        yield simulator


def follow_reboots(sim: Simulator, bed: PlatformBed) -> None:
    """The simulator reboots VMs, not our fake guests: a ``guest_rebooted`` event reboots the VM's guest."""

    def listen(kind: str, _subject: str, detail: dict[str, Any]) -> None:
        if kind == "guest_rebooted" and detail.get("name") in bed.guests:
            bed.guests[str(detail["name"])].platform_rebooted()

    sim.cluster.listeners.append(listen)


def bed_for(sim: Simulator, root: Path) -> PlatformBed:
    provider = (
        f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {sim.port}\nca_file = "{sim.ca_file}"\n'
        f'user = "root@pam"\npassword = {{ env = "{PASSWORD_ENV}" }}\npoll_interval = 0.02'
    )
    bed = build_platform_bed(
        root, site="pve", provider_toml=provider, vms=VMS, concurrency=4, extra=RESTARTING, guest_kw=GUESTS
    )
    follow_reboots(sim, bed)
    return bed


async def patch_run(env: WorkflowEnvironment, bed: PlatformBed) -> tuple[RunSummary, FactStore]:
    settings = load_settings(bed.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            request = RunRequest(run_id=RUN, config_digest=settings.digest)
            return await (await start_run(env.client, request)).result(), facts
    finally:
        ctx.close()


def journal(facts: FactStore, step_id: str, action: Action, phase: Phase) -> list[object]:
    return [r.detail for r in facts.step_history(RUN, step_id, action=action) if r.phase is phase]


async def test_stale_services_are_recorded_reported_and_restarted_instead_of_a_reboot(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    bed = bed_for(sim, tmp_path)
    boots = {name: guest.boot_id() for name, guest in bed.guests.items()}
    summary, facts = await patch_run(env, bed)
    try:
        outcomes = {o.vm.name: o for o in summary.vms}
        assert {n: o.status for n, o in outcomes.items()} == dict.fromkeys(VMS, StepStatus.SUCCEEDED)
        web, app, cache, db = (bed.guests[n] for n in VMS)

        # web-1: restarted instead of rebooted, then found healthy
        assert web.restarts() == ["nginx.service", "cron.service"] and web.stale_services() == []
        assert web.boot_id() == boots["web-1"] and outcomes["web-1"].rebooted is False
        step = outcomes["web-1"].step_id
        assert journal(facts, step, Action.RESTART_SERVICES, Phase.RESULT) == [
            ServicesDetail(("nginx.service", "cron.service"), ())
        ]
        [patched] = journal(facts, step, Action.PATCH, Phase.RESULT)
        assert isinstance(patched, PatchDetail) and patched.reboot_required and not patched.kernel_pending
        assert patched.restart_needed == ("nginx.service", "cron.service")
        verified = facts.step_history(RUN, step, action=Action.VERIFY_HEALTH)
        restarted = facts.step_history(RUN, step, action=Action.RESTART_SERVICES)
        assert verified and verified[-1].ok and verified[-1].id > restarted[-1].id  # health after the restart

        # app-1: a kernel still reboots; the reboot (not needrestart) restarted its services
        assert app.restarts() == [] and app.boot_id() != boots["app-1"] and outcomes["app-1"].rebooted
        assert journal(facts, outcomes["app-1"].step_id, Action.RESTART_SERVICES, Phase.INTENT) == []

        # cache-1: nginx restarted, dbus kept running by needrestart -> the required reboot happened after all
        assert cache.restarts() == ["nginx.service"] and cache.boot_id() != boots["cache-1"]
        assert journal(facts, outcomes["cache-1"].step_id, Action.RESTART_SERVICES, Phase.RESULT) == [
            ServicesDetail(("nginx.service", "dbus.service"), ("dbus.service",))
        ]

        # db-1 (restart_services = "none"): kept in the fact store and in the report, nothing restarted
        assert db.restarts() == [] and db.stale_services() == ["postgresql.service"]
        assert db.boot_id() == boots["db-1"]
        [patched] = journal(facts, outcomes["db-1"].step_id, Action.PATCH, Phase.RESULT)
        assert isinstance(patched, PatchDetail) and patched.restart_needed == ("postgresql.service",)
        latest = {a.vm.name: a for a in facts.latest_assessments()}
        assert latest["db-1"].phase == "after" and latest["db-1"].restart_needed == ("postgresql.service",)
        assert latest["web-1"].restart_needed == ()

        report = build_report(facts, datetime.now(UTC))
        machines = {m.name: m for m in report.machines}
        assert (
            machines["db-1"].restart_needed == ("postgresql.service",)
            and machines["db-1"].status == "attention"
        )
        assert machines["web-1"].restart_needed == () and report.totals.restart_needed == 1
        page = render(report, "html")
        assert 'data-field="old-libraries">postgresql.service</td>' in page
        assert "Services running old libraries" in page
        rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
        assert rows["db-1"]["services_old_libraries"] == "postgresql.service"
        assert [
            m["restart_needed"] for m in json.loads(render(report, "json"))["machines"] if m["name"] == "db-1"
        ] == [["postgresql.service"]]
        assert "old libs" in render(report, "table")
    finally:
        facts.close()


async def test_a_second_delivery_of_the_restart_finds_nothing_stale_and_does_nothing(
    env: WorkflowEnvironment, tmp_path: Path, sim: Simulator
) -> None:
    bed = bed_for(sim, tmp_path)
    summary, facts = await patch_run(env, bed)
    facts.close()
    settings = load_settings(bed.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        plan = facts.run_plan(RUN)
        assert plan is not None
        steps = {step.vm.name: step for step in plan.vm_steps}
        for name in ("web-1", "cache-1"):  # restarted (cache-1: and rebooted) by the run
            before = facts.step_history(RUN, steps[name].step_id)
            redo = ServiceActivities(ctx).vm_restart_services(VmTask(RUN, steps[name], ""))
            assert redo == ServicesResult()  # reality asked first: nothing stale, nothing restarted
            assert facts.step_history(RUN, steps[name].step_id) == before
        assert bed.guests["web-1"].restarts() == ["nginx.service", "cron.service"]
        assert bed.guests["cache-1"].restarts() == ["nginx.service"]
        assert {o.vm.name for o in summary.vms if o.status is StepStatus.SUCCEEDED} == set(VMS)
    finally:
        ctx.close()
        facts.close()
