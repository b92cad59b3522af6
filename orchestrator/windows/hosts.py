"""When the hypervisor phase runs (pure): the one walk of the host steps that the planner's timeline
and ``HostBatch`` share.

Hosts run strictly one after another in plan order. Before each host the run asks for admission
in the host's window (its failure domain's, :attr:`~orchestrator.model.HostStep.window`) with the
host's ``need_s``: the worst cases of this host and of the later hosts of its domain. So the first
host of a domain starts only when the domain's whole worst case (evacuate + patch + reboot + exit
of every host, learned from past runs) ends before the window's cutoff; a later host of the domain
passes at once unless the hosts before it overran (then it waits for the next occurrence: a host is
always out of maintenance between two hosts). A host without a window starts at once.

:func:`host_start` is that decision at one moment — :func:`orchestrator.windows.next_admission`,
which ``WindowGate.admit_need`` computes step by step with durable timers inside the workflow — and
:func:`place_hosts` walks the steps with it, advancing the clock by each host's predicted duration
(the plan's timeline). The workflow advances by the real durations instead; when they match the
prediction, the engine starts every host exactly where :func:`place_hosts` placed it (the e2e test
tests/e2e/engine/test_host_windows.py checks it on the PVE simulator).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.model import HostStep
from orchestrator.windows import WindowSpec, next_admission

#: window name -> its spec (``None``: unknown; then the host is never admitted).
SpecOf = Callable[[str], WindowSpec | None]


@dataclass(frozen=True)
class HostSlot:
    """Where a host step falls: ``start`` / ``end`` UTC, or ``None`` when its window never admits it."""

    step_id: str
    start: datetime | None
    end: datetime | None


def host_start(spec: WindowSpec | None, step: HostStep, now: datetime) -> datetime | None:
    """The moment at or after ``now`` at which ``step`` may start: ``now`` without a window, else the
    window's next admission of ``step.need_s`` seconds (``None``: never — the window does not open
    again, or the domain's worst case does not fit in it)."""
    if not step.window:
        return now
    if spec is None:
        return None
    return next_admission(spec, now, step.need_s)


def place_hosts(steps: Sequence[HostStep], now: datetime, spec_of: SpecOf) -> tuple[HostSlot, ...]:
    """Each host's predicted start and end, one host after another from ``now`` (see the module
    docstring). A host never admitted is left out of the timeline (the run skips it with the reason)."""
    slots: list[HostSlot] = []
    t = now
    for step in steps:
        start = host_start(spec_of(step.window) if step.window else None, step, t)
        if start is None:
            slots.append(HostSlot(step.step_id, None, None))
            continue
        t = start + timedelta(seconds=step.est_duration_s)
        slots.append(HostSlot(step.step_id, start, t))
    return tuple(slots)
