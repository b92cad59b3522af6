"""Admission: a workflow or an operation starts only once it holds the leases of its targets.

* :func:`admit` — ``run`` / ``resume`` / ``rollback``: start the workflow and wait until it holds
  its leases (the workflow takes them in its first activity); only then does this process let the
  next one of its state directory start or attach (:meth:`Engine.admitted`), so the process that
  owns the embedded server is never the one refused while another depends on its server. A
  refusal is the workflow's :class:`~orchestrator.errors.LeaseHeld`; with ``wait_s`` the holder is
  waited for (bounded, with progress) and the workflow started again.
* :func:`take_leases` — an operation in this process (``snapshots cleanup``): the same, without a
  workflow.
* :func:`await_finished` — ``snapshots cleanup --run RUN``: a run's snapshots wait for its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle

from orchestrator.engine.ownership import Notice
from orchestrator.engine.runs import admitted, refusal
from orchestrator.engine.session import Session
from orchestrator.errors import LeaseHeld, SnapshotsInUse
from orchestrator.facts.leases import LeaseTarget
from orchestrator.facts.runs import FINISHED_STATUSES
from orchestrator.facts.store import FactStore

#: The workflow :func:`admit` starts (PatchRun or RollbackRun), handed back as ``start`` gave it.
Handle = TypeVar("Handle", bound=WorkflowHandle[Any, Any])


async def admit(
    session: Session,
    start: Callable[[], Awaitable[Handle]],
    *,
    resumed: bool = False,
    wait_s: float,
    notice: Notice | None,
) -> Handle:
    """Start a workflow and wait until it holds its leases; only then may another process of this
    state directory start or attach (:meth:`Engine.admitted`). A refused workflow raises its
    :class:`LeaseHeld` (the lock stays held until this process stopped its server), or with
    ``wait_s`` waits for the holder and starts again."""
    facts = session.facts
    assert facts is not None
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        handle = await start()
        await admitted(handle, facts, resumed=resumed)
        held = await refusal(handle)
        if held is None:
            session.engine.admitted()
            return handle
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise held
        session.engine.admitted()  # others may work meanwhile (the holder may need to resume)
        await asyncio.to_thread(facts.wait_released, held, timeout_s=left, on_wait=notice)


def await_finished(facts: FactStore, run_id: str, *, wait_s: float, notice: Notice | None) -> None:
    """Return once ``run_id`` is finished (or unknown); :class:`SnapshotsInUse` after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while (run := facts.get_run(run_id)) is not None and run.status not in FINISHED_STATUSES:
        if time.monotonic() >= deadline:
            live = [s for s in facts.snapshots(run_id=run_id) if s.state in ("created", "kept", "reverted")]
            raise SnapshotsInUse(run_id, run.status, len(live))
        if notice is not None:
            notice(f"waiting for run {run_id} ({run.status}) to finish")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def take_leases(
    facts: FactStore,
    owner: str,
    targets: list[LeaseTarget],
    *,
    operation: str,
    wait_s: float,
    notice: Notice | None,
) -> None:
    """Take the leases of ``targets`` for ``owner``; a holder refuses (or, ``wait_s``, is waited for)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            facts.acquire_leases(owner, targets, operation=operation)
            return
        except LeaseHeld as held:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            facts.wait_released(held, timeout_s=left, on_wait=notice)
