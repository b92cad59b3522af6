"""PatchRun on Temporal's time-skipping test server, with the real activities and workers.

The activities run for real against libvirt's test driver (a custom node with several domains,
one fresh connection per worker run) and fake Debian guests reached through the real ``local``
channel (patchwave_lab/fakeguest). Soak timers, approval timeouts and ring promotion are durable timers,
which the test server skips: a 6 h soak costs nothing. Times asserted are workflow times
(``workflow.now()`` recorded in the outcomes), never the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from orchestrator import operations
from orchestrator.engine.payloads import ApprovalRequest
from orchestrator.engine.runs import progress, resume_run, start_run
from orchestrator.engine.workers import workers
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.facts.actions import Action
from orchestrator.model import RunSummary, StepStatus, vm_step_id
from orchestrator.windows import next_window
from providers.base import VmRef
from tests.support.loopback import unused_port
from tests.support.rollouts import Rollout, made
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

SPECS = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
RUN_ID = "run-timeskip"


def make_bed(tmp_path: Path, specs=SPECS, **kwargs) -> DriverBed:
    return build(tmp_path / "bed", specs, port=unused_port(), **kwargs)


@pytest.fixture
def rollout_factory(env: WorkflowEnvironment) -> Iterator[Callable[[DriverBed], Rollout]]:
    yield from made(lambda bed: Rollout(env, bed, RUN_ID))


async def run_to_end(rollout: Rollout) -> RunSummary:
    async with workers(rollout.env.client, rollout.ctx):
        handle = await start_run(rollout.env.client, rollout.request)
        return await handle.result()


def by_name(summary: RunSummary) -> dict:
    return {o.vm.name: o for o in summary.vms}


async def test_a_soak_timer_is_skipped_and_rings_run_in_order(tmp_path: Path, rollout_factory) -> None:
    # snapshot_ttl (12h) outlives the soak (6h): the canary's snapshot is still kept at the end.
    bed = make_bed(tmp_path, rings={"canary": 'soak = "6h"', "main": ""}, ttl="12h")
    rollout = rollout_factory(bed)
    summary = await run_to_end(rollout)

    outcomes = by_name(summary)
    assert summary.status == "succeeded", summary
    assert {o.status for o in summary.vms} == {StepStatus.SUCCEEDED}
    canary_done = datetime.fromisoformat(outcomes["pw-canary-1"].finished_at)
    for name in ("pw-web-1", "pw-web-2"):
        assert datetime.fromisoformat(outcomes[name].started_at) >= canary_done + timedelta(hours=6)
    for name, guest in bed.guests.items():
        assert guest.installed() == {"demo-app": "1.1", "openssl": "3.0.15"}, name
        assert len(guest.patches()) == 2 and guest.upgrades() == 1, name
        snaps = rollout.snapshots(name)
        assert [s.ownership.run_id for s in snaps] == ["run-timeskip"], name  # one, ours, kept until TTL
        assert snaps[0].id == outcomes[name].snapshot_id
    states = {r.vm.name: r.state for r in rollout.facts.snapshots(run_id="run-timeskip")}
    assert states == {"pw-canary-1": "kept", "pw-web-1": "kept", "pw-web-2": "kept"}
    assert rollout.facts.get_run("run-timeskip").status == "succeeded"


async def test_the_failure_budget_halts_the_run_and_skips_the_rest(tmp_path: Path, rollout_factory) -> None:
    specs = (
        GuestSpec("pw-canary-1", ring="canary", broken_after_patch=True),
        GuestSpec("pw-web-1"),
        GuestSpec("pw-web-2"),
    )
    bed = make_bed(tmp_path, specs, rings={"canary": 'soak = "1h"', "main": ""})
    rollout = rollout_factory(bed)
    summary = await run_to_end(rollout)

    outcomes = by_name(summary)
    assert summary.status == "halted"
    assert "failure budget exhausted" in summary.halted_reason and "pw-canary-1" in summary.halted_reason
    # The snapshot was reverted in libvirt, but without a disk the fake guest stays broken: FAILED.
    canary = outcomes["pw-canary-1"]
    assert canary.status is StepStatus.FAILED
    assert "still unhealthy after revert" in canary.error
    assert rollout.facts.snapshot("run-timeskip", canary.step_id).state == "reverted"
    for name in ("pw-web-1", "pw-web-2"):
        assert outcomes[name].status is StepStatus.SKIPPED
        assert "failure budget exhausted" in outcomes[name].error
        assert bed.guests[name].patches() == [] and rollout.snapshots(name) == []
    run = rollout.facts.get_run("run-timeskip")
    assert run.status == "halted" and "failure budget" in run.reason
    skipped = [rollout.facts.outcome(RUN_ID, outcomes[n].step_id).status for n in ("pw-web-1", "pw-web-2")]
    assert skipped == [StepStatus.SKIPPED, StepStatus.SKIPPED]


async def test_an_approval_gate_waits_for_the_approve_signal(tmp_path: Path, rollout_factory) -> None:
    bed = make_bed(tmp_path, rings={"canary": "approval = true", "main": ""})
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        handle = await start_run(rollout.env.client, rollout.request)
        waiting = None
        for _ in range(600):  # poll the query (real time, no skipping outside result())
            waiting = await progress(handle)
            if waiting is not None and waiting.waiting_for:
                break
            await asyncio.sleep(0.1)
        assert waiting is not None and waiting.waiting_for == "canary" and waiting.phase == "approval"
        # progress counts every VM and lists only those in flight (none while waiting)
        counts = {s: waiting.count(s) for s in (StepStatus.SUCCEEDED, StepStatus.PENDING, StepStatus.RUNNING)}
        assert counts == {StepStatus.SUCCEEDED: 1, StepStatus.PENDING: 2, StepStatus.RUNNING: 0}
        assert waiting.vms == () and waiting.total == 3
        assert bed.guests["pw-web-1"].patches() == []
        await handle.execute_update(PatchRun.approve, ApprovalRequest("canary"))
        summary = await handle.result()
    assert summary.status == "succeeded"
    assert {o.status for o in summary.vms} == {StepStatus.SUCCEEDED}


async def test_an_unapproved_ring_halts_when_the_approval_times_out(tmp_path: Path, rollout_factory) -> None:
    bed = make_bed(tmp_path, rings={"canary": "approval = true", "main": ""})
    rollout = rollout_factory(bed)
    summary = await run_to_end(rollout)  # result() lets the server skip the 24 h approval wait

    outcomes = by_name(summary)
    assert summary.status == "halted"
    assert "not approved within 24h" in summary.halted_reason
    assert outcomes["pw-canary-1"].status is StepStatus.SUCCEEDED
    assert (
        outcomes["pw-web-1"].status is StepStatus.SKIPPED
        and outcomes["pw-web-2"].status is StepStatus.SKIPPED
    )
    assert bed.guests["pw-web-2"].patches() == []


def daily_window(opens: datetime, *, duration: str = "2h", cutoff: str = "10m") -> dict[str, str]:
    at = opens.astimezone(UTC)
    return {
        "nightly": f'cron = "{at.minute} {at.hour} * * *"\nduration = "{duration}"\ncutoff = "{cutoff}"\n'
        'timezone = "UTC"'
    }


async def test_a_wave_bound_to_a_window_waits_for_it_to_open(tmp_path: Path, env, rollout_factory) -> None:
    now = await env.get_current_time()
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    bed = make_bed(
        tmp_path, specs, windows=daily_window(now + timedelta(hours=3)), group_windows={"main": "nightly"}
    )
    rollout = rollout_factory(bed)
    start, end = next_window(rollout.settings.window("nightly"), now)
    assert start > now  # the window is closed when the run starts

    summary = await run_to_end(rollout)

    assert summary.status == "succeeded"
    for outcome in summary.vms:
        assert outcome.status is StepStatus.SUCCEEDED
        assert start <= datetime.fromisoformat(outcome.started_at) < end - timedelta(minutes=10)


async def test_a_vm_that_no_longer_fits_the_open_window_waits_for_the_next_one(
    tmp_path: Path, env, rollout_factory
) -> None:
    now = await env.get_current_time()
    # The window opened 1h50m ago and closes in 10 minutes; a VM needs 30m + its rollback.
    bed = make_bed(
        tmp_path,
        (GuestSpec("pw-web-1"),),
        vm_duration="30m",
        windows=daily_window(now - timedelta(minutes=110), cutoff="0s"),
        group_windows={"main": "nightly"},
    )
    rollout = rollout_factory(bed)
    current_start, current_end = next_window(rollout.settings.window("nightly"), now)
    assert current_start <= now < current_end

    summary = await run_to_end(rollout)

    started = datetime.fromisoformat(summary.vms[0].started_at)
    assert summary.vms[0].status is StepStatus.SUCCEEDED
    assert current_end + timedelta(hours=20) <= started < current_end + timedelta(hours=24)


async def test_resuming_a_halted_run_continues_with_the_vms_it_skipped(
    tmp_path: Path, rollout_factory
) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary", broken_after_patch=True), GuestSpec("pw-web-1"))
    # promotion "latest": forced past a canary that tested nothing, main installs what it is offered
    # (pinned promotion would hold every update back: tests/e2e/engine/test_pinned_promotion.py)
    bed = make_bed(tmp_path, specs, rings={"canary": "", "main": ""}, policy='promotion = "latest"\n')
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        halted = await (await start_run(rollout.env.client, rollout.request)).result()
        assert halted.status == "halted" and "failure budget exhausted" in halted.halted_reason
        # Resuming acknowledges the budget; the canary's ring gate still refuses promotion (FAILED).
        gated = await (await resume_run(rollout.env.client, RUN_ID, rollout.facts)).result()
        assert gated.status == "halted" and gated.halted_reason.startswith("ring 'canary' has 1 failed"), (
            gated
        )
        assert bed.guests["pw-web-1"].upgrades() == 0
        # The operator looks at pw-canary-1, forces its ring past the gate and resumes the run.
        forced = await operations.approve(rollout.settings, RUN_ID, "canary", force=True, by="test")
        assert forced.forced and forced.resume
        summary = await (await resume_run(rollout.env.client, RUN_ID, rollout.facts)).result()

    outcomes = by_name(summary)
    assert outcomes["pw-canary-1"].status is StepStatus.FAILED  # recorded, not redone
    assert outcomes["pw-web-1"].status is StepStatus.SUCCEEDED
    assert summary.status == "failed" and summary.halted_reason == ""
    assert bed.guests["pw-canary-1"].upgrades() == 1 and bed.guests["pw-web-1"].upgrades() == 1
    assert rollout.facts.attempts(RUN_ID, outcomes["pw-canary-1"].step_id, Action.SNAPSHOT) == 1


async def test_cancelling_a_run_mid_patch_reverts_that_vm(tmp_path: Path, rollout_factory) -> None:
    specs = (GuestSpec("pw-web-1"),)
    bed = make_bed(tmp_path, specs)
    bed.guests["pw-web-1"].linger_after_apply(8)
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        handle = await start_run(rollout.env.client, rollout.request)
        for _ in range(600):  # until the upgrade is installed and vm_patch is still lingering
            if bed.guests["pw-web-1"].patches():
                break
            await asyncio.sleep(0.1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    step_id = vm_step_id(VmRef("td", bed.uuids["pw-web-1"], "pw-web-1"))
    outcome = rollout.facts.outcome(RUN_ID, step_id)
    assert outcome.status is StepStatus.ROLLED_BACK and "run cancelled while patching" in outcome.error
    assert rollout.facts.snapshot(RUN_ID, step_id).state == "reverted"
    run = rollout.facts.get_run(RUN_ID)
    assert run.status == "cancelled"
