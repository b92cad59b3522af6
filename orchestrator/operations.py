"""What the CLI commands do, as library calls (everything the CLI does is callable from Python).

Synchronous ones work on the providers and the fact store directly; the run operations open a
:class:`~orchestrator.engine.session.Session` (embedded server + in-process workers, or a cluster).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from orchestrator.config import starter
from orchestrator.config.loader import build_settings, load_settings, parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.dry_run import DryRun, describe_run
from orchestrator.engine.admission import admit, await_finished, take_leases
from orchestrator.engine.assessments import sync_assessment_schedule
from orchestrator.engine.backup_schedule import sync_verify_schedule
from orchestrator.engine.connection import Engine, engine_to_ask, running_engine
from orchestrator.engine.ownership import Notice
from orchestrator.engine.payloads import ApprovalRequest, RunProgress
from orchestrator.engine.runs import (
    RunHandle,
    RunStatus,
    describe,
    resume_run,
    rollback_result,
    running_runs,
    running_workflows,
    start_rollback,
    start_run,
    unplanned_status,
    watch,
)
from orchestrator.engine.runs import approve as approve_run
from orchestrator.engine.schedules import SyncResult, keep_in_sync
from orchestrator.engine.server import EngineError, ui_answers, ui_url
from orchestrator.engine.session import Session
from orchestrator.engine.workers import EVERYTHING, Roles
from orchestrator.errors import ConfigChanged, ConfigError, RunExists, RunFailed, RunNotFound, RunNotRunning
from orchestrator.facts.leases import LeaseTarget
from orchestrator.facts.pins import HeldRecord, PinSet, PinStore
from orchestrator.facts.store import FactStore, RunRecord, SnapshotRecord, open_store
from orchestrator.logs import configure_logging, log_file_of, quiet_sdk_tracebacks, stop_log_file
from orchestrator.metrics.exposition import endpoint as metrics_endpoint
from orchestrator.model import CleanupResult, Plan, RunRequest, RunSummary, VmOutcome
from orchestrator.planning.selection import select_targets
from orchestrator.preflight import (
    FINISHED,
    check_forcible,
    check_new_run,
    check_revertible,
    recorded_run,
    refuse_finished,
)
from orchestrator.reconcile import Finding, Reconciler, Reconciliation
from orchestrator.reporting.timelines import gate_line
from orchestrator.run_ids import check_run_id
from orchestrator.snapshots import clean_up, due, not_in_use
from providers.base import Capability, Inventory

ProgressFn = Callable[[RunProgress], None]


@contextmanager
def local_context(settings: Settings) -> Iterator[Context]:
    """Providers + fact store in this process, without Temporal (read-only commands)."""
    facts = open_store(settings)
    ctx = Context(settings, facts)
    try:
        yield ctx
    finally:
        ctx.close()
        facts.close()


def inventory(settings: Settings) -> tuple[Inventory, ...]:
    with local_context(settings) as ctx:
        return ctx.discover()


def plan(
    settings: Settings, *, selection: tuple[str, ...] = (), hosts: bool = True, guests: bool = True
) -> Plan:
    with local_context(settings) as ctx:
        return ctx.plan(ctx.discover(), datetime.now(UTC), selection=selection, hosts=hosts, guests=guests)


def check_selection(settings: Settings, selection: tuple[str, ...], *, sites: tuple[str, ...] = ()) -> None:
    """Raise :class:`~orchestrator.errors.SelectionError` when a name matches no VM or host.

    Matched against the inventories only (:func:`~orchestrator.planning.selection.select_targets`),
    not a plan: the run's workflow discovers and plans by itself.
    """
    with local_context(settings) as ctx:
        select_targets(ctx.discover(sites or None), settings, selection)


def dry_run(
    settings: Settings, *, selection: tuple[str, ...] = (), hosts: bool = True, guests: bool = True
) -> DryRun:
    """``run --dry-run``: plan and assess read-only in this process; no engine, no write (:mod:`orchestrator.dry_run`),
    not even to the log file."""
    stop_log_file()
    return describe_run(settings, selection=selection, hosts=hosts, guests=guests)


def list_runs(settings: Settings, limit: int = 20) -> list[RunRecord]:
    with _facts(settings) as facts:
        return facts.list_runs(limit)


def snapshots(settings: Settings, *, run_id: str = "") -> list[SnapshotRecord]:
    if run_id:
        check_run_id(run_id)
    with _facts(settings) as facts:
        return facts.snapshots(run_id=run_id or None)


def cleanup(
    settings: Settings,
    *,
    run_id: str = "",
    include_unexpired: bool = False,
    now: datetime | None = None,
    wait_s: float = 0.0,
    notice: Notice | None = None,
) -> dict[str, CleanupResult]:
    """Delete expired (or, with ``include_unexpired``, all of ``run_id``'s) snapshots per site
    (:mod:`orchestrator.snapshots`: ownership checked first). Never the snapshot of a run that is
    not finished: counted as ``in_use``, and ``run_id`` itself unfinished is refused
    (:class:`SnapshotsInUse`). The VMs' leases are taken first (owner: this cleanup); another run
    or operation on one of them refuses it (:class:`LeaseHeld`) — with ``wait_s`` it waits that
    long (for the holder, or for ``run_id`` to finish). Provider errors propagate as they are."""
    if run_id:
        check_run_id(run_id)
    moment = now or datetime.now(UTC)
    owner = f"cleanup-{moment:%Y%m%d-%H%M%S}-{os.getpid()}"
    with local_context(settings) as ctx:
        facts = ctx.facts
        providers = {site: ctx.require(site, Capability.SNAPSHOT) for site in settings.sites}
        if run_id:
            await_finished(facts, run_id, wait_s=wait_s, notice=notice)
        todo = {
            site: not_in_use(
                facts, due(facts, site, moment, run_id=run_id, include_unexpired=include_unexpired)
            )
            for site in settings.sites
        }
        targets = [LeaseTarget.vm(r.vm) for records, _ in todo.values() for r in records]
        take_leases(facts, owner, targets, operation="cleanup", wait_s=wait_s, notice=notice)
        try:
            return {
                site: replace(
                    clean_up(facts, providers[site], records, log=ctx.log.bind(site=site)), in_use=tuple(kept)
                )
                for site, (records, kept) in todo.items()
            }
        finally:
            facts.release_leases(owner, targets)


def report(
    settings: Settings, *, fmt: str = "table", now: datetime | None = None, refresh: bool = False
) -> str:
    """The compliance report from the fact store, rendered as table | json | csv | html, or its figures as
    metrics (openmetrics | prometheus). ``refresh``: discover every site first (records its inventory)."""
    from orchestrator.metrics.exposition import METRIC_FORMATS, render_metrics
    from orchestrator.reporting.compliance import build_report
    from orchestrator.reporting.render import render

    if refresh:
        inventory(settings)
    moment, grace_s = now or datetime.now(UTC), settings.compliance.grace_s
    with _facts(settings) as facts:
        if fmt in METRIC_FORMATS:
            return render_metrics(facts, moment, grace_s=grace_s, fmt=fmt)
        report = build_report(facts, moment, grace_s=grace_s, critical_tag=settings.backup.critical_tag)
        return render(report, fmt)


async def doctor(
    settings: Settings,
    *,
    address: str = "",
    confirm: Callable[[Finding], bool] | None = None,
    on_findings: Callable[[tuple[Finding, ...]], None] | None = None,
    now: datetime | None = None,
    notice: Notice | None = None,
) -> Reconciliation:
    """Find leftovers of dead runs (:mod:`orchestrator.reconcile`); with ``confirm``, fix each one
    it approves (the live workflows are asked of Temporal again right before every fix — of the
    embedded server started for that when none is up: a crashed run's workflow is still running
    there, and its leases are not released under it)."""
    async with engine_to_ask(settings, address, notice=notice) as client:
        with local_context(settings) as ctx:
            reconciler = Reconciler(ctx, now=now or datetime.now(UTC))
            found = tuple(await asyncio.to_thread(reconciler.scan, await _live(client)))
            if on_findings is not None:
                on_findings(found)
            if confirm is None:
                return Reconciliation(found)
            fixed = []
            for finding in found:
                if confirm(finding):
                    live = await _live(client)
                    fixed.append(await asyncio.to_thread(reconciler.fix, finding, live))
            return Reconciliation(found, tuple(fixed))


async def _live(client: Client | None) -> frozenset[str]:
    """What runs now: run ids (a rollback counts for its run) and the workflow ids owning leases."""
    return await running_runs(client) | await running_workflows(client)


@contextmanager
def _facts(settings: Settings) -> Iterator[FactStore]:
    facts = open_store(settings)
    try:
        yield facts
    finally:
        facts.close()


async def _watched(handle: RunHandle, on_progress: ProgressFn, facts: FactStore) -> RunSummary:
    """:func:`watch`; a run that failed before the fact store recorded its plan says so."""
    try:
        return await watch(handle, on_progress)
    except RunFailed as failed:
        if facts.get_run(handle.id) is None:
            raise failed.before_planning() from None
        raise


# ------------------------------------------------------------------------------ runs


async def run(
    settings: Settings,
    request: RunRequest,
    *,
    address: str = "",
    ui: bool = False,
    worker: bool | None = None,
    on_progress: ProgressFn,
    wait_s: float = 0.0,
    notice: Notice | None = None,
) -> RunSummary:
    """Start ``request`` and follow it to its summary (workers in-process: embedded default).
    A run id is used once: one the fact store (or Temporal) knows is refused (:class:`RunExists`).
    Targets another run or operation holds refuse it (:class:`~orchestrator.errors.LeaseHeld`);
    with ``wait_s`` it waits that long for them and starts again."""
    check_new_run(settings, request.run_id)
    if request.selection:  # unknown names are bad input: fail before anything starts
        await asyncio.to_thread(check_selection, settings, request.selection, sites=request.sites)
    async with Session(settings, address=address, ui=ui, worker=worker, hold=True, notice=notice) as session:

        async def start_and_watch() -> RunSummary:
            try:
                handle = await admit(
                    session, lambda: start_run(session.client, request), wait_s=wait_s, notice=notice
                )
            except WorkflowAlreadyStartedError:
                raise RunExists(request.run_id, "known to Temporal") from None
            assert session.facts is not None
            return await _watched(handle, on_progress, session.facts)

        return await session.engine.supervise(
            start_and_watch(),
            step=request.run_id,
            fix=f"`patchwave resume {request.run_id}` continues the run",
        )


async def resume(
    settings: Settings,
    run_id: str,
    *,
    address: str = "",
    on_progress: ProgressFn,
    wait_s: float = 0.0,
    notice: Notice | None = None,
) -> RunSummary:
    check_run_id(run_id)
    with _facts(settings) as facts:
        record = facts.get_run(run_id)
        # A run killed before it was planned is in the engine only: ask it (resume_run raises
        # RunNotFound when neither knows the run); with no engine state there is nothing to ask.
        if record is None and not (address or settings.temporal.mode == "external"
                                   or settings.state.temporal_db.exists()):  # fmt: skip
            raise RunNotFound(run_id)
        if record is not None and record.config_digest and record.config_digest != settings.digest:
            raise ConfigChanged(run_id, record.config_digest, settings.digest)
    async with Session(settings, address=address, hold=True, notice=notice) as session:
        assert session.facts is not None
        facts = session.facts

        async def resume_and_watch() -> RunSummary:
            handle = await admit(
                session,
                lambda: resume_run(session.client, run_id, facts, digest=settings.digest),
                resumed=True,
                wait_s=wait_s,
                notice=notice,
            )
            return await _watched(handle, on_progress, facts)

        return await session.engine.supervise(
            resume_and_watch(), step=run_id, fix=f"`patchwave resume {run_id}` again continues the run"
        )


async def rollback(
    settings: Settings,
    run_id: str,
    vm_names: tuple[str, ...] = (),
    *,
    address: str = "",
    wait_s: float = 0.0,
    notice: Notice | None = None,
    on_progress: ProgressFn | None = None,
) -> tuple[VmOutcome, ...]:
    """Revert the snapshots ``run_id`` recorded (all, or those of ``vm_names``) and verify health.
    A name the run did not plan, or planned but has no snapshot of, is bad input: nothing starts.
    Refused with :class:`~orchestrator.errors.LeaseHeld` while the run (or anyone) still works on one
    of those VMs; with ``wait_s`` it waits that long for them first."""
    check_run_id(run_id)
    with _facts(settings) as facts:
        record = facts.get_run(run_id)
        if record is None:
            raise RunNotFound(run_id)
        check_revertible(facts, record, vm_names)
    async with Session(settings, address=address, hold=True, notice=notice) as session:

        async def revert() -> tuple[VmOutcome, ...]:
            begin = lambda: start_rollback(session.client, run_id, vm_names)
            handle = await admit(session, begin, wait_s=wait_s, notice=notice)
            return await rollback_result(handle, on_progress)

        return await session.engine.supervise(
            revert(), step=run_id, fix=f"`patchwave rollback {run_id}` again (reverts are idempotent)"
        )


@dataclass(frozen=True)
class ApprovalDone:
    """An accepted approval (recorded in the fact store's ``ring_gates``)."""

    run_id: str
    ring: str
    forced: bool  # past a gate that refused (``reason`` is the refusal)
    reason: str = ""
    resume: bool = False  # the run is halted: `patchwave resume RUN` continues it past the ring
    progress: RunProgress | None = None


async def approve(
    settings: Settings, run_id: str, ring: str = "", *, force: bool = False, by: str = "", address: str = ""
) -> ApprovalDone:
    """Let ``run_id`` promote past ``ring`` ("" = the ring whose gate is open). A running run takes
    it only while that ring's gate is open and the ring passes it again (the ``approve`` update);
    anything else is :class:`ApprovalRefused`. ``force`` on a run that halted at ``ring``'s gate
    records the forced approval, and `patchwave resume RUN` then passes that gate. An unknown run is
    :class:`RunNotFound`; a finished one :class:`RunNotRunning` (all bad input)."""
    check_run_id(run_id)
    record = recorded_run(settings, run_id)
    if record is not None and record.status in FINISHED:
        return (
            _force_past_refusal(settings, record, ring, by=by) if force else refuse_finished(settings, record)
        )
    client = await _running_engine(settings, address)
    if client is None:
        if record is None:
            raise RunNotFound(run_id)
        raise EngineError(
            f"no Temporal server answers at {address or settings.temporal.address}",
            step="approve",
            fix="approve while the run's `patchwave run` (or `patchwave serve`) is running",
        )
    live = await describe(client, run_id)
    if live.workflow == "not found":
        raise RunNotFound(run_id)
    if live.workflow != "running":
        raise RunNotRunning(run_id, live.workflow)
    result = await approve_run(client, run_id, ApprovalRequest(ring, force, by))
    forced = force and bool(result.reason)
    with _facts(settings) as facts:
        facts.record_gate(
            run_id, result.ring, "forced" if forced else "approved", decided_by=by, reason=result.reason
        )
    return ApprovalDone(run_id, result.ring, forced, result.reason, progress=live.progress)


def _force_past_refusal(settings: Settings, record: RunRecord, ring: str, *, by: str) -> ApprovalDone:
    """``approve RUN --ring X --force`` on a finished run: only past the gate of X that halted it."""
    refused = check_forcible(settings, record, ring)
    with _facts(settings) as facts:
        facts.record_gate(record.run_id, refused.ring, "forced", decided_by=by, reason=refused.reason)
    return ApprovalDone(record.run_id, refused.ring, True, refused.reason, resume=True)


#: VM outcomes per page of `patchwave status RUN --page N`.
STATUS_PAGE = 50


@dataclass(frozen=True)
class OutcomePage:
    """One page of a run's recorded VM outcomes (failed, rolled back, skipped first) and the counts."""

    page: int  # 1-based
    pages: int
    counts: dict[str, int]  # status -> VMs with that latest outcome (every VM of the run)
    planned: int  # VMs in the run's plan
    outcomes: tuple[VmOutcome, ...]


async def status(
    settings: Settings, run_id: str, *, address: str = "", page: int = 1
) -> tuple[RunRecord | None, OutcomePage, RunStatus]:
    """The fact store's record of ``run_id``, page ``page`` of its VM outcomes and what the engine
    says of it.

    A run the fact store does not know may have failed (or be) before planning: the engine is
    asked — a running one, or the embedded server started for the question when its database
    exists — and ``(None, an empty page, status)`` returned; :class:`RunNotFound` when neither knows it."""
    check_run_id(run_id)
    record = recorded_run(settings, run_id)
    shown = OutcomePage(1, 1, {}, 0, ())
    if record is not None:
        with _facts(settings) as facts:
            counts = facts.outcome_counts(run_id, "vm")
            pages = max(1, -(-sum(counts.values()) // STATUS_PAGE))
            page = min(max(1, page), pages)
            found = facts.outcomes_page(run_id, kind="vm", offset=(page - 1) * STATUS_PAGE, limit=STATUS_PAGE)
            outcomes = tuple(o for o in found if isinstance(o, VmOutcome))
            shown = OutcomePage(page, pages, counts, facts.plan_size(run_id).vms, outcomes)
    client = await _running_engine(settings, address)
    if record is not None:
        return record, shown, await describe(client, run_id)
    if client is not None:
        return None, shown, await unplanned_status(client, run_id)
    if address or settings.temporal.mode == "external" or not settings.state.temporal_db.exists():
        raise RunNotFound(run_id)
    async with Engine(settings) as engine:
        return None, shown, await unplanned_status(engine.client, run_id)


@dataclass(frozen=True)
class PromotionView:
    """A run's pinned promotion: its frozen pin set, and (a page of) what later rings held back."""

    pin_set: PinSet | None  # None: not frozen (single ring, promotion "latest", or no later ring yet)
    held: int  # held-back package versions
    held_vms: int  # VMs with any
    sample: tuple[HeldRecord, ...]


def promotion(settings: Settings, run_id: str, *, limit: int = 20) -> PromotionView:
    """The fact store's record of ``run_id``'s pinned promotion (``status RUN``, the end of ``run``)."""
    with _facts(settings) as facts:
        store = PinStore(facts)
        held, vms = store.held_count(run_id)
        return PromotionView(store.pin_set(run_id), held, vms, tuple(store.held(run_id, limit=limit)))


def gate_decisions(settings: Settings, run_id: str) -> tuple[str, ...]:
    """The run's ring gate decisions as lines (refused, approved, forced; who, when, why), oldest first."""
    if recorded_run(settings, run_id) is None:
        return ()
    with _facts(settings) as facts:
        return tuple(gate_line(g) for g in facts.gate_records(run_id))


async def _running_engine(settings: Settings, address: str) -> Client | None:
    """A client for the configured (or given) server if one is up — never starts one."""
    return await running_engine(settings, address)


async def serve(
    settings: Settings,
    *,
    address: str = "",
    ui: bool = False,
    ready: Callable[[str], None],
    schedules: bool = True,
    on_sync: Callable[[SyncResult], None] | None = None,
    on_metrics: Callable[[str], None] | None = None,
    notice: Notice | None = None,
    on_assessment: Callable[[str], None] | None = None,
    on_verify_schedule: Callable[[str], None] | None = None,
    roles: Roles = EVERYTHING,
) -> None:
    """Run the server (embedded) and the workers of ``roles`` until SIGTERM or SIGINT; with
    ``schedules`` (and the central role: only the central worker keeps them), keep
    one Temporal schedule per rollout of ``settings.schedules`` in sync meanwhile and the fleet
    assessment's (``[assess] every``; ``on_assessment("created" | "updated" | ...)``) and the backups'
    restore tests' (``[backup] verify_every``; ``on_verify_schedule``); with
    ``[metrics] port``, serve the metrics (``on_metrics(url)`` once they are served). Attached to
    the embedded server of another process (``notice`` says whose), it ends when that one does."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        metrics_endpoint(settings, on_metrics),
        Session(settings, address=address, worker=True, ui=ui, notice=notice, roles=roles) as session,
    ):
        schedules = schedules and roles.central
        syncing = (
            asyncio.create_task(keep_in_sync(session.client, settings, stop=stop, on_sync=on_sync))
            if schedules
            else None
        )
        if schedules:
            try:
                assessment = await sync_assessment_schedule(session.client, settings)
            except RPCError as err:  # the runs' schedules and the workers go on; the next serve retries
                assessment = f"not synced ({err.message})"
            if on_assessment is not None:
                on_assessment(assessment)
            try:
                verifying = await sync_verify_schedule(session.client, settings)
            except RPCError as err:
                verifying = f"not synced ({err.message})"
            if on_verify_schedule is not None:
                on_verify_schedule(verifying)
        ready(session.engine.address)
        try:
            # An embedded server that dies (or whose owning process exits) ends `serve` with an error:
            # its supervisor (systemd) restarts it, and the new server continues every workflow.
            await session.engine.supervise(stop.wait(), step="serve", fix="start `patchwave serve` again")
        except BaseException:
            if syncing is not None:
                syncing.cancel()  # not awaited: it may be waiting on the dead server
            raise
        if syncing is not None:
            await syncing


def load(
    path: Path, *, state_dir: Path | None = None, log_format: str = "", verbose: bool = False
) -> Settings:
    """``load_settings(path, state_dir=...)`` with ``--log-format`` applied, and logging configured:
    events to the state directory's log file, stderr only for warnings (``verbose``: everything)."""
    settings = load_settings(path, state_dir=Path(state_dir).expanduser().absolute() if state_dir else None)
    if log_format:
        settings = replace(settings, logging=replace(settings.logging, format=log_format))
    configure_logging(
        settings.logging, secrets=settings.secrets, log_file=log_file_of(settings.state.dir), verbose=verbose
    )
    quiet_sdk_tracebacks()
    return settings


@dataclass(frozen=True)
class Starter:
    """What ``patchwave init`` wrote: the file, the site's inventory it came from, the canary VMs."""

    path: Path
    inventory: Inventory
    canaries: tuple[str, ...]


_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def init_config(
    path: Path,
    connection: starter.Connection,
    *,
    site: str,
    canary: int = 2,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Starter:
    """``patchwave init``: connect with ``connection``, discover the site, write a starter file at ``path``.

    The text is validated by the loader before it is written (what ``plan`` reads is what was
    checked); an existing file is replaced only with ``force``. Nothing is recorded anywhere else."""
    environ = os.environ if environ is None else environ
    path = Path(path).expanduser()
    if not _SITE_NAME.match(site):
        raise ConfigError(
            "patchwave init", "--site", f"{site!r} is not a site name", "use letters, digits, '-', '_'"
        )
    if path.exists() and not force:
        raise ConfigError(str(path), "-", "exists already", "pass --force to replace it, or -c NEW.toml")
    table = starter.provider_table(connection)
    skeleton = build_settings(
        {"providers": {site: table}, "targets": {"names": [f"{site}/*"]}}, file=path, environ=environ
    )
    ctx = Context(skeleton, None, record_inventory=False)
    try:
        found = ctx.inventory_of(site)
        # vSphere's agent (VMware Tools guest operations) needs guest credentials the starter cannot know
        agent = Capability.GUEST_EXEC in ctx.provider(site).capabilities and connection.kind != "vsphere"
    finally:
        ctx.close()
    text = starter.render(
        site=site,
        table=table,
        inventory=found,
        canary=canary,
        channel="agent" if agent else "ssh",
        timezone=_local_timezone(environ),
        written_at=datetime.now().astimezone(),
    )
    parse_settings_text(text, file=path, environ=environ)  # what plan will read: refuse our own mistake here
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return Starter(path, found, tuple(vm.ref.name for vm in starter.canary_vms(found, canary)))


def _local_timezone(environ: Mapping[str, str]) -> str:
    """This machine's IANA time zone (``TZ``, /etc/timezone, the /etc/localtime link), else UTC."""
    candidates = [environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        candidates.append(str(localtime.resolve()).partition("zoneinfo/")[2])
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ValueError, ZoneInfoNotFoundError):
            continue
        return name
    return "UTC"


def temporal_ui(settings: Settings, run_id: str, *, address: str = "") -> str:
    """The link to ``run_id`` in the embedded server's web UI when that UI answers (``run --ui`` /
    ``serve --ui``), else "". An external cluster's UI is its own: no link is guessed for it."""
    if address or settings.temporal.mode != "embedded":
        return ""
    if not ui_answers(settings.temporal.address):
        return ""
    return ui_url(settings.temporal.address, settings.temporal.namespace, run_id)
