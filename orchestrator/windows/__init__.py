"""Maintenance windows (pure): when may a run start work, and until when.

A window opens at each occurrence of its recurrence — a five-field ``cron`` *or* an iCalendar
``rrule`` (:mod:`orchestrator.windows.rules`) — evaluated in the window's IANA ``timezone``, stays
open for ``duration_s`` and accepts no new work during its last ``cutoff_s``. Occurrences starting
on a blackout date (``exdates`` given as dates, and the ``holidays`` lists) or at an excluded
local time (``exdates`` given as date-times) do not open.

Every function takes ``now`` (an aware datetime) and returns aware UTC datetimes; nothing here
reads the clock, so the same functions run in the planner and inside a Temporal workflow (with
``workflow.now()``), deterministically.

Admission (one rule, :func:`admits`, for the planner's timeline and the workflow's window gate):
a VM needing ``need_s`` seconds — its estimate plus worst-case rollback — starts at ``now`` in an
occurrence ``[start, end)`` only when ``start <= now < end - cutoff`` and ``now + need_s <= end -
cutoff``. Otherwise it waits for the occurrence to open, or (too late in it) for its end and the
next occurrence (:func:`retry_at`); work that an occurrence does not admit at its start never fits
(:func:`fits`; the planner blocks such a VM). :func:`next_admission` runs that same loop over
:func:`occurrence_at`, which is what the ``window_slot`` activity answers the gate with.

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

from orchestrator.windows.rules import starts_after

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
        raise NoWindow(
            f"window {spec.name!r} ({spec.recurrence}) does not open in the next {HORIZON.days} days"
        )
    return best


def usable(spec: WindowSpec) -> timedelta:
    """How long one window accepts new work (duration minus cutoff)."""
    return max(timedelta(0), spec.duration - spec.cutoff)


# ------------------------------------------------------------------------------ admission
@dataclass(frozen=True)
class Occurrence:
    """One occurrence of a window: open during ``[start, end)``; new work must be done by ``cutoff_at``."""

    start: datetime
    end: datetime
    cutoff_at: datetime  # end - the window's cutoff


def admits(occurrence: Occurrence, now: datetime, need_s: float) -> bool:
    """THE admission rule (planner and workflow alike): work that needs ``need_s`` seconds (its
    estimate plus worst-case rollback) may start at ``now`` when the occurrence is open and the work
    ends by its cutoff: ``start <= now < cutoff_at`` and ``now + need_s <= cutoff_at``.

    Work that an occurrence does not admit at its own start never fits this window.
    """
    cutoff_at = occurrence.cutoff_at
    return occurrence.start <= now < cutoff_at and now + timedelta(seconds=need_s) <= cutoff_at


def retry_at(occurrence: Occurrence, now: datetime, need_s: float) -> datetime | None:
    """When :func:`admits` said no at ``now``: the moment to look again — the occurrence's start
    while it has not opened, else its end (then the next occurrence is the one to look at).
    ``None`` when the work never fits (not even at an occurrence's start)."""
    if not admits(occurrence, occurrence.start, need_s):
        return None
    return occurrence.start if now < occurrence.start else occurrence.end


def occurrence_at(spec: WindowSpec, now: datetime) -> Occurrence | None:
    """The occurrence a run looks at ``now``: :func:`best_window` with its cutoff (``None`` when no
    window opens within :data:`HORIZON`). The ``window_slot`` activity answers the workflow with it."""
    try:
        start, end = best_window(spec, now)
    except NoWindow:
        return None
    return Occurrence(start, end, end - spec.cutoff)


def fits(spec: WindowSpec, need_s: float) -> bool:
    """Can work needing ``need_s`` seconds start in this window at all (at an occurrence's start)?"""
    opening = datetime(2000, 1, 1, tzinfo=UTC)  # any start: every occurrence is as long (elapsed time)
    end = opening + spec.duration
    return admits(Occurrence(opening, end, end - spec.cutoff), opening, need_s)


def next_admission(spec: WindowSpec, now: datetime, need_s: float) -> datetime | None:
    """The moment at or after ``now`` at which work needing ``need_s`` seconds starts, exactly as the
    workflow's window gate decides it: look at :func:`occurrence_at`, start if :func:`admits`, else
    wait until :func:`retry_at` and look again. ``None`` when the work never fits or no window opens
    within :data:`HORIZON`.
    """
    moment = _aware(now)
    while (occurrence := occurrence_at(spec, moment)) is not None:
        if admits(occurrence, moment, need_s):
            return moment
        wake = retry_at(occurrence, moment, need_s)
        if wake is None or wake <= moment:
            return None
        moment = wake
    return None
