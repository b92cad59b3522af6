"""The pure planner: inventories + settings + time -> :class:`~orchestrator.model.Plan`.

No I/O and no clock: everything arrives as an argument and everything is sorted, so equal inputs
give an equal plan (and an equal ``plan_id``). Order of a run:

1. **Host phase** (:mod:`orchestrator.planning.hosts`) — failure domains one after another (sorted
   by site, then domain), the hosts of a domain strictly one at a time (sorted by name).
2. **Guest waves** — rings in ``[rings].order``; a ring's VMs sorted most at risk first (``risks``:
   the latest vulnerability assessments, :mod:`orchestrator.planning.risk_order`), then by (site,
   name, id), and cut into waves of ``wave_size`` that never mix maintenance windows.

What cannot be done safely is a :class:`~orchestrator.model.Blocker` with a reason naming the fix
(:mod:`orchestrator.planning.blockers`) — never a half-protected step. Decisions are documented in
docs/ARCHITECTURE.md ("Planner").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from orchestrator.config.settings import DEFAULT_GROUP, GroupSettings, Settings
from orchestrator.model import (
    Blocker,
    FailureDomain,
    Plan,
    VmPolicy,
    VmStep,
    Wave,
    WindowFit,
    vm_step_id,
)
from orchestrator.planning.blockers import unchecked, vm_blockers, window_blocker
from orchestrator.planning.hosts import host_phase
from orchestrator.planning.owners import owners_of
from orchestrator.planning.risk_order import by_risk
from orchestrator.planning.safeguards import backup_blocker, with_safeguards
from orchestrator.planning.selection import select_targets
from orchestrator.planning.timeline import estimate, plan_id_of, schedule
from orchestrator.vulns.risk import VmRisk
from providers.base import Capability, Inventory, VmInfo


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
    window: str = "",
    risks: Mapping[str, VmRisk] = {},
) -> Plan:
    """Plan a run. ``history``: step_id -> past durations (s); ``capabilities``: site -> capabilities;
    ``risks``: step_id -> the VM's risk from its latest vulnerability assessment (ring order).

    ``groups`` / ``sites`` narrow the targets to those ``[[groups]]`` and sites (a scheduled run's
    scope; empty = no narrowing). ``window`` (a scheduled run's window): the VMs of groups without a
    window of their own are bound to it, so they run inside its occurrence like the rest of the
    rollout (the rings keep their order). Raises :class:`~orchestrator.errors.SelectionError` when a
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
        ranks = {ring.name: i for i, ring in enumerate(settings.rings)}

        def guest_window(vm: VmInfo) -> tuple[int, str]:
            group = group_of(vm, settings)
            return ranks.get(group.ring, len(ranks)), group.window or window

        domains = host_phase(
            inventories, settings, chosen, capabilities, history, blocked, warnings, guest_window
        )
    steps: list[VmStep] = []
    if guests:
        steps = _vm_steps(chosen.vms, settings, capabilities, history, blocked, warnings, window)
    exposure = set(settings.assess.exposure_tags)
    exposed = {vm_step_id(vm.ref) for vm in chosen.vms if exposure.intersection(vm.tags)}
    waves = _waves(steps, settings, risks, exposed)
    domains, waves, fits = schedule(domains, waves, settings, now)
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
    default_window: str = "",
) -> list[VmStep]:
    steps = []
    for vm in vms:
        group = group_of(vm, settings)
        window = group.window or default_window
        access = settings.guests.access(vm.ref.name, vm.ref.site)
        caps = capabilities.get(vm.ref.site)
        reasons = vm_blockers(vm, access.channel, access.ssh.host, caps)
        health = unchecked(vm, settings, group)
        if health is not None and health[0] == "block":
            reasons.append(("no_health_check", health[1]))
        if reasons:
            blocked.extend(Blocker(str(vm.ref), reason, code) for code, reason in reasons)
            continue
        assert caps is not None
        if health is not None:
            warnings.append(Blocker(str(vm.ref), health[1], "no_health_check"))
        policy = with_safeguards(_vm_policy(vm, group, caps, warnings), vm, group, settings)
        if policy.backup and (why := backup_blocker(vm, group, caps)):
            blocked.append(Blocker(str(vm.ref), why, "capability"))
            continue
        step_id = vm_step_id(vm.ref)
        est = estimate(history.get(step_id), group.policy.default_vm_duration_s)
        rollback = 2 * policy.health_deadline_s
        if window and (why := window_blocker(settings, window, est + rollback)):
            blocked.append(Blocker(str(vm.ref), why, "window"))
            continue
        steps.append(VmStep(
            step_id=step_id, vm=vm.ref, group=group.name, ring=group.ring, policy=policy,
            est_duration_s=est, est_rollback_s=rollback, channel=access.channel, window=window,
            owners=owners_of(vm.tags, vm.labels, settings.notifications.owner_label),
        ))  # fmt: skip
    return steps


def _vm_policy(
    vm: VmInfo, group: GroupSettings, caps: frozenset[Capability], warnings: list[Blocker]
) -> VmPolicy:
    p = group.policy
    memory, quiesce = p.snapshot_memory, p.snapshot_quiesce
    if memory and (lacks := _lacks(vm, caps, Capability.SNAPSHOT_MEMORY, "snapshot memory")):
        memory = False
        warnings.append(
            Blocker(
                str(vm.ref),
                f"downgraded: {vm.ref} gets a disk-only snapshot ({lacks}); set snapshot_memory = false "
                f"for group {group.name!r} to silence this",
                "capability",
            )
        )
    if quiesce and (lacks := _lacks(vm, caps, Capability.SNAPSHOT_QUIESCE, "quiesce")):
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
        patch_timeout_s=p.patch_timeout_s, reboot_timeout_s=p.reboot_timeout_s,
        restart_services=p.restart_services,
    )  # fmt: skip


def _lacks(vm: VmInfo, caps: frozenset[Capability], capability: Capability, verb: str) -> str:
    """Why ``vm`` cannot use ``capability`` ("" = it can): the provider lacks it, or this guest does."""
    if capability not in caps:
        return f"the provider of site {vm.ref.site!r} cannot {verb}"
    if capability in vm.unsupported:
        return f"its platform cannot {verb} for this guest"
    return ""


def _waves(
    steps: Sequence[VmStep], settings: Settings, risks: Mapping[str, VmRisk], exposed: set[str]
) -> tuple[Wave, ...]:
    waves: list[Wave] = []
    for ring in settings.rings:
        members = by_risk((s for s in steps if s.ring == ring.name), risks, exposed)
        ring_waves: list[Wave] = []
        for window in sorted({s.window for s in members}):
            batch = [s for s in members if s.window == window]
            size = ring.wave_size or len(batch)
            for start in range(0, len(batch), size):
                chunk = tuple(batch[start : start + size])
                concurrency = min(settings.group(s.group).policy.concurrency for s in chunk)
                ahead = min(settings.group(s.group).policy.prepare_ahead for s in chunk)
                index = len(ring_waves)
                ring_waves.append(
                    Wave(
                        wave_id=f"{ring.name}:{index}",
                        ring=ring.name,
                        index=index,
                        vms=chunk,
                        concurrency=concurrency,
                        window=window,
                        prepare_ahead=ahead,
                    )
                )
        if ring_waves:
            ring_waves[-1] = replace(ring_waves[-1], soak_s=ring.soak_s, approval=ring.approval)
        waves.extend(ring_waves)
    return tuple(waves)
