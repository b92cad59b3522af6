"""Run operations over a Temporal client: start, watch, resume, approve, roll back, inspect.

The CLI renders what these return; nothing here prints. A run's workflow id is its run id.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.errors import OrchestratorError
from orchestrator.facts import FactStore
from orchestrator.messages import CENTRAL_QUEUE, RollbackRequest, RunProgress
from orchestrator.model import RunRequest, RunSummary, StepStatus, VmOutcome
from orchestrator.retry import WORKFLOW_TASK_TIMEOUT
from orchestrator.workflows import PatchRun, RollbackRun

#: Exit codes of `run` / `resume`.
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_HALTED = 0, 1, 2, 3
POLL_INTERVAL_S = 1.0


class RunNotFound(OrchestratorError):
    exit_code = 2
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} is known",
            step="run",
            fix="`patchwave status` lists the runs of this state directory",
        )


class RunFailed(OrchestratorError):
    """The PatchRun workflow itself failed (discovery, planning, a bug) — not a VM outcome."""

    @classmethod
    def from_failure(cls, run_id: str, err: WorkflowFailureError) -> RunFailed:
        """The innermost application error decides the message and whether it was bad input."""
        from orchestrator.cli_errors import BAD_INPUT_TYPES

        cause: BaseException | None = err.cause
        message, kind = str(err), ""
        while cause is not None:
            if isinstance(cause, ApplicationError):
                message, kind = cause.message, cause.type or kind
            elif isinstance(cause, FailureError) and cause.message:
                message = cause.message
            cause = cause.__cause__ if not isinstance(cause, FailureError) else cause.cause
        failed = cls(
            message,
            step=run_id,
            fix=f"see `patchwave status {run_id}`, fix the cause, then `patchwave resume {run_id}`",
        )
        failed.exit_code = 2 if kind in BAD_INPUT_TYPES else 1
        return failed


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"run-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def exit_code(summary: RunSummary) -> int:
    if summary.status == "halted":
        return EXIT_HALTED
    bad = {StepStatus.FAILED, StepStatus.ROLLED_BACK}
    if any(v.status in bad for v in summary.vms) or any(h.status is StepStatus.FAILED for h in summary.hosts):
        return EXIT_SOME_FAILED
    return EXIT_OK


async def start_run(
    client: Client,
    request: RunRequest,
    *,
    reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
) -> WorkflowHandle:
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


class RunStillRunning(OrchestratorError):
    """Another run of this installation is still running: two runs must not patch the same guests."""

    exit_code = 2
    code = "run_running"

    def __init__(self, run_id: str, address: str) -> None:
        super().__init__(
            f"run {run_id} is still running",
            step="run",
            fix=f"finish it (`patchwave resume {run_id}`, `patchwave approve {run_id}`) or terminate it "
            f"(`temporal workflow terminate --workflow-id {run_id} --address {address}`)",
        )
        self.run_id = run_id


async def refuse_concurrent(client: Client, facts: FactStore, address: str) -> None:
    """Raise :class:`RunStillRunning` if a PatchRun recorded in this fact store is still running."""
    query = "WorkflowType = 'PatchRun' AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query):
        if facts.get_run(execution.id) is not None:
            raise RunStillRunning(execution.id, address)


async def progress(handle: WorkflowHandle) -> RunProgress | None:
    """The run's live progress, or None when the workflow cannot answer (no worker, closed)."""
    try:
        return await handle.query(PatchRun.progress)
    except (RPCError, Exception):  # noqa: BLE001 - no worker yet, or the run is gone: nothing to show
        return None


async def watch(
    handle: WorkflowHandle, on_progress: Callable[[RunProgress], None], *, interval_s: float = POLL_INTERVAL_S
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
        raise RunFailed.from_failure(handle.id, err) from None
    finally:
        result.cancel()
    final = await progress(handle)
    if final is not None:
        on_progress(final)
    return summary


async def resume_run(client: Client, run_id: str, facts: FactStore) -> WorkflowHandle:
    """Continue ``run_id``: wait for a running execution, or start a new one after one that failed,
    was terminated/cancelled/timed out, or halted on its failure budget.

    A new execution reuses the plan recorded in the fact store and the VMs' recorded outcomes, so
    finished VMs are neither snapshotted nor patched again; VMs that FAILED before stay FAILED and
    no longer count against the budget (resuming acknowledges them).
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
    return await start_run(client, request, reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE)


async def _restart_from_facts(client: Client, run_id: str, facts: FactStore) -> WorkflowHandle:
    """The engine lost the run (a fresh temporal.db): start it again from the fact store."""
    return await start_run(
        client, _request_from_facts(run_id, facts), reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE
    )


def _request_from_facts(run_id: str, facts: FactStore) -> RunRequest:
    record = facts.get_run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return RunRequest(run_id=run_id, config_digest=record.config_digest, requested_by=record.requested_by)


async def _original_request(client: Client, handle: WorkflowHandle) -> RunRequest | None:
    """The RunRequest the first execution was started with (from its history)."""
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        if attrs.input.payloads:
            values = await client.data_converter.decode(attrs.input.payloads, [RunRequest])
            return values[0]
        return None
    return None


async def approve(client: Client, run_id: str, ring: str = "") -> RunProgress | None:
    handle = client.get_workflow_handle_for(PatchRun.run, run_id)
    await handle.signal(PatchRun.approve, ring)
    return await progress(handle)


async def rollback(client: Client, run_id: str, vm_names: tuple[str, ...] = ()) -> tuple[VmOutcome, ...]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return await client.execute_workflow(
        RollbackRun.run,
        RollbackRequest(run_id=run_id, vm_names=vm_names),
        id=f"{run_id}-rollback-{stamp}",
        task_queue=CENTRAL_QUEUE,
    )


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    workflow: str  # "running", "completed", "failed", ... or "unknown" (engine not reachable)
    progress: RunProgress | None


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
