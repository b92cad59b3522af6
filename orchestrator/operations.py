"""What the CLI commands do, as library calls (everything the CLI does is callable from Python).

Synchronous ones work on the providers and the fact store directly; the run operations open a
:class:`~orchestrator.session.Session` (embedded server + in-process workers, or a cluster).
"""

from __future__ import annotations

import asyncio
import difflib
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from temporalio.client import Client

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.devserver import EngineError, probe
from orchestrator.engine import connect
from orchestrator.errors import ConfigChanged, SelectionError
from orchestrator.facts import FactStore, RunRecord, SnapshotRecord
from orchestrator.messages import CleanupInput, CleanupResult, RunProgress
from orchestrator.model import Plan, RunRequest, RunSummary, VmOutcome
from orchestrator.planning import discover, plan_from
from orchestrator.reconcile import Finding, Reconciler, Reconciliation, running_runs
from orchestrator.runs import (
    RunNotFound,
    RunStatus,
    describe,
    refuse_concurrent,
    resume_run,
    start_run,
    watch,
)
from orchestrator.runs import approve as approve_run
from orchestrator.runs import rollback as rollback_run
from orchestrator.schedules import SyncResult, keep_in_sync
from orchestrator.session import Session
from providers.base import Inventory

ProgressFn = Callable[[RunProgress], None]


@contextmanager
def local_context(settings: Settings) -> Iterator[Context]:
    """Providers + fact store in this process, without Temporal (read-only commands)."""
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        yield ctx
    finally:
        ctx.close()
        facts.close()


def inventory(settings: Settings) -> tuple[Inventory, ...]:
    with local_context(settings) as ctx:
        return discover(ctx)


def plan(
    settings: Settings, *, selection: tuple[str, ...] = (), hosts: bool = True, guests: bool = True
) -> Plan:
    with local_context(settings) as ctx:
        return plan_from(
            ctx, discover(ctx), datetime.now(UTC), selection=selection, hosts=hosts, guests=guests
        )


def list_runs(settings: Settings, limit: int = 20) -> list[RunRecord]:
    with _facts(settings) as facts:
        return facts.list_runs(limit)


def snapshots(settings: Settings, *, run_id: str = "") -> list[SnapshotRecord]:
    with _facts(settings) as facts:
        return facts.snapshots(run_id=run_id or None)


def cleanup(
    settings: Settings, *, run_id: str = "", include_unexpired: bool = False
) -> dict[str, CleanupResult]:
    """Delete expired (or, with ``include_unexpired``, all of ``run_id``'s) snapshots per site."""
    from orchestrator.activities import Activities

    now = datetime.now(UTC).isoformat(timespec="seconds")
    with local_context(settings) as ctx:
        acts = Activities(ctx)
        return {
            site: acts.cleanup_expired_snapshots(CleanupInput(site, now, run_id, include_unexpired))
            for site in settings.sites
        }


def report(settings: Settings, *, fmt: str = "table", now: datetime | None = None) -> str:
    """The compliance report from the fact store, rendered as table | json | csv | html."""
    from orchestrator.report import build_report
    from orchestrator.report_render import render

    with _facts(settings) as facts:
        return render(build_report(facts, now or datetime.now(UTC)), fmt)


async def doctor(
    settings: Settings,
    *,
    address: str = "",
    confirm: Callable[[Finding], bool] | None = None,
    on_findings: Callable[[tuple[Finding, ...]], None] | None = None,
    now: datetime | None = None,
) -> Reconciliation:
    """Find leftovers of dead runs (:mod:`orchestrator.reconcile`); with ``confirm``, fix each one
    it approves (the live runs are asked of Temporal again right before every fix)."""
    client = await _running_engine(settings, address)
    with local_context(settings) as ctx:
        reconciler = Reconciler(ctx, now=now or datetime.now(UTC))
        found = tuple(await asyncio.to_thread(reconciler.scan, await running_runs(client)))
        if on_findings is not None:
            on_findings(found)
        if confirm is None:
            return Reconciliation(found)
        fixed = []
        for finding in found:
            if confirm(finding):
                live = await running_runs(client)
                fixed.append(await asyncio.to_thread(reconciler.fix, finding, live))
        return Reconciliation(found, tuple(fixed))


@contextmanager
def _facts(settings: Settings) -> Iterator[FactStore]:
    facts = FactStore(settings.state.facts_path)
    try:
        yield facts
    finally:
        facts.close()


# ------------------------------------------------------------------------------ runs


async def run(
    settings: Settings,
    request: RunRequest,
    *,
    address: str = "",
    ui: bool = False,
    worker: bool | None = None,
    on_progress: ProgressFn,
) -> RunSummary:
    """Start ``request`` and follow it to its summary (workers in-process: embedded default)."""
    if request.selection:  # unknown names are bad input: fail before anything starts
        await asyncio.to_thread(
            plan, settings, selection=request.selection, hosts=request.hosts, guests=request.guests
        )
    async with Session(settings, address=address, ui=ui, worker=worker) as session:
        assert session.facts is not None
        facts = session.facts

        async def start_and_watch() -> RunSummary:
            await refuse_concurrent(session.client, facts, session.engine.address)
            handle = await start_run(session.client, request)
            return await watch(handle, on_progress)

        return await session.engine.supervise(
            start_and_watch(), step=request.run_id, fix=f"`patchwave resume {request.run_id}` continues the run"
        )


async def resume(
    settings: Settings, run_id: str, *, address: str = "", on_progress: ProgressFn
) -> RunSummary:
    with _facts(settings) as facts:
        record = facts.get_run(run_id)
        # A run killed before it was planned is in the engine only: ask it (resume_run raises
        # RunNotFound when neither knows the run); with no engine state there is nothing to ask.
        if record is None and not (address or settings.temporal.mode == "external"
                                   or settings.state.temporal_db.exists()):  # fmt: skip
            raise RunNotFound(run_id)
        if record is not None and record.config_digest and record.config_digest != settings.digest:
            raise ConfigChanged(run_id, record.config_digest, settings.digest)
    async with Session(settings, address=address) as session:
        assert session.facts is not None
        facts = session.facts

        async def resume_and_watch() -> RunSummary:
            handle = await resume_run(session.client, run_id, facts)
            return await watch(handle, on_progress)

        return await session.engine.supervise(
            resume_and_watch(), step=run_id, fix=f"`patchwave resume {run_id}` again continues the run"
        )


async def rollback(
    settings: Settings, run_id: str, vm_names: tuple[str, ...] = (), *, address: str = ""
) -> tuple[VmOutcome, ...]:
    with _facts(settings) as facts:
        record = facts.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
    known = sorted({step.vm.name for step in record.plan().vm_steps})
    for name in vm_names:  # an unknown name is bad input, not an empty (successful) rollback
        if name not in known:
            raise SelectionError(name, difflib.get_close_matches(name, known, n=3) or known[:5])
    async with Session(settings, address=address) as session:
        return await session.engine.supervise(
            rollback_run(session.client, run_id, vm_names),
            step=run_id,
            fix=f"`patchwave rollback {run_id}` again (reverts are idempotent)",
        )


async def approve(
    settings: Settings, run_id: str, ring: str = "", *, address: str = ""
) -> RunProgress | None:
    client = await _running_engine(settings, address)
    if client is None:
        raise EngineError(
            f"no Temporal server answers at {address or settings.temporal.address}",
            step="approve",
            fix="approve while the run's `patchwave run` (or `patchwave serve`) is running",
        )
    return await approve_run(client, run_id, ring)


async def status(settings: Settings, run_id: str, *, address: str = "") -> tuple[RunRecord, list, RunStatus]:
    with _facts(settings) as facts:
        record = facts.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        outcomes = [o for o in facts.outcomes(run_id) if isinstance(o, VmOutcome)]
    client = await _running_engine(settings, address)
    return record, outcomes, await describe(client, run_id)


async def _running_engine(settings: Settings, address: str) -> Client | None:
    """A client for the configured (or given) server if one is up — never starts one."""
    if address or settings.temporal.mode == "external":
        return await connect(address or settings.temporal.address, settings.temporal.namespace)
    return await probe(settings.temporal.address, settings.temporal.namespace)


async def serve(
    settings: Settings,
    *,
    address: str = "",
    ui: bool = False,
    ready: Callable[[str], None],
    schedules: bool = True,
    on_sync: Callable[[SyncResult], None] | None = None,
) -> None:
    """Run the server (embedded) and the workers until SIGTERM or SIGINT; with ``schedules``, keep
    the Temporal schedules of the windowed groups in sync with the configuration meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Session(settings, address=address, worker=True, ui=ui) as session:
        syncing = (
            asyncio.create_task(keep_in_sync(session.client, settings, stop=stop, on_sync=on_sync))
            if schedules
            else None
        )
        ready(session.engine.address)
        try:
            # An embedded server that dies ends `serve` with an error: its supervisor (systemd)
            # restarts it, and the new server continues every workflow from its SQLite file.
            await session.engine.supervise(stop.wait(), step="serve", fix="start `patchwave serve` again")
        except BaseException:
            if syncing is not None:
                syncing.cancel()  # not awaited: it may be waiting on the dead server
            raise
        if syncing is not None:
            await syncing
