"""Maintenance windows (pure): when may a run start work, and until when.

A window opens at each occurrence of its recurrence — a five-field ``cron`` *or* an iCalendar
``rrule`` (:mod:`orchestrator.window_rules`) — evaluated in the window's IANA ``timezone``, stays
open for ``duration_s`` and accepts no new work during its last ``cutoff_s``. Occurrences starting
on a blackout date (``exdates`` given as dates, and the ``holidays`` lists) or at an excluded
local time (``exdates`` given as date-times) do not open.

Every function takes ``now`` (an aware datetime) and returns aware UTC datetimes; nothing here
reads the clock, so the same functions run in the planner and inside a Temporal workflow (with
``workflow.now()``), deterministically.

Daylight saving time (decided, RFC 5545 semantics):

* Recurrences are wall-clock times: "22:00 every Saturday" is 22:00 local before and after a change.
* A start that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Berlin on the last
  Sunday of March) opens at the same offset into the day as before the gap: 02:30 -> 03:30 local.
* A start that exists twice (the fall-back hour) opens at the first of the two (summer time).
* ``duration`` is **elapsed** time: a 6 h window from 22:00 on the fall-back night closes at 03:00
  local (6 h later; the wall clock shows 5 h), on the spring-forward night at 05:00 local.
* Blackout dates are local calendar dates of the window's *start*.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from orchestrator.window_rules import starts_after

#: How far ahead :func:`next_window` looks before deciding a window never opens again.
HORIZON = timedelta(days=3 * 366)
#: Occurrences are walked in wall time; this slack covers any UTC-offset change (DST <= 2 h).
_SLACK = timedelta(hours=3)


class NoWindow(ValueError):
    """The window has no occurrence within :data:`HORIZON` (a finished RRULE, or all blacked out)."""


@dataclass(frozen=True)
class WindowSpec:
    name: str
    cron: str  # five-field cron evaluated in ``timezone``; "" when ``rrule`` is used
    duration_s: int  # elapsed seconds (not wall-clock)
    timezone: str = "UTC"  # IANA name
    cutoff_s: int = 0  # no new work starts during the last ``cutoff_s`` of a window
    rrule: str = ""  # RFC 5545 RRULE (local times), instead of ``cron``
    blackout_dates: tuple[str, ...] = ()  # "YYYY-MM-DD" local dates: no window starting that day opens
    exdates: tuple[str, ...] = ()  # "YYYY-MM-DDTHH:MM" local start times of single skipped occurrences

    @property
    def cutoff(self) -> timedelta:
        return timedelta(seconds=self.cutoff_s)

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.duration_s)

    @property
    def recurrence(self) -> str:
        """The rule as written (for display): ``cron "..."`` or ``rrule "..."``."""
        return f'rrule "{self.rrule}"' if self.rrule else f'cron "{self.cron}"'


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("windows need an aware datetime (with tzinfo); got a naive one")
    return now.astimezone(UTC)


def localize(wall: datetime, zone: str) -> datetime:
    """A naive local wall time in ``zone`` as an aware UTC instant (gap: shifted forward; fold: first)."""
    return wall.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)


def local_wall(moment: datetime, zone: str) -> datetime:
    """The naive local wall-clock time of an aware ``moment`` in ``zone``."""
    return _aware(moment).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _skipped(spec: WindowSpec, wall: datetime) -> bool:
    return wall.date().isoformat() in spec.blackout_dates or wall.strftime("%Y-%m-%dT%H:%M") in spec.exdates


def _starts(spec: WindowSpec, wall: datetime, until: datetime) -> Iterator[datetime]:
    """Local wall starts after ``wall`` that are not blacked out, up to the wall time ``until``.

    A blackout date is skipped as a whole (the walk restarts at the next midnight), so an
    every-minute rule and a year of holidays cost days, not minutes.
    """
    cursor = wall
    while cursor < until:
        restarted = False
        for start in starts_after(spec.cron, spec.rrule, cursor):
            if start > until:
                return
            if start.date().isoformat() in spec.blackout_dates:
                # restart just before the next midnight: starts_after is strictly after its base
                cursor = datetime.combine(start.date() + timedelta(days=1), time()) - timedelta(seconds=1)
                restarted = True
                break
            if not _skipped(spec, start):
                yield start
        if not restarted:
            return


def upcoming(spec: WindowSpec, now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Windows (start, end) in UTC, ascending by start, whose end is after ``now``.

    Walked in wall time with a small buffer, so the order is by UTC even where a DST gap moves a
    start forward past the next one. Stops at :data:`HORIZON` after ``now``.
    """
    now = _aware(now)
    length = spec.duration
    begin = local_wall(now - length, spec.timezone) - _SLACK
    until = local_wall(now + HORIZON, spec.timezone)
    pending: list[tuple[datetime, datetime]] = []  # heap of (utc start, wall start)
    last: datetime | None = None  # two gap starts can land on one instant: yield it once
    for wall in _starts(spec, begin, until):
        start = localize(wall, spec.timezone)
        if start + length > now:
            heapq.heappush(pending, (start, wall))
        while pending and wall - pending[0][1] > _SLACK:
            first, _ = heapq.heappop(pending)
            if first != last:
                last = first
                yield first, first + length
    while pending:
        first, _ = heapq.heappop(pending)
        if first != last:
            last = first
            yield first, first + length


def next_window(spec: WindowSpec, now: datetime) -> tuple[datetime, datetime]:
    """The window open at ``now`` (start <= now < end), else the next one to open. UTC.

    Raises :class:`NoWindow` when none opens within :data:`HORIZON`.
    """
    for window in upcoming(spec, now):
        return window
    raise NoWindow(
        f"window {spec.name!r} ({spec.recurrence}) does not open in the next {HORIZON.days} days "
        "(a finished RRULE, or every occurrence is a blackout date)"
    )


def best_window(spec: WindowSpec, now: datetime) -> tuple[datetime, datetime]:
    """Like :func:`next_window`, but where occurrences overlap (a window longer than its recurrence
    interval) the open one that closes last: the occurrence with the most room for new work."""
    now = _aware(now)
    best: tuple[datetime, datetime] | None = None
    for start, end in upcoming(spec, now):
        if start > now:
            return best or (start, end)
        if best is None or end > best[1]:
            best = (start, end)
    if best is None:
        raise NoWindow(f"window {spec.name!r} ({spec.recurrence}) does not open in the next {HORIZON.days} days")
    return best


def windows_between(spec: WindowSpec, since: datetime, until: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """The windows (start, end) that start in ``[since, until)``; UTC, ascending."""
    since, until = _aware(since), _aware(until)
    found = []
    for start, end in upcoming(spec, since):
        if start >= until:
            break
        if start >= since:
            found.append((start, end))
    return tuple(found)


def is_open(spec: WindowSpec, now: datetime) -> bool:
    """True when a window is open at ``now`` and its cutoff has not passed (new work may start)."""
    start, end = next_window(spec, now)
    return start <= _aware(now) < end - spec.cutoff


def remaining(spec: WindowSpec, now: datetime) -> timedelta:
    """Time left for starting new work in the window open at ``now``; zero when closed or past cutoff."""
    now = _aware(now)
    start, end = next_window(spec, now)
    if now < start:
        return timedelta(0)
    return max(timedelta(0), end - spec.cutoff - now)


def usable(spec: WindowSpec) -> timedelta:
    """How long one window accepts new work (duration minus cutoff)."""
    return max(timedelta(0), spec.duration - spec.cutoff)


def admits(spec: WindowSpec, now: datetime, est_s: float, rollback_s: float) -> bool:
    """May a VM start at ``now``? Its estimate plus worst-case rollback must end by ``end - cutoff``."""
    left = remaining(spec, now)
    return left > timedelta(0) and left >= timedelta(seconds=est_s + rollback_s)


def next_admission(spec: WindowSpec, now: datetime, est_s: float, rollback_s: float) -> datetime | None:
    """The earliest moment at or after ``now`` at which :func:`admits` is true.

    ``now`` itself when the open window still has room; else the start of the next window (a
    fresh window admits whatever fits into :func:`usable`). ``None`` when the work can never fit
    (longer than the window accepts work) or no window opens within :data:`HORIZON`.
    """
    now = _aware(now)
    need = timedelta(seconds=est_s + rollback_s)
    if need > usable(spec) or usable(spec) == timedelta(0):
        return None
    for start, end in upcoming(spec, now):
        candidate = max(now, start)
        if candidate < end - spec.cutoff and candidate + need <= end - spec.cutoff:
            return candidate
    return None


def describe(spec: WindowSpec, now: datetime) -> str:
    """One line for humans: the window open now (and until when new work starts) or the next one."""
    zone = ZoneInfo(spec.timezone)
    try:
        start, end = next_window(spec, now)
    except NoWindow:
        return f"window {spec.name!r}: no occurrence in the next {HORIZON.days} days"
    fmt = "%a %Y-%m-%d %H:%M %Z"
    cutoff = (end - spec.cutoff).astimezone(zone).strftime(fmt)
    if start <= _aware(now) < end:
        return f"window {spec.name!r} is open until {end.astimezone(zone).strftime(fmt)} (new work until {cutoff})"
    return (f"window {spec.name!r} opens {start.astimezone(zone).strftime(fmt)}, closes "
            f"{end.astimezone(zone).strftime(fmt)} (new work until {cutoff})")  # fmt: skip
