"""Which VMs and hosts a plan is about: ``[targets]``, or an explicit selection from the CLI (pure)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.config.settings import Settings
from orchestrator.errors import SelectionError
from orchestrator.model import Blocker
from providers.base import HostInfo, Inventory, VmInfo


@dataclass(frozen=True)
class Selection:
    vms: tuple[VmInfo, ...]  # targeted VMs (blocked ones included), sorted
    hosts: tuple[HostInfo, ...]  # explicitly selected hosts
    blocked: tuple[Blocker, ...]  # explicitly selected but excluded
    explicit: bool


def all_of(inventories: Iterable[Inventory]) -> tuple[list[VmInfo], list[HostInfo]]:
    vms = sorted(
        (vm for inv in inventories for vm in inv.vms), key=lambda v: (v.ref.site, v.ref.name, v.ref.id)
    )
    hosts = sorted(
        (h for inv in inventories for h in inv.hosts), key=lambda h: (h.ref.site, h.ref.name, h.ref.id)
    )
    return vms, hosts


def _named(pattern: str, site: str, name: str) -> bool:
    qualified = f"{site}/{name}"
    return (
        pattern in (name, qualified)
        or fnmatch.fnmatchcase(name, pattern)
        or fnmatch.fnmatchcase(qualified, pattern)
    )


def select_targets(
    inventories: Sequence[Inventory], settings: Settings, selection: Sequence[str]
) -> Selection:
    vms, hosts = all_of(inventories)
    exclude = settings.targets.exclude
    if not selection:
        include = settings.targets.include
        targeted = tuple(
            vm for vm in vms
            if include.matches(vm.ref.name, vm.tags, vm.ref.site) and not exclude.matches(vm.ref.name, vm.tags, vm.ref.site)
        )  # fmt: skip
        return Selection(vms=targeted, hosts=(), blocked=(), explicit=False)
    picked_vms: dict[tuple[str, str], VmInfo] = {}
    picked_hosts: dict[tuple[str, str], HostInfo] = {}
    for pattern in sorted(set(selection)):
        found_vms = [vm for vm in vms if _named(pattern, vm.ref.site, vm.ref.name)]
        found_hosts = [h for h in hosts if _named(pattern, h.ref.site, h.ref.name)]
        if not found_vms and not found_hosts:
            raise SelectionError(pattern, _close_matches(pattern, vms, hosts))
        picked_vms.update(((vm.ref.site, vm.ref.id), vm) for vm in found_vms)
        picked_hosts.update(((h.ref.site, h.ref.id), h) for h in found_hosts)
    excluded = {key for key, vm in picked_vms.items() if exclude.matches(vm.ref.name, vm.tags, vm.ref.site)}
    blocked = [
        Blocker(target=str(vm.ref), code="excluded",
                reason=f"{vm.ref} is excluded by [targets] exclude_names/exclude_tags/exclude_regex; "
                       "remove it from the excludes (or its excluding tag) to patch it")
        for key, vm in sorted(picked_vms.items()) if key in excluded
    ]  # fmt: skip
    kept = tuple(vm for vm in vms if (vm.ref.site, vm.ref.id) in picked_vms.keys() - excluded)
    chosen_hosts = tuple(h for h in hosts if (h.ref.site, h.ref.id) in picked_hosts)
    return Selection(vms=kept, hosts=chosen_hosts, blocked=tuple(blocked), explicit=True)


def _close_matches(name: str, vms: Sequence[VmInfo], hosts: Sequence[HostInfo]) -> list[str]:
    known = sorted({vm.ref.name for vm in vms} | {h.ref.name for h in hosts}
                   | {str(vm.ref) for vm in vms} | {str(h.ref) for h in hosts})  # fmt: skip
    return difflib.get_close_matches(name, known, n=3, cutoff=0.5)
