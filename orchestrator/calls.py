"""How the workflows call activities: by name, with the options from :mod:`orchestrator.retry`.

Workflow-side only (deterministic). Activities are referenced by name so the workflow sandbox
never imports the I/O modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from orchestrator.retry import options

T = TypeVar("T")


async def call(
    name: str,
    arg: Any,
    *,
    result_type: type[T] | None = None,
    queue: str,
    timeout_s: float | None = None,
) -> T:
    """Execute activity ``name`` on ``queue`` with its named retry policy and timeouts."""
    opts = options(name, timeout_s=timeout_s)
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,  # type: ignore[arg-type]
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


def describe(err: BaseException) -> str:
    """A one-line reason from an activity/child failure: the innermost application message."""
    current: BaseException | None = err
    message = str(err)
    while current is not None:
        if isinstance(current, ApplicationError):
            kind = f"{current.type}: " if current.type else ""
            return f"{kind}{current.message}"
        if isinstance(current, FailureError) and current.message:
            message = current.message
        if not isinstance(current, (ActivityError, ChildWorkflowError, FailureError)):
            return str(current) or message
        current = current.cause
    return message
