"""The planner's timeline: step estimates, when each wave is predicted to start, whether it fits its
window, and the plan's content id. Pure (no clock); used by :mod:`orchestrator.planning.planner`.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

from orchestrator.config.settings import Settings
from orchestrator.model import FailureDomain, Plan, Wave, WindowFit
from orchestrator.windows import NoWindow, WindowSpec, next_admission, next_window
from orchestrator.windows.hosts import SpecOf, place_hosts


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def estimate(past: Sequence[float] | None, default_s: int) -> int:
    """A step's predicted duration: the median of its past durations (s, rounded up), else ``default_s``."""
    if not past:
        return default_s
    return max(1, int(-(-statistics.median(past) // 1)))  # ceil


def wave_duration_s(wave: Wave) -> int:
    """ceil(n / concurrency) batches, each as long as the slowest VM estimate of the wave."""
    if not wave.vms:
        return 0
    batches = -(-len(wave.vms) // max(1, wave.concurrency))
    return batches * max(step.est_duration_s for step in wave.vms)


def schedule(
    domains: tuple[FailureDomain, ...], waves: tuple[Wave, ...], settings: Settings, now: datetime
) -> tuple[tuple[FailureDomain, ...], tuple[Wave, ...], tuple[WindowFit, ...]]:
    """Place the host phase, then the waves, on a timeline starting at ``now``.

    The host phase is placed by :func:`orchestrator.windows.hosts.place_hosts` (the walk ``HostBatch``
    does: each failure domain waits for its window until its worst case fits before the cutoff).
    A wave bound to a window waits for it to open; it fits when its predicted end plus the worst
    rollback of its VMs is before the window's end minus cutoff.
    """
    domains, t = place_domains(domains, settings, now.astimezone(UTC))
    first = next((w.window for w in waves if w.window), "")
    placed: list[Wave] = []
    occurrences: dict[str, tuple[datetime, datetime]] = {}
    misfits: dict[str, list[str]] = {}
    for wave in waves:
        duration = wave_duration_s(wave)
        fits = True
        if wave.window:
            spec = settings.window(wave.window)
            found = _next(settings, wave.window, t)
            if found is None:  # the window never opens again: the wave cannot run
                misfits.setdefault(wave.window, []).append(wave.wave_id)
                placed.append(replace(wave, est_start="", est_duration_s=duration, fits=False))
                continue
            start, end = found
            t = max(t, start)
            occurrences.setdefault(wave.window, (start, end))
            began, t, fits = _batches(spec, wave, t)
            if not fits:
                misfits.setdefault(wave.window, []).append(wave.wave_id)
            placed.append(replace(wave, est_start=_iso(began), est_duration_s=duration, fits=fits))
            t += timedelta(seconds=wave.soak_s)
            continue
        placed.append(replace(wave, est_start=_iso(t), est_duration_s=duration, fits=fits))
        t += timedelta(seconds=duration + wave.soak_s)
    names = ([first] if first else []) + sorted((set(occurrences) | set(misfits)) - {first})
    return (
        domains,
        tuple(placed),
        tuple(_fit(name, occurrences.get(name), settings, misfits.get(name, [])) for name in names),
    )


def place_domains(
    domains: tuple[FailureDomain, ...], settings: Settings, now: datetime
) -> tuple[tuple[FailureDomain, ...], datetime]:
    """The domains with their predicted start and end (:func:`place_hosts`), and when the host phase ends."""
    slots = {
        s.step_id: s for s in place_hosts([h for d in domains for h in d.hosts], now, _spec_of(settings))
    }
    placed, t = [], now
    for domain in domains:
        starts = [slot.start for h in domain.hosts if (slot := slots[h.step_id]).start is not None]
        ends = [slot.end for h in domain.hosts if (slot := slots[h.step_id]).end is not None]
        if starts and ends:
            t = max(t, *ends)
            domain = replace(domain, est_start=_iso(min(starts)), est_end=_iso(max(ends)))
        placed.append(domain)
    return tuple(placed), t


def _spec_of(settings: Settings) -> SpecOf:
    def spec(name: str) -> WindowSpec | None:
        try:
            return settings.window(name)
        except KeyError:
            return None

    return spec


def _batches(spec: WindowSpec, wave: Wave, t: datetime) -> tuple[datetime, datetime, bool]:
    """Admit the wave's batches like the workflow's window gate does (:func:`next_admission`: one
    rule): a batch starts when its slowest estimate plus worst rollback fits before the cutoff, else
    in the next window. (first start, end, all in one window)."""
    per = max(step.est_duration_s for step in wave.vms)
    rollback = max(step.est_rollback_s for step in wave.vms)
    batches = -(-len(wave.vms) // max(1, wave.concurrency))
    first: datetime | None = None
    fits = True
    for _ in range(batches):
        admitted = next_admission(spec, t, per + rollback)
        if admitted is None:  # never fits (blocked by the planner already) or no window any more
            return first or t, t, False
        if first is not None and admitted > t:
            fits = False  # this batch waits for a later window
        elif first is None and admitted > t:
            fits = not (t > next_window(spec, t)[0])  # the open window had no room left
        first = first or admitted
        t = admitted + timedelta(seconds=per)
    return first or t, t, fits


def _next(settings: Settings, name: str, t: datetime) -> tuple[datetime, datetime] | None:
    try:
        return next_window(settings.window(name), t)
    except NoWindow:
        return None


def _fit(
    name: str, occurrence: tuple[datetime, datetime] | None, settings: Settings, misfits: list[str]
) -> WindowFit:
    if occurrence is None:
        return WindowFit(
            window=name,
            fits=False,
            note=f"window {name!r} does not open again (finished rrule or all blackout dates)",
        )
    start, end = occurrence
    cutoff = end - settings.window(name).cutoff
    note = ""
    if misfits:
        note = (
            f"wave(s) {', '.join(misfits)} are predicted to run past the cutoff of window {name!r}; "
            "they start in a later window (or widen the window / lower wave_size)"
        )
    return WindowFit(
        window=name, start=_iso(start), end=_iso(end), cutoff=_iso(cutoff), fits=not misfits, note=note
    )


def _timeless(fields: dict[str, object], *keys: str) -> dict[str, object]:
    return {k: v for k, v in fields.items() if k not in keys}


#: Wave fields outside the plan id (time-dependent).
_UNHASHED = ("est_start", "fits")
#: Wave fields newer than the plan id: hashed only when set, so a plan without them keeps its id.
_NEW = ("prepare_ahead",)


def plan_id_of(plan: Plan) -> str:
    """sha256 of the canonical ordered steps (time-dependent fields left out)."""
    body = {
        "sites": list(plan.sites),
        "host_phase": [_timeless(asdict(d), "est_start", "est_end") for d in plan.host_phase],
        "waves": [
            {k: v for k, v in asdict(w).items() if k not in _UNHASHED and (v or k not in _NEW)}
            for w in plan.waves
        ],
        "blocked": [asdict(b) for b in plan.blocked],
        "failure_budget": plan.failure_budget,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
