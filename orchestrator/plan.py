"""The pure planner: inventories + settings + time -> :class:`~orchestrator.model.Plan`.

No I/O and no clock: everything arrives as an argument and everything is sorted, so equal inputs
give an equal plan (and an equal ``plan_id``). Order of a run:

1. **Host phase** — failure domains one after another (sorted by site, then domain), the hosts of
   a domain strictly one at a time (sorted by name).
2. **Guest waves** — rings in ``[rings].order``; a ring's VMs sorted by (site, name, id) and cut
   into waves of ``wave_size`` that never mix maintenance windows.

What cannot be done safely is a :class:`~orchestrator.model.Blocker` with a reason naming the fix —
never a half-protected step. Decisions are documented in docs/ARCHITECTURE.md ("Planner").
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from orchestrator.config import DEFAULT_GROUP, GroupSettings, Settings
from orchestrator.model import (
    Blocker,
    FailureDomain,
    HostStep,
    Plan,
    RebootPolicy,
    VmPolicy,
    VmStep,
    Wave,
    WindowFit,
)
from orchestrator.notify_messages import owners_of
from orchestrator.plan_selection import Selection, all_of, select_targets
from orchestrator.plan_timeline import plan_id_of, schedule
from providers.base import Capability, HostInfo, HostState, Inventory, PowerState, VmInfo

C = Capability


def make_plan(
    inventories: Sequence[Inventory],
    settings: Settings,
    now: datetime,
    *,
    history: Mapping[str, Sequence[float]] = {},
    capabilities: Mapping[str, frozenset[Capability]] = {},
    selection: Sequence[str] = (),
    hosts: bool = True,
    guests: bool = True,
    groups: Sequence[str] = (),
    sites: Sequence[str] = (),
) -> Plan:
    """Plan a run. ``history``: step_id -> past durations (s); ``capabilities``: site -> capabilities.

    ``groups`` / ``sites`` narrow the targets to those ``[[groups]]`` and sites (a scheduled run's
    scope; empty = no narrowing). Raises :class:`~orchestrator.errors.SelectionError` when a
    ``selection`` name matches nothing.
    """
    if now.tzinfo is None:
        raise ValueError("make_plan needs an aware `now` (e.g. datetime.now(UTC)); got a naive datetime")
    inventories = sorted((i for i in inventories if not sites or i.site in sites), key=lambda inv: inv.site)
    chosen = select_targets(inventories, settings, selection)
    if groups:
        chosen = replace(chosen, vms=tuple(vm for vm in chosen.vms if group_of(vm, settings).name in groups))
    blocked: list[Blocker] = list(chosen.blocked)
    warnings: list[Blocker] = []
    domains: tuple[FailureDomain, ...] = ()
    if hosts:
        domains = _host_phase(inventories, settings, chosen, capabilities, history, blocked, warnings)
    steps: list[VmStep] = []
    if guests:
        steps = _vm_steps(chosen.vms, settings, capabilities, history, blocked, warnings)
    waves = _waves(steps, settings)
    waves, fits = schedule(domains, waves, settings, now)
    blocked_sorted = tuple(sorted(blocked, key=lambda b: (b.target, b.code, b.reason)))
    planned = sum(len(w.vms) for w in waves)
    plan = Plan(
        plan_id="",
        created_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        sites=tuple(inv.site for inv in inventories),
        host_phase=domains,
        waves=waves,
        blocked=blocked_sorted,
        failure_budget=settings.policy.failure_budget.resolve(planned),
        window=fits[0] if fits else WindowFit(window="", note="no maintenance window: the run starts now"),
        window_fits=fits,
        warnings=tuple(sorted(warnings, key=lambda b: (b.target, b.code, b.reason))),
    )
    return replace(plan, plan_id=plan_id_of(plan))


# ------------------------------------------------------------------------------------ hosts
REPORT_ONLY = (
    'report only: [hosts] patch = "none" (e.g. the hypervisor is the machine patchwave runs on, or is '
    "patched by other means): the host is not put into maintenance, patched or rebooted; the run checks "
    "that it is connected and lists its pending updates read-only"
)


def _host_phase(
    inventories: Sequence[Inventory],
    settings: Settings,
    chosen: Selection,
    capabilities: Mapping[str, frozenset[Capability]],
    history: Mapping[str, Sequence[float]],
    blocked: list[Blocker],
    warnings: list[Blocker],
) -> tuple[FailureDomain, ...]:
    """Host steps; with ``patch = "none"`` they are *report only* (a warning per host says so)."""
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
        reasons = _host_blockers(host, settings, capabilities.get(host.ref.site))
        if reasons:
            blocked.extend(Blocker(str(host.ref), reason, code) for code, reason in reasons)
            continue
        step_id = f"host:{host.ref.site}:{host.ref.id}"
        domain = host.failure_domain or host.ref.name
        if report_only:
            warnings.append(Blocker(str(host.ref), REPORT_ONLY, "report_only"))
        by_domain.setdefault((host.ref.site, domain), []).append(HostStep(
            step_id=step_id, host=host.ref, failure_domain=domain, evacuate=cfg.evacuate and not report_only,
            patch=cfg.patch, reboot=RebootPolicy.NEVER if report_only else cfg.reboot,
            est_duration_s=_estimate(history.get(step_id), cfg.default_duration_s),
        ))  # fmt: skip
    return tuple(
        FailureDomain(
            domain_id=f"{site}:{domain}", hosts=tuple(sorted(steps, key=lambda s: (s.host.name, s.host.id)))
        )
        for (site, domain), steps in sorted(by_domain.items())
    )


def _host_blockers(
    host: HostInfo, settings: Settings, caps: frozenset[Capability] | None
) -> list[tuple[str, str]]:
    cfg = settings.hosts
    if host.state in (HostState.DISCONNECTED, HostState.UNKNOWN):
        return [
            ("host_state", f"{host.ref} is {host.state.value}; reconnect it (or exclude it) and plan again")
        ]
    if caps is None:
        return [_unknown_caps(host.ref.site)]
    if cfg.patch == "none":
        return []  # report only: no maintenance, patch or reboot, so no host capability is needed
    needed = [C.HOST_MAINTENANCE]
    if cfg.patch == "platform":
        needed.append(C.HOST_PATCH)
    if cfg.reboot is not RebootPolicy.NEVER:
        needed.append(C.HOST_REBOOT)
    if cfg.evacuate and host.running_vms > 0:
        needed.append(C.HOST_EVACUATE)
    fixes = {
        C.HOST_PATCH: 'set [hosts] patch = "ssh" (package manager over SSH) or "none"',
        C.HOST_REBOOT: 'set [hosts] reboot = "never" and reboot the host yourself',
        C.HOST_EVACUATE: "migrate its guests away first, or set [hosts] evacuate = false",
        C.HOST_MAINTENANCE: 'set [hosts] patch = "none" (or enabled = false) for this site',
    }
    return [
        ("capability", (f"the provider of site {host.ref.site!r} cannot {cap.value.replace('_', ' ')} for "
                       f"{host.ref}; {fixes[cap]}"))
        for cap in needed if cap not in caps
    ]  # fmt: skip


def _unknown_caps(site: str) -> tuple[str, str]:
    return (
        "capability",
        (
            f"the capabilities of site {site!r} are unknown; connect its provider "
            "(make_plan(capabilities={site: provider.capabilities}))"
        ),
    )


# ------------------------------------------------------------------------------------ guests
def group_of(vm: VmInfo, settings: Settings) -> GroupSettings:
    """The first ``[[groups]]`` whose match selects ``vm``; else the ``default`` group."""
    for group in settings.groups:
        if group.name != DEFAULT_GROUP and group.match.matches(vm.ref.name, vm.tags, vm.ref.site):
            return group
    return settings.group(DEFAULT_GROUP)


def _vm_steps(
    vms: Sequence[VmInfo],
    settings: Settings,
    capabilities: Mapping[str, frozenset[Capability]],
    history: Mapping[str, Sequence[float]],
    blocked: list[Blocker],
    warnings: list[Blocker],
) -> list[VmStep]:
    steps = []
    for vm in vms:
        group = group_of(vm, settings)
        access = settings.guests.access(vm.ref.name, vm.ref.site)
        caps = capabilities.get(vm.ref.site)
        reasons = _vm_blockers(vm, access.channel, access.ssh.host, caps)
        if reasons:
            blocked.extend(Blocker(str(vm.ref), reason, code) for code, reason in reasons)
            continue
        assert caps is not None
        policy = _vm_policy(vm, group, caps, warnings)
        step_id = f"vm:{vm.ref.site}:{vm.ref.id}"
        est = _estimate(history.get(step_id), group.policy.default_vm_duration_s)
        rollback = 2 * policy.health_deadline_s
        if group.window and (why := _window_blocker(settings, group.window, est + rollback)):
            blocked.append(Blocker(str(vm.ref), why, "window"))
            continue
        steps.append(VmStep(
            step_id=step_id, vm=vm.ref, group=group.name, ring=group.ring, policy=policy,
            est_duration_s=est, est_rollback_s=rollback, channel=access.channel, window=group.window,
            owners=owners_of(vm.tags, vm.labels, settings.notifications.owner_label),
        ))  # fmt: skip
    return steps


def _vm_blockers(
    vm: VmInfo, channel: str, ssh_host: str, caps: frozenset[Capability] | None
) -> list[tuple[str, str]]:
    ref = vm.ref
    reasons: list[tuple[str, str]] = []
    if vm.power is not PowerState.RUNNING:
        reasons.append(
            (
                "powered_off",
                (
                    f"{ref} is {vm.power.value}; start it and plan again "
                    "(patchwave patches running guests only)"
                ),
            )
        )
    if vm.locked:
        reasons.append(
            (
                "locked",
                (
                    f"{ref} is locked by the platform ({vm.locked}); wait for that operation "
                    "to finish or clear the lock, then plan again"
                ),
            )
        )
    if caps is None:
        return [*reasons, _unknown_caps(ref.site)]
    if C.SNAPSHOT in caps and C.SNAPSHOT in vm.unsupported:
        reasons.append(
            (
                "capability",
                (
                    f"{ref} cannot be snapshotted (its platform reports no snapshots for this guest); "
                    "patchwave never patches a guest without a snapshot — exclude it in [targets]"
                ),
            )
        )
    elif C.SNAPSHOT not in caps:
        reasons.append(
            (
                "capability",
                (
                    f"the provider of site {ref.site!r} cannot snapshot {ref}; patchwave "
                    "never patches a guest without a snapshot — exclude it in [targets]"
                ),
            )
        )
    if channel == "agent" and vm.kind == "container":
        reasons.append(
            (
                "no_channel",
                (
                    f"{ref} is a container and cannot run guest-agent commands; set "
                    f'[guests.overrides."{ref.name}"] channel = "ssh"'
                ),
            )
        )
    elif channel == "agent" and C.GUEST_EXEC not in caps:
        reasons.append(
            (
                "capability",
                (
                    f"the provider of site {ref.site!r} cannot run commands in {ref} "
                    f'(no guest agent exec); set [guests.overrides."{ref.name}"] channel = "ssh"'
                ),
            )
        )
    elif channel == "agent" and C.GUEST_EXEC in vm.unsupported:
        reasons.append(
            (
                "capability",
                (
                    f"{ref} cannot run guest-agent commands (its platform reports no agent exec for this "
                    "guest: no guest agent configured or installed); configure and install its guest "
                    f'agent and plan again, or set [guests.overrides."{ref.name}"] channel = "ssh"'
                ),
            )
        )
    if channel == "ssh" and "{ip}" in ssh_host and not vm.ip_addresses:
        reasons.append(
            (
                "no_channel",
                (
                    f"no IP address is known for {ref} (guests.ssh.host is {ssh_host!r}); "
                    f'set [guests.overrides."{ref.name}"] ssh = {{ host = "..." }}'
                ),
            )
        )
    return reasons


def _vm_policy(
    vm: VmInfo, group: GroupSettings, caps: frozenset[Capability], warnings: list[Blocker]
) -> VmPolicy:
    p = group.policy
    memory, quiesce = p.snapshot_memory, p.snapshot_quiesce
    if memory and (lacks := _lacks(vm, caps, C.SNAPSHOT_MEMORY, "snapshot memory")):
        memory = False
        warnings.append(
            Blocker(
                str(vm.ref),
                f"downgraded: {vm.ref} gets a disk-only snapshot ({lacks}); set snapshot_memory = false "
                f"for group {group.name!r} to silence this",
                "capability",
            )
        )
    if quiesce and (lacks := _lacks(vm, caps, C.SNAPSHOT_QUIESCE, "quiesce")):
        quiesce = False
        warnings.append(
            Blocker(
                str(vm.ref),
                f"downgraded: {vm.ref} gets a crash-consistent snapshot ({lacks}); set snapshot_quiesce = "
                f"false for group {group.name!r} to silence this",
                "capability",
            )
        )
    return VmPolicy(
        reboot=p.reboot, snapshot_memory=memory, snapshot_quiesce=quiesce, snapshot_ttl_s=p.snapshot_ttl_s,
        update_mode=p.updates, pins=p.pins, health_deadline_s=p.health_deadline_s,
        patch_timeout_s=p.patch_timeout_s,
    )  # fmt: skip


def _lacks(vm: VmInfo, caps: frozenset[Capability], capability: Capability, verb: str) -> str:
    """Why ``vm`` cannot use ``capability`` ("" = it can): the provider lacks it, or this guest does."""
    if capability not in caps:
        return f"the provider of site {vm.ref.site!r} cannot {verb}"
    if capability in vm.unsupported:
        return f"its platform cannot {verb} for this guest"
    return ""


def _window_blocker(settings: Settings, window: str, worst_case_s: int) -> str:
    from orchestrator.windows import usable

    room = int(usable(settings.window(window)).total_seconds())
    if worst_case_s <= room:
        return ""
    return (
        f"its estimate plus worst-case rollback ({worst_case_s}s) is longer than window {window!r} accepts "
        f"work ({room}s); widen the window or move the VM to a group without this window"
    )


def _estimate(past: Sequence[float] | None, default_s: int) -> int:
    if not past:
        return default_s
    return max(1, int(-(-statistics.median(past) // 1)))  # ceil


def _waves(steps: Sequence[VmStep], settings: Settings) -> tuple[Wave, ...]:
    waves: list[Wave] = []
    for ring in settings.rings:
        members = sorted(
            (s for s in steps if s.ring == ring.name), key=lambda s: (s.vm.site, s.vm.name, s.vm.id)
        )
        ring_waves: list[Wave] = []
        for window in sorted({s.window for s in members}):
            batch = [s for s in members if s.window == window]
            size = ring.wave_size or len(batch)
            for start in range(0, len(batch), size):
                chunk = tuple(batch[start : start + size])
                concurrency = min(settings.group(s.group).policy.concurrency for s in chunk)
                index = len(ring_waves)
                ring_waves.append(
                    Wave(
                        wave_id=f"{ring.name}:{index}",
                        ring=ring.name,
                        index=index,
                        vms=chunk,
                        concurrency=concurrency,
                        window=window,
                    )
                )
        if ring_waves:
            ring_waves[-1] = replace(ring_waves[-1], soak_s=ring.soak_s, approval=ring.approval)
        waves.extend(ring_waves)
    return tuple(waves)
