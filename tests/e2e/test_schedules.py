"""Temporal schedules kept in sync with the configuration, against a real local dev server.

The server is `temporal server start-dev` with its SQLite file in tmp_path (so a restart keeps the
schedules). No worker runs here: a schedule that fires starts a PatchRun execution that stays
pending, which is exactly what the overlap test needs; the executions are terminated at the end.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestrator.config import Settings, load_settings
from orchestrator.devserver import temporal_binary
from orchestrator.messages import CENTRAL_QUEUE
from orchestrator.model import RunRequest
from orchestrator.schedules import PREFIX, desired, fire_times, ours, sync_schedules, targets
from orchestrator.windows import next_window

pytestmark = pytest.mark.e2e

# The Friday before a spring-forward weekend, far enough ahead that the server (real clock) lists the
# fire times as future actions.
NOW = datetime(2036, 3, 21, 12, 0, tzinfo=UTC)
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


def settings_for(tmp_path: Path, *, web_window: str = "weekend", prenotice: str = "2h") -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(CONFIG.replace("{web_window}", web_window).replace("{prenotice}", prenotice))
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


async def test_one_schedule_per_site_and_windowed_group(env: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    result = await sync_schedules(env.client, settings, NOW, known=())

    expected = {f"{PREFIX}{site}-{group}" for site in ("lab", "dr") for group in ("web", "db")}
    assert set(result.created) == expected and not (result.updated or result.deleted)
    assert set(await listed(env.client, expected)) == expected  # "adhoc" has no window: no schedule

    described = await env.client.get_schedule_handle(f"{PREFIX}lab-web").describe()
    action = described.schedule.action
    assert (action.workflow, action.id, action.task_queue) == ("PatchRun", f"{PREFIX}lab-web", CENTRAL_QUEUE)
    [request] = await env.client.data_converter.decode(action.args, [RunRequest])
    assert request == RunRequest(run_id="", config_digest="", groups=("web",), sites=("lab",),
                                 requested_by=f"schedule:{PREFIX}lab-web")  # fmt: skip
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
    schedule, _ = desired(next(t for t in targets(settings) if t.schedule_id == f"{PREFIX}lab-db"), settings, NOW)
    days = [(c.month[0].start, c.day_of_month[0].start, c.hour[0].start) for c in schedule.spec.calendars[:4]]
    # 23:00 New York (EDT since 03-09) = 03:00 UTC the next day; the window of the 23rd is an exdate
    assert days == [(3, 22, 3), (3, 23, 3), (3, 25, 3), (3, 26, 3)]


async def test_resync_changes_only_what_the_config_changed(env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = env.client
    await sync_schedules(client, settings_for(tmp_path), NOW, known=())
    again = await sync_schedules(client, settings_for(tmp_path), NOW, known=())
    assert again.created == () and again.updated == () and len(again.unchanged) == 4

    await client.get_schedule_handle(f"{PREFIX}dr-web").pause(note="paused by an operator")
    await client.get_schedule_handle(f"{PREFIX}lab-db").pause(note="paused too")
    moved = await sync_schedules(client, settings_for(tmp_path, web_window="nights"), NOW, known=())
    assert set(moved.updated) == {f"{PREFIX}lab-web", f"{PREFIX}dr-web"} and len(moved.unchanged) == 2
    web = await client.get_schedule_handle(f"{PREFIX}lab-web").describe()
    assert "window 'nights'" in (web.schedule.state.note or "") and not web.schedule.state.paused
    assert web.info.next_action_times[0] == datetime(2036, 3, 22, 1, 0, tzinfo=UTC)  # 23:00 EDT - 2 h
    # an operator's pause (and note) survive the update of the schedule's spec
    paused = await client.get_schedule_handle(f"{PREFIX}dr-web").describe()
    assert paused.schedule.state.paused and paused.schedule.state.note == "paused by an operator"
    first = paused.schedule.spec.calendars[0]
    assert (first.day_of_month[0].start, first.hour[0].start) == (22, 1)  # the new window's times


async def test_schedules_the_config_dropped_are_deleted_and_foreign_ones_kept(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = env.client
    settings = settings_for(tmp_path)
    await sync_schedules(client, settings, NOW, known=())
    foreign, _ = desired(targets(settings)[0], settings, NOW)
    await client.create_schedule("someone-elses-schedule", foreign)
    everything = {f"{PREFIX}{s}-{g}" for s in ("lab", "dr") for g in ("web", "db")}
    await listed(client, everything)

    no_web = settings_for(tmp_path, web_window="")
    result = await sync_schedules(client, no_web, NOW)  # `known` from Temporal's list
    assert set(result.deleted) == {f"{PREFIX}lab-web", f"{PREFIX}dr-web"}
    assert set(await listed(client, {f"{PREFIX}lab-db", f"{PREFIX}dr-db"})) == {f"{PREFIX}lab-db", f"{PREFIX}dr-db"}
    await client.get_schedule_handle("someone-elses-schedule").describe()  # still there


async def test_a_fired_schedule_runs_once_at_a_time(env: WorkflowEnvironment, tmp_path: Path) -> None:
    client = env.client
    await sync_schedules(client, settings_for(tmp_path), NOW, known=())
    handle = client.get_schedule_handle(f"{PREFIX}lab-web")
    await handle.trigger()
    running = []
    for _ in range(100):
        running = (await handle.describe()).info.running_actions
        if running:
            break
        await asyncio.sleep(0.1)
    [first] = running
    assert first.workflow_id.startswith(f"{PREFIX}lab-web-")  # the schedule id plus the scheduled time
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
        described = await second.client.get_schedule_handle(f"{PREFIX}dr-db").describe()
    finally:
        await second.shutdown()
    assert again.created == () and len(again.unchanged) == 4
    assert "group 'db' on site 'dr'" in (described.schedule.state.note or "")


async def test_serve_keeps_the_schedules_in_sync(env: WorkflowEnvironment, tmp_path: Path) -> None:
    from orchestrator.schedules import SyncResult, keep_in_sync

    class Clock:
        def now(self) -> datetime:
            return NOW

        def monotonic(self) -> float:
            return 0.0

        def sleep(self, seconds: float) -> None:
            raise AssertionError("keep_in_sync waits on its stop event, not on the clock")

    stop = asyncio.Event()
    results: list[SyncResult] = []

    def synced(result: SyncResult) -> None:
        results.append(result)
        stop.set()

    await keep_in_sync(env.client, settings_for(tmp_path), clock=Clock(), stop=stop, on_sync=synced)
    assert len(results) == 1 and len(results[0].created) == 4


async def test_a_scheduled_run_patches_its_group_under_its_own_id(env: WorkflowEnvironment, tmp_path: Path) -> None:
    # Real workers and activities (libvirt test driver + fake guests). The window opens every minute
    # and lasts an hour (occurrences overlap; the gate uses the one closing last), so the triggered
    # run is admitted at once.
    from orchestrator.context import Context
    from orchestrator.engine import workers
    from orchestrator.facts import FactStore
    from orchestrator.model import RunSummary, StepStatus
    from tests.fakeguest.testbed import GuestSpec, build
    from tests.loopback import unused_port

    port = unused_port()
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    bed = build(tmp_path / "bed", specs, port=port, rings={"canary": "", "main": ""},
                windows={"always": 'cron = "* * * * *"\nduration = "1h"\ncutoff = "1m"'},
                group_windows={"main": "always"})  # fmt: skip
    settings = load_settings(bed.config)
    result = await sync_schedules(env.client, settings, datetime.now(UTC), known=())
    assert result.created == (f"{PREFIX}td-main",)  # the canary group has no window: no schedule

    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        async with workers(env.client, ctx):
            handle = env.client.get_schedule_handle(f"{PREFIX}td-main")
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
    assert bed.guests["pw-canary-1"].patches() == []  # another group: not this schedule's target
    assert record is not None and record.requested_by == f"schedule:{PREFIX}td-main"
