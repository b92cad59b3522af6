"""The host phase of a plan (pure): which hypervisor hosts are patched, grouped by failure domain.

Failure domains one after another (sorted by site, then domain), the hosts of a domain strictly
one at a time (sorted by name). With ``[hosts] patch = "none"`` the steps are *report only*.

Each domain gets a maintenance window (:func:`domain_window`) and a worst case: the sum of its
hosts' worst cases, each the longest of the host's last successful runs (evacuate + patch + reboot
+ exit, from the fact store) or ``[hosts] default_duration``. A domain whose worst case does not fit
its window at all is blocked (code ``window``); the others are placed by
:func:`orchestrator.windows.hosts.place_hosts` (the timeline) and gated the same way in the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from orchestrator.config.machines import NO_WINDOW
from orchestrator.config.settings import Settings
from orchestrator.model import Blocker, FailureDomain, HostStep, RebootPolicy, host_step_id
from orchestrator.planning.blockers import host_blockers
from orchestrator.planning.selection import Selection, all_of
from orchestrator.planning.timeline import estimate
from orchestrator.windows import fits, usable
from providers.base import Capability, Inventory, VmInfo

#: A guest's (rank, window): the rank of its ring in ``[rings].order`` and its group's window.
GuestWindow = Callable[[VmInfo], tuple[int, str]]

REPORT_ONLY = (
    'report only: [hosts] patch = "none" (e.g. the hypervisor is the machine patchwave runs on, or is '
    "patched by other means): the host is not put into maintenance, patched or rebooted; the run checks "
    "that it is connected and lists its pending updates read-only"
)


def host_phase(
    inventories: Sequence[Inventory],
    settings: Settings,
    chosen: Selection,
    capabilities: Mapping[str, frozenset[Capability]],
    history: Mapping[str, Sequence[float]],
    blocked: list[Blocker],
    warnings: list[Blocker],
    guest_window: GuestWindow = lambda _vm: (0, ""),
) -> tuple[FailureDomain, ...]:
    """Host steps; with ``patch = "none"`` they are *report only* (a warning per host says so).
    ``guest_window`` tells each guest's window (the default of a domain's window)."""
    cfg = settings.hosts
    if not cfg.enabled:
        for host in chosen.hosts:
            blocked.append(
                Blocker(
                    str(host.ref),
                    'hosts.enabled is false; set [hosts] enabled = true and patch = "platform" or "ssh" '
                    "to patch hosts",
                    "excluded",
                )
            )
        return ()
    report_only = cfg.patch == "none"
    _, all_hosts = all_of(inventories)
    if chosen.explicit or cfg.scope == "targets":
        wanted = {(h.ref.site, h.ref.id) for h in chosen.hosts}
        wanted |= {(vm.host.site, vm.host.id) for vm in chosen.vms if vm.host is not None}
        candidates = [h for h in all_hosts if (h.ref.site, h.ref.id) in wanted]
    else:
        candidates = all_hosts
    by_domain: dict[tuple[str, str], list[HostStep]] = {}
    for host in candidates:
        reasons = host_blockers(host, settings, capabilities.get(host.ref.site))
        if reasons:
            blocked.extend(Blocker(str(host.ref), reason, code) for code, reason in reasons)
            continue
        step_id = host_step_id(host.ref)
        domain = host.failure_domain or host.ref.name
        if report_only:
            warnings.append(Blocker(str(host.ref), REPORT_ONLY, "report_only"))
        by_domain.setdefault((host.ref.site, domain), []).append(HostStep(
            step_id=step_id, host=host.ref, failure_domain=domain, evacuate=cfg.evacuate and not report_only,
            patch=cfg.patch, reboot=RebootPolicy.NEVER if report_only else cfg.reboot,
            est_duration_s=estimate(history.get(step_id), cfg.default_duration_s),
            worst_s=worst_case(history.get(step_id), cfg.default_duration_s),
        ))  # fmt: skip
    guests, _ = all_of(inventories)  # every guest on a host is evacuated, targeted by this run or not
    domains = []
    for (site, domain), steps in sorted(by_domain.items()):
        ordered = tuple(sorted(steps, key=lambda s: (s.host.name, s.host.id)))
        window = "" if report_only else domain_window(settings, site, ordered, guests, guest_window)
        if window and (why := _misfit(settings, window, ordered)):
            blocked.extend(Blocker(str(s.host), why, "window") for s in ordered)
            continue
        domains.append(_gated(f"{site}:{domain}", ordered, window))
    return tuple(domains)


def worst_case(past: Sequence[float] | None, default_s: int) -> int:
    """A host's worst case: the longest of its past durations (s, rounded up), else ``default_s``."""
    return max(1, math.ceil(max(past))) if past else default_s


def domain_window(
    settings: Settings,
    site: str,
    steps: Sequence[HostStep],
    guests: Sequence[VmInfo],
    guest_window: GuestWindow,
) -> str:
    """The window a failure domain waits for: ``[hosts] window`` ("none": no window); else the window
    of the guests on the domain's hosts, else of the guests of its site (the earliest ring's, then
    by name; guests without a window do not count); else none."""
    chosen = settings.hosts.window
    if chosen:
        return "" if chosen == NO_WINDOW else chosen
    hosts = {(s.host.site, s.host.id) for s in steps}
    for near in (
        [vm for vm in guests if vm.host is not None and (vm.host.site, vm.host.id) in hosts],
        [vm for vm in guests if vm.ref.site == site],
    ):
        ranked = sorted(rw for rw in (guest_window(vm) for vm in near) if rw[1])
        if ranked:
            return ranked[0][1]
    return ""


def _misfit(settings: Settings, window: str, steps: Sequence[HostStep]) -> str:
    worst = sum(s.worst_s for s in steps)
    spec = settings.window(window)
    if fits(spec, worst):
        return ""
    room = int(usable(spec).total_seconds())
    return (
        f"its failure domain's worst case ({worst}s: evacuate + patch + reboot + exit of {len(steps)} host(s)) "
        f"is longer than window {window!r} accepts work ({room}s); widen the window, split the failure "
        f'domain, or set [hosts] window to a longer one (or "none")'
    )


def _gated(domain_id: str, steps: tuple[HostStep, ...], window: str) -> FailureDomain:
    """The domain with its window on every host and each host's need (its and the later hosts' worst cases)."""
    needs = [sum(s.worst_s for s in steps[i:]) for i in range(len(steps))]
    hosts = tuple(replace(s, window=window, need_s=need) for s, need in zip(steps, needs, strict=True))
    return FailureDomain(
        domain_id=domain_id, hosts=hosts, window=window, worst_case_s=needs[0] if needs else 0
    )
