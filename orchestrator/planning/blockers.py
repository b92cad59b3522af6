"""Why a target cannot be planned (pure): each reason is a ``(code, sentence naming the fix)``.

Used by :mod:`orchestrator.planning.planner` (VMs) and :mod:`orchestrator.planning.hosts` (hosts);
what cannot be done safely becomes a :class:`~orchestrator.model.Blocker`, never a half-protected step.
"""

from __future__ import annotations

from orchestrator.config.settings import GroupSettings, Settings
from orchestrator.model import RebootPolicy
from orchestrator.windows import fits, usable
from providers.base import Capability, HostInfo, HostState, PowerState, VmInfo

C = Capability


def unknown_caps(site: str) -> tuple[str, str]:
    return (
        "capability",
        (
            f"the capabilities of site {site!r} are unknown; connect its provider "
            "(make_plan(capabilities={site: provider.capabilities}))"
        ),
    )


def host_blockers(
    host: HostInfo, settings: Settings, caps: frozenset[Capability] | None
) -> list[tuple[str, str]]:
    cfg = settings.hosts
    if host.state in (HostState.DISCONNECTED, HostState.UNKNOWN):
        return [
            ("host_state", f"{host.ref} is {host.state.value}; reconnect it (or exclude it) and plan again")
        ]
    if caps is None:
        return [unknown_caps(host.ref.site)]
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


def vm_blockers(
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
        return [*reasons, unknown_caps(ref.site)]
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


def unchecked(vm: VmInfo, settings: Settings, group: GroupSettings) -> tuple[str, str] | None:
    """A VM that no ``[[health]]`` check applies to: ``("block" | "warn", sentence)``; None = it has one.

    Blocked (code ``no_health_check``) while ``[policy] require_health`` is on and its group does not
    say ``health = "none"``; otherwise planned with a warning of the same code: it is patched without
    a health check and counted healthy when its patch (and reboot) succeeded.
    """
    ref = vm.ref
    if any(c.applies_to(ref.name, vm.tags, ref.site) for c in settings.health):
        return None
    unchecked_note = (
        f"unchecked: no [[health]] check applies to {ref}; it is patched and counted healthy without a check"
    )
    if group.policy.health == "none":
        return "warn", f'{unchecked_note} (group {group.name!r} says health = "none")'
    if not group.policy.require_health:
        return "warn", f"{unchecked_note} ([policy] require_health = false)"
    fix = (
        "add a [[health]] check whose match selects it, or accept patching it unchecked with "
        f'health = "none" in the [groups.policy] of group {group.name!r} ([policy] require_health = true)'
    )
    return (
        "block",
        f"no [[health]] check applies to {ref}, so nothing would tell a broken patch from a good one; {fix}",
    )


def window_blocker(settings: Settings, window: str, worst_case_s: int) -> str:
    """Why a VM whose estimate plus worst-case rollback is ``worst_case_s`` cannot run in ``window``
    ("" = it fits: :func:`orchestrator.windows.fits`, the admission rule at an occurrence's start)."""
    spec = settings.window(window)
    if fits(spec, worst_case_s):
        return ""
    room = int(usable(spec).total_seconds())
    return (
        f"its estimate plus worst-case rollback ({worst_case_s}s) is longer than window {window!r} accepts "
        f"work ({room}s); widen the window or move the VM to a group without this window"
    )
