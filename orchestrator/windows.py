"""Maintenance windows (pure): when may a run start work, and until when.

A window opens at each fire time of a cron expression evaluated in the window's time zone, stays
open for ``duration_s`` and accepts no new work during its last ``cutoff_s``. Every function takes
``now`` (aware datetime) and returns aware UTC datetimes; nothing here reads the clock.

(The windows issue extends :class:`WindowSpec` with RRULE/EXDATE; the function signatures stay.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter


@dataclass(frozen=True)
class WindowSpec:
    name: str
    cron: str  # five-field cron, evaluated in ``timezone``
    duration_s: int
    timezone: str = "UTC"  # IANA name
    cutoff_s: int = 0  # no new work starts during the last ``cutoff_s`` of a window

    @property
    def cutoff(self) -> timedelta:
        return timedelta(seconds=self.cutoff_s)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("windows need an aware datetime (with tzinfo); got a naive one")
    return now


def _fire(spec: WindowSpec, base: datetime, *, forward: bool) -> datetime:
    local = base.astimezone(ZoneInfo(spec.timezone))
    it = croniter(spec.cron, local)
    fire = it.get_next(datetime) if forward else it.get_prev(datetime)
    return fire.astimezone(UTC)


def next_window(spec: WindowSpec, now: datetime) -> tuple[datetime, datetime]:
    """The window open at ``now`` (start <= now < end), else the next one to open. UTC."""
    now = _aware(now).astimezone(UTC)
    length = timedelta(seconds=spec.duration_s)
    # croniter's get_prev is strict (< base); nudge so a window starting exactly at `now` counts.
    previous = _fire(spec, now + timedelta(microseconds=1), forward=False)
    if previous <= now < previous + length:
        return previous, previous + length
    start = _fire(spec, now, forward=True)
    return start, start + length


def is_open(spec: WindowSpec, now: datetime) -> bool:
    """True when a window is open at ``now`` and its cutoff has not passed (new work may start)."""
    start, end = next_window(spec, now)
    return start <= now < end - spec.cutoff


def remaining(spec: WindowSpec, now: datetime) -> timedelta:
    """Time left for starting new work in the window open at ``now``; zero when closed or past cutoff."""
    start, end = next_window(spec, now)
    if now < start:
        return timedelta(0)
    return max(timedelta(0), end - spec.cutoff - now)


def usable(spec: WindowSpec) -> timedelta:
    """How long one window accepts new work (duration minus cutoff)."""
    return max(timedelta(0), timedelta(seconds=spec.duration_s) - spec.cutoff)
