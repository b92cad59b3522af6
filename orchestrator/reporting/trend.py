"""The fleet's compliance over time, per day, from the assessment history (the report's trend chart).

The fleet is today's (as the metrics count it: :mod:`orchestrator.facts.fleet`); each day's point is
how it stood at the end of that day (the last point: at ``now``): how many machines were compliant,
non-compliant (the same rule, with that day's grace cutoff) or not assessed yet, and how many
security updates (critical among them) their latest assessments listed. One baseline read and one
time-ordered pass over the window's assessments and patches: the work grows with the fleet and the
window, never with the whole history, and only the per-day totals are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.facts import history
from orchestrator.facts.fleet import noncompliant_at
from orchestrator.facts.records import utc
from orchestrator.facts.store import FactStore

DAYS = 30


@dataclass(frozen=True)
class TrendPoint:
    day: str  # YYYY-MM-DD (UTC); the figures are as of the end of that day (the last day: as of ``now``)
    compliant: int
    noncompliant: int
    unassessed: int
    security: int  # security updates pending on the fleet (latest assessments)
    critical: int

    @property
    def machines(self) -> int:
        return self.compliant + self.noncompliant + self.unassessed


@dataclass
class _Machine:
    assessed: bool
    critical: int
    security: int
    patched: float | None  # epoch seconds


def compliance_trend(
    facts: FactStore, now: datetime, grace_s: float, *, days: int = DAYS
) -> tuple[TrendPoint, ...]:
    moment = utc(now)
    first = (moment - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    since = first.isoformat(timespec="microseconds")
    fleet = {
        (m.site, m.vm_id): _Machine(m.assessed, m.critical, m.security, _epoch(m.patched_at))
        for m in history.fleet_before(facts, since)
    }
    events = history.events_between(facts, since, moment.isoformat(timespec="microseconds"))
    return tuple(_points(fleet, events, first, moment, grace_s))


def _points(
    fleet: dict[tuple[str, str], _Machine], events: Iterator[history.HistoryEvent], first: datetime,
    moment: datetime, grace_s: float,
) -> Iterator[TrendPoint]:  # fmt: skip
    pending = next(events, None)
    day = first
    while day <= moment:
        end = min(day + timedelta(days=1), moment)
        while pending is not None and utc(pending.at) < end:
            _apply(fleet, pending)
            pending = next(events, None)
        yield _point(day.date().isoformat(), fleet, end.timestamp() - grace_s)
        day += timedelta(days=1)


def _apply(fleet: dict[tuple[str, str], _Machine], event: history.HistoryEvent) -> None:
    machine = fleet.get((event.site, event.vm_id))
    if machine is None:  # not in today's fleet
        return
    if event.kind == "patched":
        machine.patched = _epoch(event.at)
    else:
        machine.assessed, machine.critical, machine.security = True, event.critical, event.security


def _point(day: str, fleet: dict[tuple[str, str], _Machine], cutoff_ts: float) -> TrendPoint:
    compliant = noncompliant = unassessed = security = critical = 0
    for m in fleet.values():
        if not m.assessed:
            unassessed += 1
            continue
        security += m.security
        critical += m.critical
        if noncompliant_at(m.critical, m.security, m.patched, cutoff_ts):
            noncompliant += 1
        else:
            compliant += 1
    return TrendPoint(day, compliant, noncompliant, unassessed, security, critical)


def _epoch(iso: str) -> float | None:
    return utc(iso).timestamp() if iso else None
