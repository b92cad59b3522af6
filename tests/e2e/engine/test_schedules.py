"""Temporal schedules kept in sync with the configuration, against a real local dev server: one per
rollout (``[[schedules]]``, or derived per window), and the migration from per-group schedules.

The server is `temporal server start-dev` with its SQLite file in tmp_path (so a restart keeps the
schedules). No worker runs here: a schedule that fires starts a PatchRun execution that stays
pending, which is exactly what the overlap test needs; the executions are terminated at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.payloads import CENTRAL_QUEUE
from orchestrator.engine.schedules import PREFIX, desired, fire_times, ours, rollouts, sync_schedules
from orchestrator.model import RunRequest
from orchestrator.windows import next_window

pytestmark = pytest.mark.e2e

# The Friday before a spring-forward weekend, far enough ahead that the server (real clock) lists the
# fire times as future actions.
NOW = datetime(2036, 3, 21, 12, 0, tzinfo=UTC)
WEEKEND, NIGHTS = f"{PREFIX}weekend", f"{PREFIX}nights"
# No [[schedules]]: one derived schedule per window a group names ("adhoc" has none: not scheduled).
CONFIG = """
[providers.lab]
kind = "libvirt"
uri = "test:///default"
[providers.dr]
kind = "libvirt"
uri = "test:///default"
[targets]
names = ["*"]
[[groups]]
name = "web"
match = { names = ["web-*"] }
window = "{web_window}"
[[groups]]
name = "db"
match = { names = ["db-*"] }
window = "nights"
[[groups]]
name = "adhoc"
match = { names = ["tmp-*"] }
[windows.weekend]
cron = "30 2 * * SUN"
duration = "3h"
timezone = "Europe/Berlin"
cutoff = "20m"
[windows.nights]
rrule = "FREQ=DAILY;BYHOUR=23;BYMINUTE=0"
duration = "4h"
timezone = "America/New_York"
exdates = ["2036-03-23"]
[notifications]
prenotice = "{prenotice}"
"""


def settings_for(
    tmp_path: Path, *, web_window: str = "weekend", prenotice: str = "2h", schedules: str = ""
) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(CONFIG.replace("{web_window}", web_window).replace("{prenotice}", prenotice) + schedules)
    return load_settings(path, environ={})


async def dev_server(db: Path) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), dev_server_database_filename=str(db), ui=False
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WorkflowEnvironment]:
    environment = await dev_server(tmp_path / "temporal.db")
    try:
        yield environment
    finally:
        await environment.shutdown()


async def listed(client: Client, expected: set[str]) -> list[str]:
    """Our schedules once visibility (eventually consistent) lists them all."""
    for _ in range(100):
        found = await ours(client)
        if set(found) == expected:
            return found
        await asyncio.sleep(0.1)
    return await ours(client)


async def test_one_schedule_per_window_when_the_file_has_no_schedules_table(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    result = await sync_schedules(env.client, settings, NOW, known=())

    expected = {WEEKEND, NIGHTS}
    assert set(result.created) == expected and not (result.updated or result.deleted)
    assert set(await listed(env.client, expected)) == expected  # "adhoc" has no window: no schedule

    described = await env.client.get_schedule_handle(WEEKEND).describe()
    action = described.schedule.action
    assert (action.workflow, action.id, action.task_queue) == ("PatchRun", WEEKEND, CENTRAL_QUEUE)
    [request] = await env.client.data_converter.decode(action.args, [RunRequest])
    assert request == RunRequest(run_id="", config_digest="", groups=("web",), sites=("dr", "lab"),
                                 window="weekend", requested_by=f"schedule:{WEEKEND}")  # fmt: skip
    policy = described.schedule.policy
    assert policy.overlap is ScheduleOverlapPolicy.SKIP
    assert policy.catchup_window == timedelta(hours=2) + timedelta(hours=2, minutes=40)  # prenotice + usable

    # The server's next action times are our window starts minus the 2 h pre-notice:
    # Sunday 03-23 02:30 CET = 01:30 UTC; on 03-30 02:30 does not exist -> 03:30 CEST = 01:30 UTC;
    # 04-06 02:30 CEST = 00:30 UTC.
    fires = [datetime(2036, 3, 22, 23, 30, tzinfo=UTC), datetime(2036, 3, 29, 23, 30, tzinfo=UTC),
             datetime(2036, 4, 5, 22, 30, tzinfo=UTC)]  # fmt: skip
    assert described.info.next_action_times[:3] == fires
    expected_fires = fire_times(settings.window("weekend"), NOW, prenotice_s=7200)
    assert list(expected_fires[:3]) == fires
    for fire in expected_fires:
        assert fire + timedelta(hours=2) == next_window(settings.window("weekend"), fire)[0]


async def test_the_rrule_schedule_skips_the_exdate(env: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, prenotice="0s")
    schedule, _ = desired(next(t for t in rollouts(settings) if t.schedule_id == NIGHTS), settings, NOW)
    days = [(c.month[0].start, c.day_of_month[0].start, c.hour[0].start) for c in schedule.spec.calendars[:4]]
    # 23:00 New York (EDT since 03-09) = 03:00 UTC the next day; the window of the 23rd is an exdate
    assert days == [(3, 22, 3), (3, 23, 3), (3, 25, 3), (3, 26, 3)]


async def test_resync_changes_only_what_the_config_changed(env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = env.client
    weekly = '[[schedules]]\nname = "weekly"\nwindow = "weekend"\ngroups = ["web"]\n'
    both = weekly + '[[schedules]]\nname = "db"\nwindow = "nights"\ngroups = ["db"]\n'
    await sync_schedules(client, settings_for(tmp_path, schedules=both), NOW, known=())
    again = await sync_schedules(client, settings_for(tmp_path, schedules=both), NOW, known=())
    assert again.created == () and again.updated == () and len(again.unchanged) == 2

    await client.get_schedule_handle(f"{PREFIX}weekly").pause(note="paused by an operator")
    moved = both.replace('window = "weekend"', 'window = "nights"')
    result = await sync_schedules(client, settings_for(tmp_path, schedules=moved), NOW, known=())
    assert result.updated == (f"{PREFIX}weekly",) and result.unchanged == (f"{PREFIX}db",)
    # an operator's pause (and note) survive the update of the schedule's spec
    paused = await client.get_schedule_handle(f"{PREFIX}weekly").describe()
    assert paused.schedule.state.paused and paused.schedule.state.note == "paused by an operator"
    first = paused.schedule.spec.calendars[0]
    assert (first.day_of_month[0].start, first.hour[0].start) == (22, 1)  # 23:00 EDT - 2 h: the new window
    [request] = await client.data_converter.decode(paused.schedule.action.args, [RunRequest])
    assert request.window == "nights"

    unpaused = moved.replace('groups = ["db"]', 'groups = ["db", "adhoc"]')
    widened = await sync_schedules(client, settings_for(tmp_path, schedules=unpaused), NOW, known=())
    assert widened.updated == (f"{PREFIX}db",)
    db = await client.get_schedule_handle(f"{PREFIX}db").describe()
    assert "groups db, adhoc" in (db.schedule.state.note or "") and not db.schedule.state.paused


async def test_schedules_the_config_dropped_are_deleted_and_foreign_ones_kept(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = env.client
    settings = settings_for(tmp_path)
    await sync_schedules(client, settings, NOW, known=())
    foreign, _ = desired(rollouts(settings)[0], settings, NOW)
    await client.create_schedule("someone-elses-schedule", foreign)
    await listed(client, {WEEKEND, NIGHTS})

    no_web = settings_for(tmp_path, web_window="")  # "web" has no window any more: no "weekend" schedule
    result = await sync_schedules(client, no_web, NOW)  # `known` from Temporal's list
    assert result.deleted == (WEEKEND,)
    assert await listed(client, {NIGHTS}) == [NIGHTS]
    await client.get_schedule_handle("someone-elses-schedule").describe()  # still there


async def test_the_first_sync_after_the_upgrade_replaces_the_per_group_schedules(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Earlier versions kept one schedule per (site, windowed group): patchwave-sched-<site>-<group>."""
    client = env.client
    settings = settings_for(tmp_path, schedules='[[schedules]]\nname = "weekly"\nwindow = "weekend"\n')
    old_ids = {f"{PREFIX}{site}-{group}" for site in ("lab", "dr") for group in ("web", "db")}
    old_style, _ = desired(rollouts(settings)[0], settings, NOW)
    for old in sorted(old_ids):
        await client.create_schedule(old, old_style)
    await listed(client, old_ids)

    result = await sync_schedules(client, settings, NOW)  # serve's first sync: `known` from Temporal's list
    assert result.created == (f"{PREFIX}weekly",) and set(result.deleted) == old_ids
    assert await listed(client, {f"{PREFIX}weekly"}) == [f"{PREFIX}weekly"]
    described = await client.get_schedule_handle(f"{PREFIX}weekly").describe()
    [request] = await client.data_converter.decode(described.schedule.action.args, [RunRequest])
    assert (request.groups, request.sites, request.window) == (("web", "db", "adhoc", "default"),
                                                               ("dr", "lab"), "weekend")  # fmt: skip
    again = await sync_schedules(client, settings, NOW)
    assert again.deleted == () and again.unchanged == (f"{PREFIX}weekly",)


async def test_a_fired_schedule_runs_once_at_a_time(env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = env.client
    await sync_schedules(client, settings_for(tmp_path), NOW, known=())
    handle = client.get_schedule_handle(WEEKEND)
    await handle.trigger()
    running = []
    for _ in range(100):
        running = (await handle.describe()).info.running_actions
        if running:
            break
        await asyncio.sleep(0.1)
    [first] = running
    assert first.workflow_id.startswith(f"{WEEKEND}-")  # the schedule id plus the scheduled time
    described = await client.get_workflow_handle(first.workflow_id).describe()
    assert (described.workflow_type, described.status) == ("PatchRun", WorkflowExecutionStatus.RUNNING)

    await handle.trigger()  # the first run is still going (no worker here): SKIP
    info = None
    for _ in range(100):
        info = (await handle.describe()).info
        if info.num_actions_skipped_overlap:
            break
        await asyncio.sleep(0.1)
    assert info is not None and info.num_actions_skipped_overlap == 1 and info.num_actions == 1
    await client.get_workflow_handle(first.workflow_id).terminate("test over")


async def test_schedules_survive_a_server_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.db"
    settings = settings_for(tmp_path)
    first = await dev_server(db)
    try:
        await sync_schedules(first.client, settings, NOW, known=())
    finally:
        await first.shutdown()
    second = await dev_server(db)
    try:
        again = await sync_schedules(second.client, settings, NOW, known=())
        described = await second.client.get_schedule_handle(NIGHTS).describe()
    finally:
        await second.shutdown()
    assert again.created == () and len(again.unchanged) == 2
    assert "rollout 'nights' (derived from the groups' windows): groups db on sites dr, lab" in (
        described.schedule.state.note or ""
    )


async def test_serve_keeps_the_schedules_in_sync(env: WorkflowEnvironment, tmp_path: Path) -> None:
    from orchestrator.engine.schedules import SyncResult, keep_in_sync
    from tests.support.clock import FakeClock

    clock = FakeClock(NOW)
    stop = asyncio.Event()
    results: list[SyncResult] = []

    def synced(result: SyncResult) -> None:
        results.append(result)
        stop.set()

    await keep_in_sync(env.client, settings_for(tmp_path), clock=clock, stop=stop, on_sync=synced)
    assert clock.sleeps == []  # keep_in_sync waits on its stop event, not on the clock
    assert len(results) == 1 and len(results[0].created) == 2


async def test_a_scheduled_run_patches_its_scope_under_its_own_id(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Real workers and activities (libvirt test driver + fake guests). The window opens every minute
    # and lasts an hour (occurrences overlap; the gate uses the one closing last), so the triggered
    # run is admitted at once. The schedule covers the group "main" only (the whole ring model with
    # the canary: test_scheduled_rollout.py).
    from orchestrator.context import Context
    from orchestrator.engine.workers import workers
    from orchestrator.facts.store import FactStore
    from orchestrator.model import RunSummary, StepStatus
    from tests.support.loopback import unused_port
    from tests.support.testbed import GuestSpec, build

    port = unused_port()
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    bed = build(tmp_path / "bed", specs, port=port, rings={"canary": "", "main": ""},
                windows={"always": 'cron = "* * * * *"\nduration = "1h"\ncutoff = "1m"'},
                group_windows={"main": "always"})  # fmt: skip
    with bed.config.open("a") as config:
        config.write('\n[[schedules]]\nname = "main-only"\nwindow = "always"\ngroups = ["main"]\n')
    settings = load_settings(bed.config)
    result = await sync_schedules(env.client, settings, datetime.now(UTC), known=())
    assert result.created == (f"{PREFIX}main-only",)

    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            handle = env.client.get_schedule_handle(f"{PREFIX}main-only")
            await handle.trigger()
            running = []
            for _ in range(200):
                running = (await handle.describe()).info.running_actions
                if running:
                    break
                await asyncio.sleep(0.1)
            [action] = running
            # a safety net, not a timing assertion: a run that waits for a window would hang here
            run = env.client.get_workflow_handle(action.workflow_id, result_type=RunSummary)
            summary = await asyncio.wait_for(run.result(), 300)
        record = facts.get_run(action.workflow_id)
    finally:
        ctx.close()
        facts.close()
    assert summary.run_id == action.workflow_id and summary.status == "succeeded"
    assert {o.vm.name: o.status for o in summary.vms} == {"pw-web-1": StepStatus.SUCCEEDED,
                                                         "pw-web-2": StepStatus.SUCCEEDED}  # fmt: skip
    assert bed.guests["pw-canary-1"].patches() == []  # another group: not this schedule's scope
    assert record is not None and record.requested_by == f"schedule:{PREFIX}main-only"


async def test_the_assessment_schedule_follows_assess_every(env: WorkflowEnvironment, tmp_path: Path) -> None:
    from orchestrator.engine.assessments import SCHEDULE_ID, sync_assessment_schedule
    from orchestrator.engine.payloads import ASSESS_WORKFLOW, AssessRequest

    def every(value: str) -> Settings:
        path = tmp_path / "assess.toml"
        path.write_text(CONFIG.replace("{web_window}", "weekend").replace("{prenotice}", "0s")
                        + f'[assess]\nevery = "{value}"\n')  # fmt: skip
        return load_settings(path, environ={})

    client = env.client
    handle = client.get_schedule_handle(SCHEDULE_ID)
    assert await sync_assessment_schedule(client, every("0")) == "none"
    assert await sync_assessment_schedule(client, every("6h")) == "created"
    assert await sync_assessment_schedule(client, every("6h")) == "unchanged"
    described = await handle.describe()
    action = described.schedule.action
    assert (action.workflow, action.task_queue) == (ASSESS_WORKFLOW, CENTRAL_QUEUE)
    [request] = await client.data_converter.decode(action.args, [AssessRequest])
    assert request == AssessRequest(requested_by=f"schedule:{SCHEDULE_ID}")
    assert described.schedule.spec.intervals[0].every == timedelta(hours=6)
    assert described.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    await handle.pause(note="paused by an operator")
    assert await sync_assessment_schedule(client, every("12h")) == "updated"
    described = await handle.describe()
    assert described.schedule.spec.intervals[0].every == timedelta(hours=12)
    assert described.schedule.state.paused and described.schedule.state.note == "paused by an operator"
    assert await sync_assessment_schedule(client, every("0")) == "deleted"
    async for listed in client.list_workflows(
        f"WorkflowType = '{ASSESS_WORKFLOW}' AND ExecutionStatus = 'Running'"
    ):
        await client.get_workflow_handle(listed.id).terminate("test over")  # trigger_immediately (no worker)
