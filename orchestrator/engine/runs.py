"""Run operations over a Temporal client: start, watch, resume, approve, roll back, inspect.

The CLI renders what these return; nothing here prints. A run's workflow id is its run id.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.engine.failures import cause_of
from orchestrator.engine.payloads import (
    CENTRAL_QUEUE,
    ApprovalRequest,
    ApprovalResult,
    BatchProgress,
    RollbackRequest,
    RunProgress,
    VmProgress,
    VmStage,
)
from orchestrator.engine.retry import WORKFLOW_TASK_TIMEOUT
from orchestrator.engine.workflows.batches import child_id
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.engine.workflows.rollback import RollbackRun
from orchestrator.errors import (
    BAD_INPUT_TYPES,
    ApprovalRefused,
    LeaseHeld,
    OrchestratorError,
    RunFailed,
    RunNotFound,
)
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, VmOutcome

POLL_INTERVAL_S = 1.0
#: A run's workflow: PatchRun, whose result is the run's summary.
RunHandle: TypeAlias = WorkflowHandle[PatchRun, RunSummary]
#: A rollback's workflow: RollbackRun, whose result is the outcome of each VM it reverted.
RollbackHandle: TypeAlias = WorkflowHandle[RollbackRun, tuple[VmOutcome, ...]]


def run_failed(run_id: str, err: WorkflowFailureError) -> OrchestratorError:
    """The error of a failed PatchRun (or RollbackRun): :class:`LeaseHeld` when another run or
    operation held its targets; else a :class:`RunFailed` whose message and exit code come from the
    cause the failing activity raised (:func:`~orchestrator.engine.failures.cause_of`)."""
    held = lease_refusal(err)
    if held is not None:
        return held
    cause = cause_of(err)
    return RunFailed(
        run_id, cause.reason or cause.message, bad_input=cause.type in BAD_INPUT_TYPES, fix=cause.fix
    )


def lease_refusal(err: BaseException) -> LeaseHeld | None:
    """The :class:`LeaseHeld` an activity raised somewhere below ``err``, rebuilt from its details."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ApplicationError) and current.type == "LeaseHeld" and current.details:
            details = current.details[0]
            if isinstance(details, dict):
                return LeaseHeld.from_details(details)
        current = current.cause if isinstance(current, FailureError) else current.__cause__
    return None


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"run-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


async def start_run(
    client: Client,
    request: RunRequest,
    *,
    reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
) -> RunHandle:
    """Start PatchRun for ``request`` (workflow id = run id). A new run id is always new; only
    :func:`resume_run` starts another execution of an existing one."""
    return await client.start_workflow(
        PatchRun.run,
        request,
        id=request.run_id,
        task_queue=CENTRAL_QUEUE,
        id_reuse_policy=reuse,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
    )


async def progress(handle: RunHandle) -> RunProgress | None:
    """The run's live progress, or None when the workflow cannot answer (no worker, closed).

    ``PatchRun`` answers with its counters and the ids of its running batches; each batch is asked
    for its VMs in flight and its counters, and :meth:`RunProgress.merged` adds them in. A batch that
    finished meanwhile is already in the run's counters (or will be at the next poll). Two batches of a
    wave run at once only while the older one hands its slots to the newer one (``batch-handover``):
    the newer is asked first, so a slot that changes hands between the two answers is not listed twice
    (the in-flight list stays within the concurrency)."""
    try:
        current = await handle.query(PatchRun.progress)
    except (RPCError, Exception):  # noqa: BLE001 - no worker yet, or the run is gone: nothing to show
        return None
    client: Client = handle._client  # the handle's own client (the SDK has no public accessor)
    found = [await _batch_progress(client, batch_id) for batch_id in reversed(current.batches)][::-1]
    merged = current.merged([b for b in found if b is not None])
    # the VMs in flight (bounded by the waves' concurrency): each one's stage, from its batch (or VmPatch child)
    stages = await asyncio.gather(*(_vm_stage(client, merged.run_id, vm) for vm in merged.vms))
    return replace(merged, vms=tuple(stages))


async def _vm_stage(client: Client, run_id: str, vm: VmProgress) -> VmProgress:
    if not vm.step_id or vm.stage:  # patched inline: its batch told the stage
        return vm
    try:
        found: VmStage = await client.get_workflow_handle(child_id(run_id, vm.step_id)).query(
            "stage", result_type=VmStage, rpc_timeout=timedelta(seconds=5)
        )
    except (RPCError, Exception):  # noqa: BLE001 - finished meanwhile, or not started yet: no stage to show
        return vm
    return replace(vm, stage=found.stage, since=found.since)


async def _batch_progress(client: Client, batch_id: str) -> BatchProgress | None:
    try:
        found: BatchProgress = await client.get_workflow_handle(batch_id).query(
            "progress", result_type=BatchProgress
        )
        return found
    except (RPCError, Exception):  # noqa: BLE001 - finished meanwhile: counted by the run next time
        return None


async def watch(
    handle: RunHandle, on_progress: Callable[[RunProgress], None], *, interval_s: float = POLL_INTERVAL_S
) -> RunSummary:
    """Wait for the run's summary, calling ``on_progress`` with the ``progress`` query meanwhile."""
    result = asyncio.ensure_future(handle.result())
    try:
        while not result.done():
            current = await progress(handle)
            if current is not None:
                on_progress(current)
            await asyncio.wait([result], timeout=interval_s)
        summary = result.result()
    except WorkflowFailureError as err:
        raise run_failed(handle.id, err) from None
    finally:
        result.cancel()
    final = await progress(handle)
    if final is not None:
        on_progress(final)
    return summary


async def resume_run(client: Client, run_id: str, facts: FactStore, *, digest: str = "") -> RunHandle:
    """Continue ``run_id``: wait for a running execution, or start a new one after one that failed,
    was terminated/cancelled/timed out, or halted on its failure budget.

    A new execution reuses the plan recorded in the fact store and the VMs' recorded outcomes, so
    finished VMs are neither snapshotted nor patched again; VMs that FAILED before stay FAILED and
    no longer count against the budget (resuming acknowledges them). A run that failed before it
    was planned has no plan to protect: it is retried with the current configuration (``digest``),
    e.g. after its provider's URI was corrected.
    """
    handle = client.get_workflow_handle_for(PatchRun.run, run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        return await _restart_from_facts(client, run_id, facts)
    if described.status is WorkflowExecutionStatus.RUNNING:
        return handle
    if described.status is WorkflowExecutionStatus.COMPLETED and (await handle.result()).status != "halted":
        return handle  # finished: nothing left to do, its summary is the answer
    request = await _original_request(client, handle) or _request_from_facts(run_id, facts)
    if digest and request.config_digest and facts.get_run(run_id) is None:
        request = replace(request, config_digest=digest)  # never planned: plan with today's config
    return await start_run(client, request, reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE)


async def _restart_from_facts(client: Client, run_id: str, facts: FactStore) -> RunHandle:
    """The engine lost the run (a fresh temporal.db): start it again from the fact store."""
    return await start_run(
        client, _request_from_facts(run_id, facts), reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE
    )


def _request_from_facts(run_id: str, facts: FactStore) -> RunRequest:
    record = facts.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return RunRequest(run_id=run_id, config_digest=record.config_digest, requested_by=record.requested_by)


async def _original_request(client: Client, handle: RunHandle) -> RunRequest | None:
    """The RunRequest the first execution was started with (from its history)."""
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if attrs.input.payloads:  # a continued execution has the same request (its RunCarry is a memo)
            values = await client.data_converter.decode(attrs.input.payloads[:1], [RunRequest])
            request: RunRequest = values[0]
            return request
        return None
    return None


async def approve(client: Client, run_id: str, request: ApprovalRequest) -> ApprovalResult:
    """Ask the running ``run_id`` to promote past a ring (the ``approve`` update: the answer says
    whether it was accepted). :class:`ApprovalRefused` when no gate of that ring is open (the
    update's validator refused it: nothing was recorded in the run's history) or the ring no longer
    passes its gate (the run halts)."""
    handle = client.get_workflow_handle_for(PatchRun.run, run_id)
    try:
        result: ApprovalResult = await handle.execute_update("approve", request, result_type=ApprovalResult)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise ApprovalRefused(
            run_id, cause.message if isinstance(cause, FailureError) else str(err)
        ) from None
    if not result.accepted:
        raise ApprovalRefused(
            run_id, result.reason, fix=f"`patchwave status {run_id}` shows the ring's VMs; fix them, then follow "
            "the halt reason's advice",
        )  # fmt: skip
    return result


async def start_rollback(client: Client, run_id: str, vm_names: tuple[str, ...] = ()) -> RollbackHandle:
    """Start RollbackRun (workflow id ``<run>-rollback-<time>``: the owner of the leases it takes)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return await client.start_workflow(
        RollbackRun.run,
        RollbackRequest(run_id=run_id, vm_names=vm_names),
        id=f"{run_id}-rollback-{stamp}-{secrets.token_hex(2)}",
        task_queue=CENTRAL_QUEUE,
    )


async def rollback_result(
    handle: RollbackHandle,
    on_progress: Callable[[RunProgress], None] | None = None,
    *,
    interval_s: float = POLL_INTERVAL_S,
) -> tuple[VmOutcome, ...]:
    """The rollback's outcomes; :class:`LeaseHeld` when the run (or another operation) still
    works on one of its VMs. ``on_progress`` gets its ``progress`` query meanwhile (the live view)."""
    result = asyncio.ensure_future(handle.result())
    try:
        while on_progress is not None and not result.done():
            current = await _rollback_progress(handle)
            if current is not None:
                on_progress(current)
            await asyncio.wait([result], timeout=interval_s)
        outcomes = tuple(await result)
    except WorkflowFailureError as err:
        raise run_failed(handle.id, err) from None
    finally:
        result.cancel()
    if on_progress is not None and (final := await _rollback_progress(handle)) is not None:
        on_progress(final)
    return outcomes


async def _rollback_progress(handle: RollbackHandle) -> RunProgress | None:
    try:
        found: RunProgress = await handle.query("progress", result_type=RunProgress)
        return found
    except (RPCError, Exception):  # noqa: BLE001 - not started yet, or closed: nothing to show
        return None


async def rollback(client: Client, run_id: str, vm_names: tuple[str, ...] = ()) -> tuple[VmOutcome, ...]:
    return await rollback_result(await start_rollback(client, run_id, vm_names))


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    workflow: str  # "running", "completed", "failed", ... or "unknown" (engine not reachable)
    progress: RunProgress | None
    failure: OrchestratorError | None = (
        None  # why a run the fact store never recorded failed (or was refused)
    )


async def describe(client: Client | None, run_id: str) -> RunStatus:
    if client is None:
        return RunStatus(run_id, "unknown", None)
    handle = client.get_workflow_handle_for(PatchRun.run, run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return RunStatus(run_id, "not found", None)
        raise
    state = described.status.name.lower() if described.status else "unknown"
    return RunStatus(run_id, state, await progress(handle))


async def unplanned_status(client: Client, run_id: str) -> RunStatus:
    """What the engine says of a run the fact store never recorded (it has not been planned, or it
    failed before): its state and, when it failed, why. :class:`RunNotFound` if it does not know it."""
    handle = client.get_workflow_handle_for(PatchRun.run, run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise RunNotFound(run_id) from None
        raise
    state = described.status.name.lower() if described.status else "unknown"
    if state == "running":  # a closed run answers no query without a worker: asked only when running
        return RunStatus(run_id, state, await progress(handle))
    try:
        await handle.result()
    except WorkflowFailureError as err:
        failed = run_failed(run_id, err)
        return RunStatus(
            run_id, state, None, failed.before_planning() if isinstance(failed, RunFailed) else failed
        )
    return RunStatus(run_id, state, None)


async def running_workflows(client: Client | None) -> frozenset[str]:
    """Ids of the PatchRun and RollbackRun workflows Temporal reports running (the owners of
    leases); no engine = none."""
    if client is None:
        return frozenset()
    query = "ExecutionStatus = 'Running' AND (WorkflowType = 'PatchRun' OR WorkflowType = 'RollbackRun')"
    return frozenset([execution.id async for execution in client.list_workflows(query)])


async def admitted(
    handle: WorkflowHandle[Any, Any], facts: FactStore, *, resumed: bool = False, poll_s: float = 0.2
) -> None:
    """Wait until the workflow of ``handle`` holds its leases (or ended): from then on another
    process cannot take its targets. A new run or rollback: its leases (or, a run with nothing to
    lease, its record) are in the fact store; a resumed run: it is past its setup (which takes its
    leases again — the old ones may still be there)."""
    result = asyncio.ensure_future(handle.result())
    try:
        while not result.done():
            if resumed:
                current = await progress(handle)
                if current is not None and current.phase != "setup":
                    return
            elif facts.leases(owner=handle.id) or facts.get_run(handle.id) is not None:
                return
            await asyncio.wait([result], timeout=poll_s)
    finally:
        result.cancel()


async def refusal(handle: WorkflowHandle[Any, Any]) -> LeaseHeld | None:
    """The :class:`LeaseHeld` that ended the workflow of ``handle`` (None: it was not refused)."""
    described = await handle.describe()
    if described.status is not WorkflowExecutionStatus.FAILED:
        return None
    try:
        await handle.result()
    except WorkflowFailureError as err:
        return lease_refusal(err)
    return None


async def running_runs(client: Client | None) -> frozenset[str]:
    """Run ids whose PatchRun (or RollbackRun) workflow Temporal reports running; no engine = none."""
    if client is None:
        return frozenset()
    found: set[str] = set()
    query = "ExecutionStatus = 'Running' AND (WorkflowType = 'PatchRun' OR WorkflowType = 'RollbackRun')"
    async for execution in client.list_workflows(query):
        run_id = execution.id
        if execution.workflow_type == "RollbackRun" and "-rollback-" in run_id:
            run_id = run_id.rsplit("-rollback-", 1)[0]
        found.add(run_id)
    return frozenset(found)
