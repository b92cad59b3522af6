"""The lease keeper: renews the leases a workflow's owner holds while the workflow runs.

Workflow-side (deterministic). :class:`LeaseKeeper` runs one small loop beside the workflow's
work: ``renew_leases(owner)`` (one indexed UPDATE in the fact store, whatever the number of
targets), then a durable timer for the interval the activity answers (a third of the lease TTL).
Its history cost is a few events per renewal — a few per hour, never per VM. When no worker
serves the workflow (its process died), nothing renews: the leases expire, which ``patchwave
doctor`` reports; they still belong to the owner until it ends or the doctor releases them.

Versioned (``workflow.patched``): executions started before leases existed replay unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.failures import describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import CENTRAL_QUEUE, LeaseRenewal
    from orchestrator.engine.workflows.calls import call

PATCH = "lease-keeper"
#: After a failed renewal, the next attempt (the activity retries by itself first).
RETRY_AFTER = timedelta(seconds=60)


class LeaseKeeper:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, owner: str) -> None:
        """Renew ``owner``'s leases until :meth:`stop` (once; executions before leases: never)."""
        if self._task is None and workflow.patched(PATCH):
            self._task = asyncio.create_task(self._renew(owner))

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _renew(self, owner: str) -> None:
        while True:
            try:
                renewal = await call(
                    ActivityName.RENEW_LEASES, owner, result_type=LeaseRenewal, queue=CENTRAL_QUEUE
                )
                wait = timedelta(seconds=max(1.0, renewal.next_s))
            except ActivityError as err:
                workflow.logger.warning("renewing the leases of %s failed: %s", owner, describe(err))
                wait = RETRY_AFTER
            await workflow.sleep(wait)
