"""Maintenance windows: cron + duration + time zone + cutoff, evaluated at a given `now` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.windows import WindowSpec, is_open, next_window, remaining, usable

# Saturdays 22:00 Berlin time, 6 hours, no new work in the last 30 minutes.
WEEKEND = WindowSpec(
    name="weekend", cron="0 22 * * SAT", duration_s=6 * 3600, timezone="Europe/Berlin", cutoff_s=1800
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_before_the_window_the_next_one_is_returned_in_utc() -> None:
    # Wednesday 2026-05-06 noon UTC; Saturday 2026-05-09 22:00 CEST is 20:00 UTC.
    start, end = next_window(WEEKEND, utc(2026, 5, 6, 12))
    assert (start, end) == (utc(2026, 5, 9, 20), utc(2026, 5, 10, 2))
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)


def test_inside_the_window_the_open_window_is_returned() -> None:
    assert next_window(WEEKEND, utc(2026, 5, 10, 1)) == (utc(2026, 5, 9, 20), utc(2026, 5, 10, 2))


def test_a_window_opening_exactly_now_is_open() -> None:
    assert next_window(WEEKEND, utc(2026, 5, 9, 20)) == (utc(2026, 5, 9, 20), utc(2026, 5, 10, 2))
    assert is_open(WEEKEND, utc(2026, 5, 9, 20))


def test_at_the_end_the_window_is_closed_and_the_next_week_follows() -> None:
    assert next_window(WEEKEND, utc(2026, 5, 10, 2)) == (utc(2026, 5, 16, 20), utc(2026, 5, 17, 2))


def test_the_cron_is_evaluated_in_the_windows_time_zone_across_dst() -> None:
    # In winter Berlin is UTC+1: 22:00 local = 21:00 UTC.
    start, _ = next_window(WEEKEND, utc(2026, 1, 7, 12))
    assert start == utc(2026, 1, 10, 21)


def test_remaining_counts_down_to_the_cutoff() -> None:
    assert remaining(WEEKEND, utc(2026, 5, 10, 0)) == timedelta(hours=1, minutes=30)
    assert is_open(WEEKEND, utc(2026, 5, 10, 1, 29))


def test_after_the_cutoff_no_new_work_starts() -> None:
    assert remaining(WEEKEND, utc(2026, 5, 10, 1, 45)) == timedelta(0)
    assert not is_open(WEEKEND, utc(2026, 5, 10, 1, 45))


def test_outside_a_window_nothing_remains() -> None:
    assert remaining(WEEKEND, utc(2026, 5, 6, 12)) == timedelta(0)
    assert not is_open(WEEKEND, utc(2026, 5, 6, 12))


def test_usable_is_duration_minus_cutoff() -> None:
    assert usable(WEEKEND) == timedelta(hours=5, minutes=30)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_window(WEEKEND, datetime(2026, 5, 6, 12))


def test_a_daily_utc_window_that_is_longer_than_a_day_apart_is_never_ambiguous() -> None:
    nightly = WindowSpec(name="nightly", cron="30 1 * * *", duration_s=3600)
    assert next_window(nightly, utc(2026, 5, 6, 1, 45)) == (utc(2026, 5, 6, 1, 30), utc(2026, 5, 6, 2, 30))
    assert next_window(nightly, utc(2026, 5, 6, 3)) == (utc(2026, 5, 7, 1, 30), utc(2026, 5, 7, 2, 30))
