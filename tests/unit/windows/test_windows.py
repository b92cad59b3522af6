"""Maintenance windows: cron + duration + time zone + cutoff, evaluated at a given `now` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.windows import Occurrence, WindowSpec, admits, next_window, occurrence_at, usable

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


def room(spec: WindowSpec, now: datetime) -> timedelta:
    """Time left for starting new work at ``now`` (zero when closed or past the cutoff)."""
    found = occurrence_at(spec, now)
    if found is None or not found.start <= now:
        return timedelta(0)
    return max(timedelta(0), found.cutoff_at - now)


def is_open(spec: WindowSpec, now: datetime) -> bool:
    """New work (of no length) may start at ``now``."""
    found = occurrence_at(spec, now)
    return found is not None and admits(found, now, 0)


def test_a_window_opening_exactly_now_is_open() -> None:
    assert next_window(WEEKEND, utc(2026, 5, 9, 20)) == (utc(2026, 5, 9, 20), utc(2026, 5, 10, 2))
    assert is_open(WEEKEND, utc(2026, 5, 9, 20))


def test_at_the_end_the_window_is_closed_and_the_next_week_follows() -> None:
    assert next_window(WEEKEND, utc(2026, 5, 10, 2)) == (utc(2026, 5, 16, 20), utc(2026, 5, 17, 2))


def test_the_cron_is_evaluated_in_the_windows_time_zone_across_dst() -> None:
    # In winter Berlin is UTC+1: 22:00 local = 21:00 UTC.
    start, _ = next_window(WEEKEND, utc(2026, 1, 7, 12))
    assert start == utc(2026, 1, 10, 21)


def test_the_room_for_new_work_counts_down_to_the_cutoff() -> None:
    assert room(WEEKEND, utc(2026, 5, 10, 0)) == timedelta(hours=1, minutes=30)
    assert is_open(WEEKEND, utc(2026, 5, 10, 1, 29))


def test_after_the_cutoff_no_new_work_starts() -> None:
    assert room(WEEKEND, utc(2026, 5, 10, 1, 45)) == timedelta(0)
    assert not is_open(WEEKEND, utc(2026, 5, 10, 1, 45))


def test_outside_a_window_nothing_remains() -> None:
    assert room(WEEKEND, utc(2026, 5, 6, 12)) == timedelta(0)
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


# ------------------------------------------------------------------------------ time zones and DST
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.windows import NoWindow, fits, local_wall, next_admission, retry_at, upcoming
from orchestrator.windows.rules import RuleError, parse_rrule, starts_after

BERLIN = "Europe/Berlin"


def local(moment: datetime, zone: str = BERLIN) -> str:
    return local_wall(moment, zone).strftime("%Y-%m-%d %H:%M")


def starts_between(spec: WindowSpec, since: datetime, until: datetime) -> list[datetime]:
    """The starts of the windows that open in ``[since, until)`` (UTC, ascending)."""
    found = []
    for start, _ in upcoming(spec, since):
        if start >= until:
            break
        if start >= since:
            found.append(start)
    return found


def test_a_start_inside_the_spring_forward_gap_opens_at_the_same_offset_after_it() -> None:
    # 2026-03-29 Berlin: 02:00 CET -> 03:00 CEST; 02:30 does not exist that night.
    nightly = WindowSpec(name="n", cron="30 2 * * *", duration_s=3600, timezone=BERLIN)
    starts = starts_between(nightly, utc(2026, 3, 28), utc(2026, 3, 31))
    assert starts == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert [local(s) for s in starts] == ["2026-03-28 02:30", "2026-03-29 03:30", "2026-03-30 02:30"]


def test_a_start_in_the_repeated_fall_back_hour_opens_once_at_the_first() -> None:
    # 2026-10-25 Berlin: 03:00 CEST -> 02:00 CET; 02:30 happens twice, the window opens once.
    nightly = WindowSpec(name="n", cron="30 2 * * *", duration_s=3600, timezone=BERLIN)
    starts = starts_between(nightly, utc(2026, 10, 24), utc(2026, 10, 27))
    assert starts == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_duration_is_elapsed_time_across_the_fall_back_night() -> None:
    # Saturday 22:00 CEST + 6 h elapsed = 03:00 CET on the wall clock (the clock shows 5 h).
    start, end = next_window(WEEKEND, utc(2026, 10, 24, 12))
    assert (start, end) == (utc(2026, 10, 24, 20), utc(2026, 10, 25, 2))
    assert (local(start), local(end)) == ("2026-10-24 22:00", "2026-10-25 03:00")


def test_duration_is_elapsed_time_across_the_spring_forward_night() -> None:
    start, end = next_window(WEEKEND, utc(2026, 3, 28, 12))
    assert (start, end) == (utc(2026, 3, 28, 21), utc(2026, 3, 29, 3))
    assert (local(start), local(end)) == ("2026-03-28 22:00", "2026-03-29 05:00")


def test_the_cutoff_on_the_dst_night_is_elapsed_time_before_the_end() -> None:
    # Fall-back night: the window ends 02:00 UTC; the cutoff (30 min) closes admission at 01:30 UTC.
    assert room(WEEKEND, utc(2026, 10, 25, 1)) == timedelta(minutes=30)
    assert not is_open(WEEKEND, utc(2026, 10, 25, 1, 30))


@pytest.mark.parametrize(
    ("zone", "now", "expected_utc"),
    [
        ("America/New_York", utc(2026, 3, 7), utc(2026, 3, 8, 7, 30)),  # 02:30 EST missing -> 03:30 EDT
        ("America/New_York", utc(2026, 1, 3), utc(2026, 1, 4, 7, 30)),  # 02:30 EST
        ("Australia/Lord_Howe", utc(2026, 10, 3), utc(2026, 10, 3, 15, 30)),  # 30-min DST: 02:00->02:30
        ("Asia/Kolkata", utc(2026, 3, 7), utc(2026, 3, 7, 21)),  # UTC+05:30, no DST
    ],
)
def test_weekly_sunday_0230_in_other_time_zones(zone: str, now: datetime, expected_utc: datetime) -> None:
    spec = WindowSpec(name="w", cron="30 2 * * SUN", duration_s=3600, timezone=zone)
    assert next_window(spec, now)[0] == expected_utc


def test_starts_are_yielded_in_utc_order_even_when_the_gap_moves_one_past_the_next() -> None:
    # 02:30 (in the gap) becomes 03:30 CEST, after the 03:15 start of the same night.
    spec = WindowSpec(name="w", cron="", duration_s=600, timezone=BERLIN,
                      rrule="FREQ=DAILY;BYHOUR=2,3;BYMINUTE=15,30")  # fmt: skip
    starts = starts_between(spec, utc(2026, 3, 29), utc(2026, 3, 29, 3))
    assert starts == sorted(starts)
    # 02:15/02:30 fall into the gap and land on 03:15/03:30, which are starts too: each opens once
    assert [local(s) for s in starts] == ["2026-03-29 03:15", "2026-03-29 03:30"]


# ------------------------------------------------------------------------------ RRULE
RRULE_WEEKEND = WindowSpec(name="weekend", cron="", duration_s=6 * 3600, timezone=BERLIN, cutoff_s=1800,
                           rrule="FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0")  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))
def test_an_rrule_and_the_equivalent_cron_give_the_same_windows(now: datetime) -> None:
    assert next_window(RRULE_WEEKEND, now) == next_window(WEEKEND, now)
    assert room(RRULE_WEEKEND, now) == room(WEEKEND, now)


@settings(max_examples=50, deadline=None)
@given(
    freq=st.sampled_from(["HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
    interval=st.integers(1, 5),
    day=st.integers(1, 28),
    hour=st.integers(0, 23),
    after=st.datetimes(min_value=datetime(2021, 6, 1), max_value=datetime(2024, 1, 1)),
)
def test_rrules_are_walked_from_a_nearby_anchor_without_changing_occurrences(
    freq: str, interval: int, day: int, hour: int, after: datetime
) -> None:
    text = f"DTSTART:202101{day:02d}T{hour:02d}1500\nRRULE:FREQ={freq};INTERVAL={interval}"
    slow = parse_rrule(text)  # dateutil walking from DTSTART
    expected = []
    current = slow.after(after)
    while current is not None and len(expected) < 3:
        expected.append(current)
        current = slow.after(current)
    got = list(zip(range(3), starts_after("", text, after)))
    assert [moment for _, moment in got] == expected


def test_a_biweekly_rrule_counts_from_its_dtstart() -> None:
    spec = WindowSpec(name="w", cron="", duration_s=3600, timezone=BERLIN,
                      rrule="DTSTART:20260103T220000\nRRULE:FREQ=WEEKLY;INTERVAL=2")  # fmt: skip
    starts = [local(s) for s in starts_between(spec, utc(2026, 1, 1), utc(2026, 2, 1))]
    assert starts == ["2026-01-03 22:00", "2026-01-17 22:00", "2026-01-31 22:00"]


def test_a_finished_rrule_has_no_next_window() -> None:
    spec = WindowSpec(name="w", cron="", duration_s=3600, timezone=BERLIN,
                      rrule="DTSTART:20260103T220000\nRRULE:FREQ=DAILY;COUNT=2")  # fmt: skip
    assert next_window(spec, utc(2026, 1, 4, 12))[0] == utc(2026, 1, 4, 21)
    with pytest.raises(NoWindow, match="does not open"):
        next_window(spec, utc(2026, 1, 5))
    assert next_admission(spec, utc(2026, 1, 5), 120) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("FREQ=FORTNIGHTLY", "RFC 5545"),
        ("DTSTART;TZID=Europe/Berlin:20260103T220000\nRRULE:FREQ=DAILY", "local time"),
        ("DTSTART:20260103T220000Z\nRRULE:FREQ=DAILY", "local time"),
        ("RRULE:FREQ=DAILY\nEXDATE:20260105T000000", "exdates"),
        ("FREQ=SECONDLY", "SECONDLY"),
        ("FREQ=DAILY;COUNT=3", "DTSTART"),
    ],
)
def test_unusable_rrules_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rrule(text)


# ------------------------------------------------------------------------------ blackouts
NIGHTLY = WindowSpec(name="nightly", cron="0 22 * * *", duration_s=4 * 3600, timezone=BERLIN, cutoff_s=900,
                     blackout_dates=("2026-12-24", "2026-12-25"), exdates=("2026-12-27T22:00",))  # fmt: skip


def test_no_window_starts_on_a_blackout_date_or_at_an_excluded_time() -> None:
    starts = [local(s) for s in starts_between(NIGHTLY, utc(2026, 12, 23), utc(2026, 12, 30))]
    assert starts == ["2026-12-23 22:00", "2026-12-26 22:00", "2026-12-28 22:00", "2026-12-29 22:00"]


def test_on_a_blackout_date_the_next_window_is_the_day_after() -> None:
    assert local(next_window(NIGHTLY, utc(2026, 12, 24, 12))[0]) == "2026-12-26 22:00"
    assert not is_open(NIGHTLY, utc(2026, 12, 24, 22))
    assert next_admission(NIGHTLY, utc(2026, 12, 24, 22), 1200) == utc(2026, 12, 26, 21)


def test_a_window_that_opened_before_a_blackout_date_stays_open_into_it() -> None:
    # Blackout dates are about where a window starts: the 23rd's window runs until 02:00 on the 24th.
    assert is_open(NIGHTLY, utc(2026, 12, 24, 0, 30))


def test_an_every_minute_rule_with_a_long_blackout_is_still_quick() -> None:
    dates = tuple(f"2026-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29))
    spec = WindowSpec(name="m", cron="* * * * *", duration_s=30, blackout_dates=dates)
    assert next_window(spec, utc(2026, 1, 1)) == (utc(2026, 1, 29), utc(2026, 1, 29, 0, 0, 30))


# ------------------------------------------------------------------------------ admission
# Window 20:00-02:00 UTC (May), cutoff 30 min: new work must be done by 01:30.
MAY_9 = Occurrence(utc(2026, 5, 9, 20), utc(2026, 5, 10, 2), utc(2026, 5, 10, 1, 30))


def test_a_vm_is_admitted_only_when_estimate_and_rollback_fit_before_the_cutoff() -> None:
    assert admits(MAY_9, utc(2026, 5, 9, 20), 3600 + 600)
    assert admits(MAY_9, utc(2026, 5, 10, 0, 20), 3600 + 600)  # ends 01:30 exactly
    assert not admits(MAY_9, utc(2026, 5, 10, 0, 21), 3600 + 600)
    assert not admits(MAY_9, utc(2026, 5, 10, 1, 30), 0)  # at the cutoff: no new work, however short
    assert not admits(MAY_9, utc(2026, 5, 10, 1, 40), 0)  # past the cutoff
    assert not admits(MAY_9, utc(2026, 5, 9, 19, 59), 60)  # not open yet


def test_work_longer_than_the_window_accepts_is_refused_even_at_its_opening() -> None:
    # The rule the workflow had (now + min(need, usable) <= cutoff) admitted this at the opening.
    assert not admits(MAY_9, utc(2026, 5, 9, 20), 5 * 3600 + 1801)
    assert not fits(WEEKEND, 5 * 3600 + 1801)
    assert fits(WEEKEND, 5 * 3600 + 1800)
    assert retry_at(MAY_9, utc(2026, 5, 9, 20), 5 * 3600 + 1801) is None


def test_a_vm_that_is_refused_looks_again_at_the_opening_or_after_the_occurrence() -> None:
    assert retry_at(MAY_9, utc(2026, 5, 6, 12), 600) == utc(2026, 5, 9, 20)
    assert retry_at(MAY_9, utc(2026, 5, 10, 1), 3600) == utc(2026, 5, 10, 2)


def test_a_window_whose_cutoff_is_its_whole_length_admits_nothing() -> None:
    closed = WindowSpec(name="c", cron="0 22 * * *", duration_s=600, cutoff_s=600)
    assert not fits(closed, 1)
    assert next_admission(closed, utc(2026, 5, 6, 12), 1) is None


def test_next_admission_is_now_or_the_next_window_that_has_room() -> None:
    assert next_admission(WEEKEND, utc(2026, 5, 9, 21), 3600 + 600) == utc(2026, 5, 9, 21)
    assert next_admission(WEEKEND, utc(2026, 5, 10, 1), 3600 + 600) == utc(2026, 5, 16, 20)
    assert next_admission(WEEKEND, utc(2026, 5, 6, 12), 3600 + 600) == utc(2026, 5, 9, 20)


def test_work_longer_than_the_window_accepts_is_never_admitted() -> None:
    assert next_admission(WEEKEND, utc(2026, 5, 6, 12), 5 * 3600 + 1801) is None


def test_where_occurrences_overlap_a_vm_without_room_waits_for_the_end_of_the_best_one() -> None:
    # Hourly windows of 3 h: at 12:30 the 12:00 occurrence (open until 15:00) is the best; 2 h 45 of
    # work do not fit before 15:00, so it starts when that occurrence ends (the workflow's gate
    # looks at one occurrence at a time, and the planner predicts exactly that).
    hourly_long = WindowSpec(name="h", cron="0 * * * *", duration_s=3 * 3600)
    assert occurrence_at(hourly_long, utc(2026, 5, 6, 12, 30)) == Occurrence(
        utc(2026, 5, 6, 12), utc(2026, 5, 6, 15), utc(2026, 5, 6, 15)
    )
    assert next_admission(hourly_long, utc(2026, 5, 6, 12, 30), 2 * 3600) == utc(2026, 5, 6, 12, 30)
    assert next_admission(hourly_long, utc(2026, 5, 6, 12, 30), 165 * 60) == utc(2026, 5, 6, 15)


def test_upcoming_lists_the_open_window_first() -> None:
    first, second = list(zip(range(2), upcoming(WEEKEND, utc(2026, 5, 10, 1))))
    assert first[1] == (utc(2026, 5, 9, 20), utc(2026, 5, 10, 2))
    assert second[1] == (utc(2026, 5, 16, 20), utc(2026, 5, 17, 2))


def test_where_occurrences_overlap_the_best_window_is_the_one_closing_last() -> None:
    from orchestrator.windows import best_window

    hourly_long = WindowSpec(name="h", cron="0 * * * *", duration_s=3 * 3600)  # always 3 open at once
    assert next_window(hourly_long, utc(2026, 5, 6, 12, 30))[0] == utc(2026, 5, 6, 10)
    assert best_window(hourly_long, utc(2026, 5, 6, 12, 30)) == (utc(2026, 5, 6, 12), utc(2026, 5, 6, 15))
    assert best_window(WEEKEND, utc(2026, 5, 6, 12)) == next_window(WEEKEND, utc(2026, 5, 6, 12))
