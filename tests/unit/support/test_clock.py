"""The tests' FakeClock: time moves only by sleep, advance, advance_to and (with tick) readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from providers.errors import ProviderTimeout
from providers.timing import Clock, wait_until
from tests.support.clock import EPOCH, FakeClock

T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)


def test_time_stands_still_until_slept_on_or_advanced() -> None:
    clock: Clock = FakeClock(T0)
    assert clock.now() == clock.now() == T0 and clock.monotonic() == 0.0
    clock.sleep(2.5)
    clock.advance(0.5)
    assert clock.now() == T0 + timedelta(seconds=3) and clock.monotonic() == 3.0
    assert clock.sleeps == [2.5]
    clock.advance_to(T0 + timedelta(hours=1))
    assert clock.now() == T0 + timedelta(hours=1) and clock.monotonic() == 3600.0
    with pytest.raises(ValueError):
        clock.advance_to(T0)


def test_a_ticking_clock_gives_every_reading_its_own_time() -> None:
    clock = FakeClock(T0, tick=1.0)
    assert [clock.now() for _ in range(3)] == [T0 + timedelta(seconds=s) for s in range(3)]


def test_a_wait_with_a_deadline_ends_without_waiting() -> None:
    clock = FakeClock()
    with pytest.raises(ProviderTimeout):
        wait_until(lambda: None, timeout=30, interval=5, what="never", clock=clock)
    assert clock.now() >= EPOCH + timedelta(seconds=30) and sum(clock.sleeps) == clock.monotonic()
