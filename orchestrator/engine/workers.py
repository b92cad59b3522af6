"""The workers of this process: the central one (every workflow, the run-level activities) and one
activity worker per site (``patchwave-site-<site>``).

Which of them a process runs is its :class:`Roles`: everything (embedded mode, a plain
``patchwave serve``), the central queue only (``serve --central``), or some sites' queues only
(``serve --site A --site B``, optionally ``--central`` too) — a cluster runs one central worker
and a worker per site, each near its hypervisors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.engine.activities import Activities
from orchestrator.engine.payloads import CENTRAL_QUEUE, site_queue
from orchestrator.engine.retry import RECOVERY_S
from orchestrator.engine.workflows.assess_fleet import AssessFleet
from orchestrator.engine.workflows.batches import HealthBatch, WaveBatch
from orchestrator.engine.workflows.hosts import HostBatch
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.engine.workflows.rollback import RollbackRun
from orchestrator.engine.workflows.verify_backups import VerifyBackups
from orchestrator.engine.workflows.vms import VmPatch, VmRollback

WORKFLOWS = [
    PatchRun,
    WaveBatch,
    HealthBatch,
    HostBatch,
    VmPatch,
    RollbackRun,
    VmRollback,
    AssessFleet,
    VerifyBackups,
]


#: Activities in flight per worker at least; :func:`activity_slots` raises it to what the configured
#: concurrency can put in flight at once. The shared thread pool is sized for all workers.
MIN_ACTIVITY_SLOTS = 16
#: Slots on top of the VMs in flight: host steps, health batches, assessments, notifications.
SLOT_HEADROOM = 8
#: No more threads than this per worker, whatever the configuration says.
MAX_ACTIVITY_SLOTS = 512


def activity_slots(settings: Settings) -> int:
    """Activity slots per worker, sized from the configuration's concurrency: every group's VMs may be
    in flight at once (one activity each, ``[groups.policy] concurrency``), plus headroom — a wave of
    concurrency 20 never waits for a slot (16 fixed slots capped it: up to 8 s per VM at 500 VMs)."""
    in_flight = sum(g.policy.concurrency + g.policy.prepare_ahead for g in settings.groups) or (
        settings.policy.concurrency + settings.policy.prepare_ahead
    )
    return max(MIN_ACTIVITY_SLOTS, min(MAX_ACTIVITY_SLOTS, in_flight + SLOT_HEADROOM))


@dataclass(frozen=True)
class Roles:
    """The task queues a process polls: the central one (``patchwave``: every workflow, planning,
    fact writes, notifications, schedules) and/or some sites' (``patchwave-site-<site>``).
    ``sites=None`` means every configured site."""

    central: bool = True
    sites: tuple[str, ...] | None = None

    @classmethod
    def chosen(cls, sites: Sequence[str], central: bool | None, configured: Sequence[str]) -> Roles:
        """The roles of ``serve --site ... [--central/--no-central]``: no flag serves everything;
        ``--site`` alone serves only those sites; ``--central`` alone only the central queue.
        ValueError (the message says what to do) for an unknown site or nothing to serve."""
        unknown = sorted(set(sites) - set(configured))
        if unknown:
            raise ValueError(
                f"no such site: {', '.join(unknown)} (configured: {', '.join(configured) or 'none'})"
            )
        if sites:
            return cls(central=bool(central), sites=tuple(dict.fromkeys(sites)))
        if central is None:
            return cls()
        if not central:
            raise ValueError(
                "--no-central without --site leaves nothing to serve: name sites with --site NAME"
            )
        return cls(central=True, sites=())

    def site_names(self, configured: Sequence[str]) -> tuple[str, ...]:
        return tuple(configured) if self.sites is None else self.sites

    def describe(self, configured: Sequence[str]) -> str:
        queues = ([CENTRAL_QUEUE] if self.central else []) + [
            site_queue(s) for s in self.site_names(configured)
        ]
        return ", ".join(queues)


EVERYTHING = Roles()


def build_workers(
    client: Client,
    ctx: Context,
    *,
    sites: Sequence[str],
    executor: ThreadPoolExecutor,
    central: bool = True,
) -> list[Worker]:
    """The workflow worker (``patchwave``, when ``central``) and one activity worker per site."""
    acts = Activities(ctx)
    common: dict[str, Any] = {
        "activity_executor": executor,
        "max_concurrent_activities": activity_slots(ctx.settings),
    }
    if RECOVERY_S:  # crash-injection tests: a dead worker's sticky queue is given up quickly
        common["sticky_queue_schedule_to_start_timeout"] = timedelta(seconds=RECOVERY_S)
    built = []
    if central:
        built.append(
            Worker(client, task_queue=CENTRAL_QUEUE, workflows=WORKFLOWS, activities=acts.central(), **common)
        )
    site_activities = acts.site()
    built += [
        Worker(client, task_queue=site_queue(site), activities=site_activities, **common) for site in sites
    ]
    return built


@asynccontextmanager
async def workers(
    client: Client, ctx: Context, *, sites: Sequence[str] | None = None, roles: Roles = EVERYTHING
) -> AsyncIterator[list[Worker]]:
    """Run the workers of ``roles`` (``sites``, when given, overrides its sites) in this process for
    the duration of the block; shut them down after."""
    sites = list(roles.site_names(ctx.settings.sites) if sites is None else sites)
    executor = ThreadPoolExecutor(
        max_workers=activity_slots(ctx.settings) * (int(roles.central) + len(sites)),
        thread_name_prefix="patchwave-activity",
    )
    try:
        async with AsyncExitStack() as stack:
            built = build_workers(client, ctx, sites=sites, executor=executor, central=roles.central)
            for worker in built:
                await stack.enter_async_context(worker)
            yield built
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
