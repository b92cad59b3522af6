"""When a maintenance window opens, as naive local wall-clock times: cron or iCalendar RRULE (pure).

:mod:`orchestrator.windows` turns these wall times into UTC instants in the window's time zone.
Recurrences are evaluated in wall-clock time on purpose (RFC 5545 semantics): "22:00 every
Saturday" stays 22:00 across a DST change, and the DST handling lives in one place
(:func:`orchestrator.windows.localize`).

RRULE text is RFC 5545: ``"FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0"``, optionally with a leading
``RRULE:`` and a ``DTSTART:20260103T220000`` line (a *local* time, no ``TZID``/``Z``: the window's
``timezone`` applies). Without DTSTART the rule is anchored at :data:`DEFAULT_ANCHOR` (Monday
2020-01-06 00:00 local), so a rule without ``BYHOUR``/``BYMINUTE`` opens at midnight and an
``INTERVAL`` > 1 counts from that Monday. EXDATE/RDATE lines are refused: blackout dates and
exceptions are the window's ``exdates`` / ``holidays``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol, cast

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rrule, rrulestr

from orchestrator.environment import allow_listed_environ

with allow_listed_environ():  # croniter starts `file -b <python>` when imported: none of our secrets
    from croniter import croniter as croniter  # noqa: PLC0414 - re-exported: config.windows checks cron with it

DEFAULT_ANCHOR = datetime(2020, 1, 6)  # a Monday, 00:00 local
_FIXED = {WEEKLY: timedelta(weeks=1), DAILY: timedelta(days=1), HOURLY: timedelta(hours=1),
          MINUTELY: timedelta(minutes=1), SECONDLY: timedelta(seconds=1)}  # fmt: skip


class _Fields(Protocol):
    """The parsed fields dateutil keeps on an ``rrule`` (private attributes the stubs do not declare)."""

    _dtstart: datetime
    _freq: int
    _interval: int
    _count: int | None


def _fields(rule: rrule) -> _Fields:
    return cast(_Fields, rule)  # types-python-dateutil declares no attributes of a parsed rrule


class RuleError(ValueError):
    """An RRULE/cron text that cannot be used; the message says what to write instead."""


def parse_rrule(text: str) -> rrule:
    """A dateutil ``rrule`` from RRULE text (see the module docstring); :class:`RuleError` if unusable."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise RuleError("is empty")
    for line in lines:
        head = line.split(":", 1)[0].split(";", 1)[0].upper()
        if head in ("EXDATE", "RDATE", "EXRULE"):
            raise RuleError(f"{head} lines are not supported here; list exceptions in exdates = [...]")
        if head == "DTSTART" and (";" in line.split(":", 1)[0] or line.upper().endswith("Z")):
            raise RuleError("DTSTART must be a local time without TZID or Z (the window's timezone applies)")
    has_start = any(line.upper().startswith("DTSTART") for line in lines)
    try:
        rule = rrulestr("\n".join(lines), dtstart=None if has_start else DEFAULT_ANCHOR, forceset=False)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise RuleError(f"is not an RFC 5545 RRULE ({exc})") from None
    if not isinstance(rule, rrule):
        raise RuleError("must hold exactly one RRULE")
    fields = _fields(rule)
    if fields._dtstart.tzinfo is not None:
        raise RuleError("DTSTART must be a local time without TZID or Z (the window's timezone applies)")
    if fields._freq == SECONDLY:
        raise RuleError("FREQ=SECONDLY is not a maintenance window; use MINUTELY or coarser")
    if fields._count is not None and not has_start:
        raise RuleError("COUNT needs a DTSTART line (the count starts there)")
    return rule


@lru_cache(maxsize=256)
def _cached_rrule(text: str) -> rrule:
    return parse_rrule(text)


def _near(rule: rrule, wall: datetime) -> rrule:
    """The same rule re-anchored a whole number of periods closer to ``wall`` (same occurrences).

    dateutil iterates from DTSTART; shifting DTSTART by k * INTERVAL periods keeps the phase, so
    occurrences after the new anchor are unchanged — and a daily rule from 2020 need not be walked.
    Rules with COUNT are not shifted (the count starts at DTSTART).
    """
    fields = _fields(rule)
    start, freq, interval = fields._dtstart, fields._freq, fields._interval
    if fields._count is not None or wall <= start:
        return rule
    if freq in _FIXED:
        period = _FIXED[freq] * interval
        k = int((wall - start) / period) - 2
        return rule.replace(dtstart=start + period * k) if k > 0 else rule
    if freq == MONTHLY and start.day <= 28:
        months = (wall.year - start.year) * 12 + wall.month - start.month
        k = months // interval - 2
        return rule.replace(dtstart=start + relativedelta(months=k * interval)) if k > 0 else rule
    if freq == YEARLY and (start.month, start.day) != (2, 29):
        k = (wall.year - start.year) // interval - 2
        return rule.replace(dtstart=start + relativedelta(years=k * interval)) if k > 0 else rule
    return rule


def starts_after(cron: str, rrule_text: str, wall: datetime) -> Iterator[datetime]:
    """Naive wall times at which the window opens, strictly after ``wall``, ascending (endless
    unless the RRULE has COUNT/UNTIL)."""
    if rrule_text:
        rule = _near(_cached_rrule(rrule_text), wall)
        current = rule.after(wall, inc=False)
        while current is not None:
            yield current
            current = rule.after(current, inc=False)
        return
    it = croniter(cron, wall)
    while True:
        yield it.get_next(datetime)
