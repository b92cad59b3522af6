"""Maintenance windows in real PatchRun workflows on Temporal's time-skipping test server.

The real workflows and activities run against libvirt's test driver with fake Debian guests
(patchwave_lab/fakeguest), as in test_workflow_timeskip.py. Waiting for a window is a durable timer that
the test server skips. Windows are written relative to the test server's clock at the start of a
test; every assertion is about workflow time recorded in the VMs' outcomes (``workflow.now()``),
checked against local wall-clock times computed here independently of orchestrator.windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.model import RunSummary, StepStatus, VmOutcome
from providers.base import VmRef
from tests.support.loopback import unused_port
from tests.support.rollouts import Rollout, made
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

BERLIN, KOLKATA, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), ZoneInfo("America/New_York")


class WindowRollout(Rollout):
    async def run(self) -> dict[str, VmOutcome]:
        async with workers(self.env.client, self.ctx):
            handle = await start_run(self.env.client, self.request)
            summary: RunSummary = await handle.result()  # lets the server skip the window waits
        assert summary.status == "succeeded", summary
        return {o.vm.name: o for o in summary.vms}


@pytest.fixture
def rollout_factory(env: WorkflowEnvironment) -> Iterator[Callable[[DriverBed], WindowRollout]]:
    yield from made(lambda bed: WindowRollout(env, bed, "run-windows"))


TWO = (GuestSpec("pw-a"), GuestSpec("pw-b"))


def bed_with_window(tmp_path: Path, window: str, specs=TWO, **kw) -> DriverBed:
    return build(
        tmp_path / "bed", specs, port=unused_port(), windows={"w": window}, group_windows={"main": "w"}, **kw
    )


def started(outcome: VmOutcome) -> datetime:
    return datetime.fromisoformat(outcome.started_at)


def assert_patched(bed: DriverBed, outcomes: dict[str, VmOutcome]) -> None:
    for name, guest in bed.guests.items():
        assert outcomes[name].status is StepStatus.SUCCEEDED, outcomes[name]
        assert guest.installed() == {"demo-app": "1.1", "openssl": "3.0.15"}, name


async def step_out_of(env: WorkflowEnvironment, opens: datetime, length: timedelta) -> datetime:
    """Skip the test server's clock past a window occurrence that is open (or about to open) now.

    The time-skipping server starts at the wall clock, so a test started while its window happens to
    be open would see the run start at once instead of at the occurrence the test computed (CI failed
    exactly so at 01:06 New York time). Returns the server's time afterwards.
    """
    now = await env.get_current_time()
    closes = opens + length + timedelta(minutes=1)
    if opens - timedelta(minutes=5) <= now < closes:
        await env.sleep(closes - now)
        now = await env.get_current_time()
        assert now >= closes, (now, closes)
    return now


async def start_outside_daily(
    env: WorkflowEnvironment, clock: str, zone: ZoneInfo, hour: int, minute: int, length: timedelta
) -> datetime:
    """Where a test of a daily window at hour:minute local time starts: out of yesterday's and
    today's occurrence (``step_out_of``). With ``clock="inside-window"`` the clock is first skipped
    6 minutes into the next occurrence: the case CI once met by chance, now run every time.
    Returns the server's time."""

    def at(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)

    local = (await env.get_current_time()).astimezone(zone)
    if clock == "inside-window":
        opens = at(local.date()) if at(local.date()) > local else at(local.date() + timedelta(days=1))
        await env.sleep(opens + timedelta(minutes=6) - local)
        local = (await env.get_current_time()).astimezone(zone)
    for day in (local.date() - timedelta(days=1), local.date()):
        now = await step_out_of(env, at(day), length)
    return now


CLOCKS = pytest.mark.parametrize("clock", ["wall", "inside-window"])


def last_sunday_of_march(after: datetime) -> date:
    year = after.year
    while True:
        day = date(year, 3, 31)
        while day.weekday() != 6:
            day -= timedelta(days=1)
        if datetime(day.year, day.month, day.day, 3, tzinfo=UTC) > after:
            return day
        year += 1


async def test_a_window_on_the_spring_forward_night_opens_after_the_gap(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory
) -> None:
    # 02:30 does not exist in Berlin on the last Sunday of March; the window opens at 03:30 CEST.
    now = await env.get_current_time()
    this_year = last_sunday_of_march(datetime(now.year, 1, 1, tzinfo=UTC))
    now = await step_out_of(env, datetime(now.year, 3, this_year.day, 1, 30, tzinfo=UTC), timedelta(hours=2))
    dst_day = last_sunday_of_march(now)
    window = ('rrule = "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;BYHOUR=2;BYMINUTE=30"\nduration = "2h"\n'
              'timezone = "Europe/Berlin"\ncutoff = "15m"')  # fmt: skip
    rollout = rollout_factory(bed_with_window(tmp_path, window))
    outcomes = await rollout.run()

    assert_patched(rollout.bed, outcomes)
    opens = datetime(dst_day.year, 3, dst_day.day, 1, 30, tzinfo=UTC)  # 03:30 CEST (UTC+2)
    assert opens.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    for outcome in outcomes.values():
        assert opens <= started(outcome) < opens + timedelta(hours=2, minutes=-15), outcome


async def test_a_vm_that_no_longer_fits_waits_for_the_next_window(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory
) -> None:
    # The daily window opened 40 minutes ago and lasts 1 h with a 5 min cutoff: 15 min are left for
    # new work. pw-a and pw-b (estimate 2 min + 6 s rollback) start now; pw-c's history says it
    # takes 20 min, so it must not start in this window: the run pauses and resumes tomorrow.
    now = await env.get_current_time()
    opened = (now - timedelta(minutes=40)).replace(second=0, microsecond=0)
    window = f'cron = "{opened.minute} {opened.hour} * * *"\nduration = "1h"\ntimezone = "UTC"\ncutoff = "5m"'
    specs = (GuestSpec("pw-a"), GuestSpec("pw-b"), GuestSpec("pw-c"))
    bed = bed_with_window(tmp_path, window, specs, concurrency=1, vm_duration="2m")
    rollout = rollout_factory(bed)
    past = VmRef("td", bed.uuids["pw-c"], "pw-c")
    rollout.facts.set_outcome("an-earlier-run", VmOutcome(
        rollout.step_id("pw-c"), past, StepStatus.SUCCEEDED, started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:20:00+00:00"))  # fmt: skip
    outcomes = await rollout.run()

    assert_patched(bed, outcomes)
    cutoff_today = opened + timedelta(minutes=55)
    tomorrow = opened + timedelta(days=1)
    for name in ("pw-a", "pw-b"):
        assert now.replace(microsecond=0) <= started(outcomes[name]) < cutoff_today
    assert tomorrow <= started(outcomes["pw-c"]) < tomorrow + timedelta(minutes=55 - 20)
    events = [e.status for e in rollout.facts.run_events("run-windows")]
    assert "paused" in events and events[-1] == "succeeded"


@CLOCKS
async def test_no_window_opens_on_a_blackout_date(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory, clock: str
) -> None:
    # A daily 01:00 New York window; the next occurrence's date is an exdate and the one after a
    # holiday: the run waits for the third.
    now = await start_outside_daily(env, clock, NEW_YORK, 1, 0, timedelta(hours=2))
    local_now = now.astimezone(NEW_YORK)
    first = local_now.date() + timedelta(days=1 if local_now.hour >= 1 else 0)
    dates = [first + timedelta(days=i) for i in range(3)]
    window = (f'cron = "0 1 * * *"\nduration = "2h"\ntimezone = "America/New_York"\ncutoff = "10m"\n'
              f'exdates = ["{dates[0].isoformat()}"]\nholidays = ["bank"]\n'
              f'[holidays.bank]\ndates = ["{dates[1].isoformat()}"]')  # fmt: skip
    rollout = rollout_factory(bed_with_window(tmp_path, window))
    outcomes = await rollout.run()

    assert_patched(rollout.bed, outcomes)
    opens = datetime(dates[2].year, dates[2].month, dates[2].day, 1, tzinfo=NEW_YORK)
    for outcome in outcomes.values():
        assert opens <= started(outcome) < opens + timedelta(hours=1, minutes=50)
        assert started(outcome).astimezone(NEW_YORK).date() == dates[2]


@CLOCKS
async def test_a_window_in_a_half_hour_offset_zone(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory, clock: str
) -> None:
    # Asia/Kolkata is UTC+05:30: a window at 03:15 local opens at 21:45 UTC the day before.
    now = await start_outside_daily(env, clock, KOLKATA, 3, 15, timedelta(minutes=90))
    window = 'cron = "15 3 * * *"\nduration = "90m"\ntimezone = "Asia/Kolkata"\ncutoff = "10m"'
    rollout = rollout_factory(bed_with_window(tmp_path, window))
    outcomes = await rollout.run()

    assert_patched(rollout.bed, outcomes)
    local = now.astimezone(KOLKATA)
    day = local.date() + timedelta(days=1 if (local.hour, local.minute) >= (3, 15) else 0)
    opens = datetime(day.year, day.month, day.day, 3, 15, tzinfo=KOLKATA)
    assert opens.astimezone(UTC).strftime("%H:%M") == "21:45"
    for outcome in outcomes.values():
        assert opens <= started(outcome) < opens + timedelta(minutes=80)


async def test_a_run_waiting_for_its_window_notifies_and_is_paused_meanwhile(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory
) -> None:
    # A real local HTTP endpoint receives apprise json:// posts: the plan, the pre-notice an hour
    # before the window, the start, and the halt (pw-b breaks after patching; budget 0).
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        now = await env.get_current_time()
        opens = (now + timedelta(hours=5)).replace(second=0, microsecond=0)
        window = (
            f'cron = "{opens.minute} {opens.hour} * * *"\nduration = "2h"\ntimezone = "UTC"\ncutoff = "10m"\n'
            f'[notifications]\nurls = ["json://127.0.0.1:{server.server_address[1]}/hook"]\nprenotice = "1h"'
        )
        specs = (GuestSpec("pw-a"), GuestSpec("pw-b", broken_after_patch=True))
        rollout = rollout_factory(bed_with_window(tmp_path, window, specs, concurrency=1))
        async with workers(rollout.env.client, rollout.ctx):
            handle = await start_run(rollout.env.client, rollout.request)
            summary: RunSummary = await handle.result()
    finally:
        server.shutdown()
        server.server_close()

    assert summary.status == "halted"
    titles = [p["title"] for p in posts]
    assert titles == [
        "patchwave: plan for run-windows published",
        "patchwave: run run-windows started",
        "patchwave: maintenance window w opens in 1 h",
        "patchwave: run run-windows HALTED",
    ]
    assert "failure budget exhausted" in posts[-1]["message"] and "pw-b" in posts[-1]["message"]
    events = [(e.status, e.reason) for e in rollout.facts.run_events("run-windows")]
    assert [s for s, _ in events] == ["planned", "running", "paused", "running", "halted"]
    assert events[2][1] == f"waiting for maintenance window 'w' until {opens.isoformat()}"
    assert all(started(o) >= opens for o in summary.vms if o.started_at)
