"""A scheduled run is a rollout: the canary first, its soak, the ring health gate, the approval, one
failure budget — with real schedules on a real ``temporal server start-dev``, real workers and
activities, libvirt's test driver and fake Debian guests (patchwave_lab/fakeguest).

The configuration has the shape of config/patchwave.example.toml: a ``canary`` group in ring
``canary`` without a window of its own, and the ``main`` ring's group bound to a window. The window
("always") opens every minute and lasts an hour, so a triggered run is admitted at once; soaks are a
few seconds of real time (the dev server does not skip time). Times asserted are workflow times
recorded in the outcomes.

Before schedules covered rollouts (one schedule per site and *windowed group*), the canary group was
never scheduled: the only schedule was the main group's, its run patched pw-web-* without the canary,
soak, gate or approval, and the three dev-server tests here failed.

The last test runs the run a schedule starts (its action's ``RunRequest``) on Temporal's time-skipping
test server (which has no schedules) to show where the windows fall in it: started before its window
opens, as a schedule with a pre-notice starts it, the run patches the canary — a group without a
window — when the schedule's window opens, and a group bound to another window when that one opens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.payloads import CENTRAL_QUEUE, ApprovalRequest, RunProgress
from orchestrator.engine.runs import progress
from orchestrator.engine.schedules import rollouts, sync_schedules
from orchestrator.engine.workers import workers
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.facts.store import FactStore
from orchestrator.model import RunSummary, StepStatus, VmOutcome
from orchestrator.windows import next_window
from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

ALWAYS = {"always": 'cron = "* * * * *"\nduration = "1h"\ncutoff = "1m"'}
MAIN = ("pw-web-1", "pw-web-2")


@pytest.fixture
async def dev(tmp_path: Path) -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        dev_server_database_filename=str(tmp_path / "temporal.db"),
        ui=False,
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


def example_shaped(tmp_path: Path, canary: str, *, broken_canary: bool = False, budget: int = 0) -> DriverBed:
    """canary (ring canary, no window) + pw-web-1/2 (ring main, window "always"); ``canary``: the
    extra lines of [rings.canary]."""
    specs = (GuestSpec("pw-canary-1", ring="canary", broken_after_patch=broken_canary),
             GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))  # fmt: skip
    return build(tmp_path / "bed", specs, port=unused_port(), rings={"canary": canary, "main": ""},
                 windows=ALWAYS, group_windows={"main": "always"}, budget=budget)  # fmt: skip


class Scheduled:
    """The configuration's schedules synced to the dev server, and workers for the testbed."""

    def __init__(self, client: Client, bed: DriverBed) -> None:
        self.client, self.bed = client, bed
        self.settings = load_settings(bed.config)
        self.facts = FactStore(self.settings.state.facts_path)
        self.ctx = Context(self.settings, self.facts)

    def close(self) -> None:
        self.ctx.close()
        self.facts.close()

    async def fire_the_only_schedule(self) -> WorkflowHandle[PatchRun, RunSummary]:
        """Sync, check there is exactly one schedule, trigger it; the handle of the run it started."""
        result = await sync_schedules(self.client, self.settings, datetime.now(UTC), known=())
        assert len(result.created) == 1, result  # one rollout, not one schedule per group
        handle = self.client.get_schedule_handle(result.created[0])
        await handle.trigger()
        for _ in range(300):
            running = (await handle.describe()).info.running_actions
            if running:
                return self.client.get_workflow_handle(running[0].workflow_id, result_type=RunSummary)
            await asyncio.sleep(0.1)
        raise AssertionError(f"schedule {result.created[0]} started no run")


@pytest.fixture
def scheduled(dev: WorkflowEnvironment):
    made: list[Scheduled] = []

    def make(bed: DriverBed) -> Scheduled:
        made.append(Scheduled(dev.client, bed))
        return made[-1]

    yield make
    for one in made:
        one.close()


async def until(handle: WorkflowHandle[PatchRun, RunSummary], done: str) -> RunProgress | None:
    """Poll the run's progress until ``done`` ("approval": waiting for an approval; "soak": soaking
    after a ring that succeeded) or until the run is closed (then whatever it last said)."""
    last = None
    for _ in range(1200):
        last = await progress(handle) or last
        if last is not None and last.phase == done:
            return last
        if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"the run never reached {done!r}: {last}")


def by_name(summary: RunSummary) -> dict[str, VmOutcome]:
    return {o.vm.name: o for o in summary.vms}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_fired_schedule_patches_the_canary_first_soaks_waits_for_approval_then_main(
    tmp_path: Path, scheduled
) -> None:
    bed = example_shaped(tmp_path, 'soak = "3s"\napproval = true')
    one = scheduled(bed)
    async with workers(one.client, one.ctx):
        run = await one.fire_the_only_schedule()
        waiting = await until(run, "approval")
        assert waiting is not None and (waiting.phase, waiting.waiting_for) == ("approval", "canary"), waiting
        # the progress query is bounded: counters for the run, the VMs in flight only (none now)
        assert waiting.vms == () and waiting.total == 3, waiting
        assert (waiting.count(StepStatus.SUCCEEDED), waiting.count(StepStatus.PENDING)) == (1, 2), waiting
        canary = one.facts.outcomes(waiting.run_id)
        assert [(o.vm.name, o.status) for o in canary] == [("pw-canary-1", StepStatus.SUCCEEDED)], canary
        assert [bed.guests[n].patches() for n in MAIN] == [[], []]  # main waits for the approval
        await run.execute_update(PatchRun.approve, ApprovalRequest("canary"))
        summary = await asyncio.wait_for(run.result(), 300)
    assert summary.status == "succeeded", summary
    outcomes = by_name(summary)
    assert {o.status for o in outcomes.values()} == {StepStatus.SUCCEEDED} and len(outcomes) == 3
    canary_done = at(outcomes["pw-canary-1"].finished_at)
    for name in MAIN:
        assert at(outcomes[name].started_at) >= canary_done + timedelta(seconds=3)  # after the soak
        assert bed.guests[name].installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
    record = one.facts.get_run(summary.run_id)
    assert record is not None and record.requested_by.startswith("schedule:")


async def test_a_canary_unhealthy_after_its_soak_stops_the_scheduled_rollout(
    tmp_path: Path, scheduled
) -> None:
    bed = example_shaped(tmp_path, 'soak = "8s"')
    one = scheduled(bed)
    async with workers(one.client, one.ctx):
        run = await one.fire_the_only_schedule()
        soaking = await until(run, "soak")
        assert soaking is not None and (soaking.phase, soaking.ring) == ("soak", "canary"), soaking
        # the canary breaks while it soaks: the ring health gate after the soak must notice
        (bed.guests["pw-canary-1"].state / "broken").write_text("demo-app 1.1\n")
        summary = await asyncio.wait_for(run.result(), 300)
    assert summary.status == "halted", summary
    assert "ring 'canary' is unhealthy after its soak" in summary.halted_reason
    outcomes = by_name(summary)
    for name in MAIN:
        assert outcomes[name].status is StepStatus.SKIPPED and bed.guests[name].patches() == []


async def test_one_failure_budget_a_failed_canary_halts_before_main(tmp_path: Path, scheduled) -> None:
    bed = example_shaped(tmp_path, 'soak = "1s"', broken_canary=True, budget=0)
    one = scheduled(bed)
    async with workers(one.client, one.ctx):
        run = await one.fire_the_only_schedule()
        summary = await asyncio.wait_for(run.result(), 300)
    assert summary.status == "halted", summary
    assert "failure budget exhausted" in summary.halted_reason and "pw-canary-1" in summary.halted_reason
    outcomes = by_name(summary)
    assert outcomes["pw-canary-1"].status is StepStatus.FAILED
    for name in MAIN:
        assert (
            outcomes[name].status is StepStatus.SKIPPED and "failure budget exhausted" in outcomes[name].error
        )
        assert bed.guests[name].patches() == []


def daily(opens: datetime) -> str:
    return f'cron = "{opens.minute} {opens.hour} * * *"\nduration = "2h"\ncutoff = "10m"\ntimezone = "UTC"'


async def test_in_a_scheduled_run_the_canary_waits_for_the_schedules_window_and_main_for_its_own(
    tmp_path: Path, env: WorkflowEnvironment
) -> None:
    now = await env.get_current_time()
    nightly, late = now + timedelta(hours=3), now + timedelta(hours=5)
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings={"canary": 'soak = "30m"', "main": ""},
                windows={"nightly": daily(nightly), "late": daily(late)},
                group_windows={"main": "late"})  # fmt: skip
    with bed.config.open("a") as config:
        config.write('\n[[schedules]]\nname = "nightly"\nwindow = "nightly"\n')
    settings = load_settings(bed.config)
    [rollout] = rollouts(settings)
    opens = {w: next_window(settings.window(w), now)[0] for w in ("nightly", "late")}
    assert now < opens["nightly"] < opens["late"]  # started before its window, as with a pre-notice

    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            run_id = f"{rollout.schedule_id}-{now.isoformat(timespec='seconds')}"  # as a schedule names it
            handle = await env.client.start_workflow(PatchRun.run, rollout.request(), id=run_id,
                                                     task_queue=CENTRAL_QUEUE)  # fmt: skip
            summary = await handle.result()  # lets the server skip the window waits and the soak
    finally:
        ctx.close()
        facts.close()
    assert summary.status == "succeeded" and summary.run_id == run_id, summary
    outcomes = by_name(summary)
    canary = outcomes["pw-canary-1"]
    assert opens["nightly"] <= at(canary.started_at) < opens["nightly"] + timedelta(minutes=10)
    for name in MAIN:
        assert at(outcomes[name].started_at) >= max(
            opens["late"], at(canary.finished_at) + timedelta(minutes=30)
        )
        assert outcomes[name].status is StepStatus.SUCCEEDED
