"""The ``[[schedules]]`` tables: which rollouts start on their own, and when.

```toml
[[schedules]]
name = "weekly"                  # the Temporal schedule is patchwave-sched-weekly
window = "weekend"               # a run starts at each opening of [windows.weekend] (minus the pre-notice)
rings = ["canary", "main"]       # the groups of these rings ...
groups = []                      # ... and these groups (neither: every group)
sites = []                       # on these sites (none: every site)
```

One fire is one ``PatchRun`` over everything the schedule covers, with the full ring model: rings in
``[rings] order``, soak, ring health gate, approval and one failure budget. Within that run a group
without a window of its own is bound to the schedule's window; a group bound to another window waits
for that one.

Without any ``[[schedules]]`` table the schedules are derived (:func:`derived_schedules`); with
``schedules = []`` nothing is scheduled.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.config.names import NAME, NAME_FIX
from orchestrator.config.settings import GroupSettings, RingSettings, ScheduleSettings
from orchestrator.windows import WindowSpec
from providers.settings import SettingsReader, suggest

SCHEDULE_KEYS = ("name", "window", "rings", "groups", "sites")


def schedules_table(
    top: SettingsReader,
    groups: tuple[GroupSettings, ...],
    rings: tuple[RingSettings, ...],
    windows: tuple[WindowSpec, ...],
    sites: tuple[str, ...],
) -> tuple[ScheduleSettings, ...]:
    """The ``[[schedules]]`` tables, resolved and sorted by name; derived ones when there is none."""
    if not top.has("schedules"):
        return derived_schedules(groups, rings, sites)
    found: list[ScheduleSettings] = []
    for t in top.tables("schedules"):
        schedule = _schedule(t.check_keys(SCHEDULE_KEYS), groups, rings, windows, sites)
        if schedule.name in (s.name for s in found):
            raise t.error("name", f"schedule {schedule.name!r} is defined twice",
                          "give each [[schedules]] a unique name (it names the Temporal schedule)")  # fmt: skip
        found.append(schedule)
    return tuple(sorted(found, key=lambda s: s.name))


def _schedule(
    t: SettingsReader,
    groups: tuple[GroupSettings, ...],
    rings: tuple[RingSettings, ...],
    windows: tuple[WindowSpec, ...],
    sites: tuple[str, ...],
) -> ScheduleSettings:
    name = t.text("name", required=True)
    if not NAME.match(name):
        raise t.error("name", f"{name!r} is not a valid schedule name", NAME_FIX)
    window = t.text("window", required=True)
    known_windows = [w.name for w in windows]
    if window not in known_windows:
        fix = f"use one of: {', '.join(known_windows)}" if known_windows else f"define [windows.{window}]"
        raise t.error("window", f"unknown window {window!r}", fix + _hint(window, known_windows))
    ring_names = _known(t, "rings", [r.name for r in rings], "rings.order")
    group_names = _known(t, "groups", [g.name for g in groups], "the [[groups]] names")
    covered = tuple(
        g.name
        for g in groups
        if (not ring_names and not group_names) or g.name in group_names or g.ring in ring_names
    )
    if not covered:
        raise t.error("rings", f"no [[groups]] is in ring(s) {', '.join(ring_names)}",
                      "name a ring some group uses, or list groups = [...]")  # fmt: skip
    chosen_sites = _known(t, "sites", sites, "the [providers.<site>] names")
    return ScheduleSettings(name=name, window=window, groups=covered,
                            sites=tuple(s for s in sites if not chosen_sites or s in chosen_sites))  # fmt: skip


def _known(t: SettingsReader, key: str, known: Sequence[str], where: str) -> tuple[str, ...]:
    """``key``'s list; every entry must be one of ``known`` (duplicates are dropped)."""
    values = t.strings(key)
    for value in values:
        if value not in known:
            raise t.error(key, f"unknown {key[:-1]} {value!r}",
                          f"use one of {where}: {', '.join(known)}" + _hint(value, known))  # fmt: skip
    return tuple(dict.fromkeys(values))


def derived_schedules(
    groups: tuple[GroupSettings, ...], rings: tuple[RingSettings, ...], sites: tuple[str, ...]
) -> tuple[ScheduleSettings, ...]:
    """The schedules of a file without ``[[schedules]]``: one per window some group is bound to,
    named after the window, on every site. It covers the groups bound to that window and, ahead of
    them, the groups without a window whose ring comes earlier in ``[rings] order`` (the canary).
    A group without a window in the same or a later ring is not scheduled (as before rollouts)."""
    order = [r.name for r in rings]
    found = []
    for window in sorted({g.window for g in groups if g.window}):
        last = max(order.index(g.ring) for g in groups if g.window == window)
        covered = tuple(g.name for g in groups
                        if g.window == window or (not g.window and order.index(g.ring) < last))  # fmt: skip
        found.append(ScheduleSettings(name=window, window=window, groups=covered, sites=sites, derived=True))
    return tuple(found)


def _hint(value: str, options: Sequence[str]) -> str:
    fix = suggest(value, options)
    return f" ({fix})" if fix.startswith("did you mean") else ""
