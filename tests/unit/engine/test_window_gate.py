"""The workflow's window gate and the planner's timeline decide admission alike.

The real :class:`WindowGate` runs with a fake clock and timers, asking the real ``window_slot``
activity (over real settings) for occurrences; the planner's :func:`next_admission` answers from
the same settings. On the same inputs both start a VM at the same moment, or both never start it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config.loader import parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.engine.activities.run import RunActivities
from orchestrator.engine.payloads import WindowQuery, WindowSlot
from orchestrator.engine.workflows.window_gate import WindowGate
from orchestrator.facts.store import FactStore
from orchestrator.model import VmPolicy, VmStep
from orchestrator.windows import next_admission
from providers.base import VmRef

CONFIG = """
[providers.td]
kind = "libvirt"
uri = "test:///default"

[windows.weekend]
cron = "0 22 * * SAT"
duration = "6h"
timezone = "Europe/Berlin"
cutoff = "30m"

[windows.nightly]
cron = "0 22 * * *"
duration = "4h"
timezone = "Europe/Berlin"
cutoff = "15m"
exdates = ["2026-12-24", "2026-12-27T22:00"]

[windows.overlapping]
cron = "0 * * * *"
duration = "3h"
cutoff = "10m"

[windows.kolkata]
cron = "15 3 * * *"
duration = "90m"
timezone = "Asia/Kolkata"
cutoff = "10m"

[windows.twice]
rrule = "DTSTART:20260103T220000\\nRRULE:FREQ=DAILY;COUNT=2"
duration = "1h"
"""
WINDOWS = ("weekend", "nightly", "overlapping", "kolkata", "twice")


class Runtime:
    """The settings, and the real ``window_slot`` activity over them."""

    def __init__(self, settings: Settings, activities: RunActivities) -> None:
        self.settings, self.activities = settings, activities


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    base = tmp_path_factory.mktemp("gate")
    config = parse_settings_text(CONFIG, file=base / "patchwave.toml", environ={}, state_dir=base)
    facts = FactStore(config.state.facts_path)
    ctx = Context(config, facts)
    try:
        yield Runtime(config, RunActivities(ctx))
    finally:
        ctx.close()
        facts.close()


class FakeTime:
    """``workflow.now`` / ``workflow.sleep`` for the gate: sleeping moves the clock."""

    def __init__(self, now: datetime) -> None:
        self.current = now
        self.sleeps = 0

    def now(self) -> datetime:
        return self.current

    async def sleep(self, duration: timedelta) -> None:
        assert duration > timedelta(0)
        self.sleeps += 1
        assert self.sleeps < 50, "the gate keeps waiting"
        self.current += duration


def step(need_s: int) -> VmStep:
    return VmStep("vm:td:1", VmRef("td", "1", "web1"), "main", "main", VmPolicy(), est_duration_s=need_s - 60,
                  est_rollback_s=60, channel="agent")  # fmt: skip


def gate_decision(runtime: Runtime, window: str, now: datetime, need_s: int) -> tuple[datetime | None, str]:
    """When the gate lets a VM needing ``need_s`` start (None: it refuses), and why it refuses."""
    clock = FakeTime(now)

    async def slot(query: WindowQuery) -> WindowSlot:
        return runtime.activities.window_slot(query)

    async def reported(*_: object) -> None:
        return None

    gate = WindowGate(reported, reported, slot=slot, now=clock.now, sleep=clock.sleep)
    refused = asyncio.run(gate.admit(window, step(need_s)))
    return (None if refused else clock.current), refused


def planned(runtime: Runtime, window: str, now: datetime, need_s: int) -> datetime | None:
    return next_admission(runtime.settings.window(window), now, need_s)


MOMENTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(window=st.sampled_from(WINDOWS), now=MOMENTS, need_s=st.integers(61, 7 * 3600))
def test_the_gate_starts_a_vm_exactly_when_the_planner_predicts(
    runtime: Runtime, window: str, now: datetime, need_s: int
) -> None:
    admitted, _ = gate_decision(runtime, window, now, need_s)
    assert admitted == planned(runtime, window, now, need_s)


def test_a_vm_longer_than_the_window_accepts_is_not_started_at_the_opening(runtime: Runtime) -> None:
    # Saturday 22:00 Berlin = 20:00 UTC in May; 5 h 30 min of the 6 h window accept work.
    opening = datetime(2026, 5, 9, 20, tzinfo=UTC)
    admitted, why = gate_decision(runtime, "weekend", opening, 5 * 3600 + 1801)
    assert admitted is None and planned(runtime, "weekend", opening, 5 * 3600 + 1801) is None
    assert why == "its estimate plus worst-case rollback (19801s) does not fit in window 'weekend'"
    assert gate_decision(runtime, "weekend", opening, 5 * 3600 + 1800)[0] == opening


def test_a_vm_that_no_longer_fits_waits_for_the_next_occurrence(runtime: Runtime) -> None:
    late = datetime(2026, 5, 10, 1, tzinfo=UTC)  # 30 min before the cutoff
    assert gate_decision(runtime, "weekend", late, 1800)[0] == late
    assert gate_decision(runtime, "weekend", late, 1801)[0] == datetime(2026, 5, 16, 20, tzinfo=UTC)


def test_a_window_that_does_not_open_again_admits_nothing(runtime: Runtime) -> None:
    after = datetime(2026, 1, 6, tzinfo=UTC)
    assert gate_decision(runtime, "twice", after, 600) == (None, "window 'twice' does not open again")
    assert planned(runtime, "twice", after, 600) is None
