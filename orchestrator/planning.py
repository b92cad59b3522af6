"""Discovery and planning over a :class:`~orchestrator.context.Context` (shared by the ``plan``
command and the ``plan_run`` activity, so both plan with the same inputs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from orchestrator.context import Context
from orchestrator.model import Plan
from orchestrator.plan import make_plan
from providers.base import Capability, Inventory


def discover(ctx: Context, sites: Sequence[str] | None = None) -> tuple[Inventory, ...]:
    """Every site's inventory (sites in configuration order)."""
    chosen = ctx.settings.sites if sites is None else sites
    return tuple(ctx.require(site, Capability.INVENTORY).inventory() for site in chosen)


def plan_from(
    ctx: Context,
    inventories: Sequence[Inventory],
    now: datetime,
    *,
    selection: Sequence[str] = (),
    hosts: bool = True,
    guests: bool = True,
    groups: Sequence[str] = (),
    sites: Sequence[str] = (),
) -> Plan:
    """``make_plan`` with the fact store's duration history and the providers' capabilities."""
    step_ids = [f"vm:{inv.site}:{vm.ref.id}" for inv in inventories for vm in inv.vms]
    step_ids += [f"host:{inv.site}:{host.ref.id}" for inv in inventories for host in inv.hosts]
    capabilities = {inv.site: ctx.provider(inv.site).capabilities for inv in inventories}
    return make_plan(
        inventories,
        ctx.settings,
        now,
        history=ctx.facts.history(step_ids),
        capabilities=capabilities,
        selection=selection,
        hosts=hosts,
        guests=guests,
        groups=groups,
        sites=sites,
    )
