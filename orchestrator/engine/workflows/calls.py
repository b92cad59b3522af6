"""How the workflows call activities: by name, with the options from :mod:`orchestrator.engine.retry`.

Workflow-side only (deterministic). Activities are referenced by name (an
:class:`~orchestrator.engine.names.ActivityName`) so the workflow sandbox never imports the I/O modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import UnionType
from typing import Any, TypeVar, overload

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.retry import options

T = TypeVar("T")


@overload
async def call(
    name: ActivityName, arg: Any, *, result_type: type[T], queue: str, timeout_s: float | None = None
) -> T: ...


@overload
async def call(
    name: ActivityName, arg: Any, *, result_type: UnionType, queue: str, timeout_s: float | None = None
) -> Any: ...  # e.g. ``VmOutcome | None``: the caller annotates what it gets


@overload
async def call(
    name: ActivityName, arg: Any, *, result_type: None = None, queue: str, timeout_s: float | None = None
) -> object: ...  # no result type: the result is not converted (the caller ignores it)


async def call(
    name: ActivityName,
    arg: Any,
    *,
    result_type: Any = None,
    queue: str,
    timeout_s: float | None = None,
) -> Any:
    """Execute activity ``name`` on ``queue`` with its named retry policy and timeouts."""
    opts = options(name, timeout_s=timeout_s)
    return await workflow.execute_activity(
        name.value,
        arg,
        result_type=result_type,
        task_queue=queue,
        start_to_close_timeout=opts.start_to_close,
        heartbeat_timeout=opts.heartbeat,
        retry_policy=opts.retry_policy,
    )


async def shielded(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion even if the workflow is cancelled meanwhile.

    Used for the calls that must happen whatever else does (exit maintenance, revert after a
    failed patch). A cancellation that arrives meanwhile is re-raised once the call finished.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                result = task.result()
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()
    return result
