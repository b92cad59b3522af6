"""The commands that act: run, resume, rollback, approve, serve."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator import operations, preflight
from orchestrator.cli import render
from orchestrator.cli.options import (
    WAIT_TIMEOUT_S,
    Names,
    Wait,
    WaitTimeout,
    drive,
    finish,
    notice,
    opts_of,
    wait_s,
    who,
)

if TYPE_CHECKING:
    from orchestrator.config.settings import Settings
    from orchestrator.dry_run import DryRun
    from orchestrator.engine.schedules import SyncResult


def run(
    ctx: typer.Context,
    vm: Names = None,
    hosts: bool = True,
    guests: bool = True,
    dry_run: bool = False,
    ui: bool = False,
    run_id: Annotated[str, typer.Option(help="Run id (default: generated).")] = "",
    worker: Annotated[
        bool | None,
        typer.Option(help="Run the workers in this process (default: yes when embedded, no with a cluster)."),
    ] = None,
    output: Annotated[str, typer.Option(help="table | json (json: with --dry-run)")] = "table",
    wait: Wait = False,
    wait_timeout: WaitTimeout = WAIT_TIMEOUT_S,
    cve: Annotated[
        list[str] | None,
        typer.Option(
            "--cve",
            help="Patch by CVE (repeatable): only the packages fixing it, only on the VMs whose latest "
            "assessment lists it; proved per CVE afterwards.",
        ),
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="With --cve: start now, overriding maintenance windows (recorded).")
    ] = False,
) -> None:
    """An ad-hoc rollout with live progress; exit 0 ok, 1 rolled back/failed, 3 halted, 2 refused
    (e.g. another run or operation works on the targets: named; --wait waits for it).
    --dry-run: plan and list each VM's pending updates read-only; starts and changes nothing.
    --cve: a zero-day run (same snapshots, health checks, rings, windows unless --now)."""
    from orchestrator.engine.runs import new_run_id
    from orchestrator.errors import CveSelectionError
    from orchestrator.model import RunRequest
    from orchestrator.planning.cve import parse_cves

    cves = parse_cves(cve) if cve else ()
    if now and not cves:
        raise CveSelectionError("--now overrides maintenance windows for a CVE run only", step="--now",
                                fix="add --cve CVE-YYYY-NNNN, or run inside the window")  # fmt: skip
    if dry_run and cves:
        raise CveSelectionError("--dry-run does not plan CVE runs", step="--dry-run",
                                fix="`patchwave assess --view cve` lists the affected VMs and fixed versions")  # fmt: skip

    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    if output == "json" and not dry_run:
        raise typer.BadParameter(
            "json output is for --dry-run (a run shows live progress)", param_hint="--output"
        )
    opts = opts_of(ctx)
    settings = opts.settings()
    if dry_run:
        show_dry_run(
            operations.dry_run(settings, selection=tuple(vm or ()), hosts=hosts, guests=guests), output
        )
        raise typer.Exit(0)
    request = RunRequest(
        run_id=run_id or new_run_id(),
        config_digest=settings.digest,
        selection=tuple(vm or ()),
        hosts=hosts and not cves,
        guests=guests,
        requested_by=who(),
        cves=cves,
        now=now,
    )
    preflight.check_new_run(settings, request.run_id)  # before saying it started
    typer.echo(f"run {request.run_id} started (config {settings.file})", err=True)
    if worker is False or (
        worker is None and (opts.temporal_address or settings.temporal.mode == "external")
    ):
        typer.echo("no worker in this process: `patchwave serve` must be running for this Temporal", err=True)
    with render.ProgressView() as view:
        summary = drive(
            opts,
            operations.run(
                settings,
                request,
                address=opts.temporal_address,
                ui=ui,
                worker=worker,
                on_progress=view,
                wait_s=wait_s(wait, wait_timeout),
                notice=notice,
            ),
            view,
        )
    code = finish(summary, view)
    show_promotion(settings, request.run_id)
    raise typer.Exit(code)


def show_dry_run(shown: DryRun, output: str) -> None:
    if output == "json":
        typer.echo(render.to_json(shown))
    else:
        out = render.console()
        for table in render.dry_run_tables(shown):
            out.print(table)
    typer.echo("dry run: nothing was changed", err=output == "json")


def resume(
    ctx: typer.Context, run: str, wait: Wait = False, wait_timeout: WaitTimeout = WAIT_TIMEOUT_S
) -> None:
    """Continue RUN after a crash (finished VMs are not snapshotted or patched again)."""
    opts = opts_of(ctx)
    settings = opts.settings()
    with render.ProgressView() as view:
        resuming = operations.resume(
            settings,
            run,
            address=opts.temporal_address,
            on_progress=view,
            wait_s=wait_s(wait, wait_timeout),
            notice=notice,
        )
        summary = drive(opts, resuming, view)
    code = finish(summary, view)
    show_promotion(settings, run)
    raise typer.Exit(code)


def show_promotion(settings: Settings, run_id: str) -> None:
    """The run's pin set and what its later rings held back (pinned promotion), if any."""
    for line in render.promotion_lines(operations.promotion(settings, run_id)):
        typer.echo(line)


def rollback(
    ctx: typer.Context,
    run: str,
    vm: Names = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = WAIT_TIMEOUT_S,
) -> None:
    """Revert RUN's recorded snapshots (all, or --vm NAME) and verify health. Refused (exit 2) while
    RUN or another operation still works on one of those VMs; --wait waits for it."""
    from orchestrator.model import StepStatus

    opts = opts_of(ctx)
    with render.ProgressView() as view:
        reverting = operations.rollback(
            opts.settings(),
            run,
            tuple(vm or ()),
            address=opts.temporal_address,
            wait_s=wait_s(wait, wait_timeout),
            notice=notice,
            on_progress=view,
        )
        outcomes = drive(opts, reverting, view)
    render.console().print(render.outcomes_table(f"rollback of {run}", outcomes))
    raise typer.Exit(0 if all(o.status is StepStatus.ROLLED_BACK for o in outcomes) else 1)


def approve(
    ctx: typer.Context,
    run: str,
    ring: Annotated[
        str, typer.Option(help="The ring to promote past (default: the ring whose gate is open).")
    ] = "",
    force: Annotated[
        bool,
        typer.Option(
            help="Promote although the ring's gate refused (failed, rolled-back or unhealthy VMs); on a "
            "halted run, then `patchwave resume RUN`. Recorded with who approved."
        ),
    ] = False,
) -> None:
    """Approve promotion of RUN past a ring's gate: accepted only while that ring's gate is open and
    its VMs are healthy (exit 2 with the reason otherwise), or with --force after the gate refused."""
    opts = opts_of(ctx)
    done = asyncio.run(
        operations.approve(opts.settings(), run, ring, force=force, by=who(), address=opts.temporal_address)
    )
    how = "forced past its gate" if done.forced else "approved"
    typer.echo(f"ring {done.ring} of {run} {how} (recorded, by {who()})")
    if done.forced:
        typer.echo(f"overridden: {done.reason}")
    if done.resume:
        typer.echo(f"the run is halted: `patchwave resume {run}` continues it past ring {done.ring}")


def serve(
    ctx: typer.Context,
    ui: bool = False,
    schedules: Annotated[
        bool,
        typer.Option(
            help="Keep one Temporal schedule per [[schedules]] rollout in sync (hourly), and the fleet "
            "assessment's ([assess] every)."
        ),
    ] = True,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            help="Poll only this site's task queue (patchwave-site-NAME); repeatable. A cluster runs a "
            "worker per site near its hypervisors.",
        ),
    ] = None,
    central: Annotated[
        bool | None,
        typer.Option(
            help="Poll the central queue (patchwave: workflows, planning, fact writes, notifications, "
            "schedules). Default: on without --site, off with it."
        ),
    ] = None,
) -> None:
    """Long-running: the Temporal dev server (embedded), the workers and the schedules, until SIGTERM/SIGINT.
    Without --site/--central it serves every queue (the all-in-one default)."""
    from orchestrator.engine.workers import Roles

    opts = opts_of(ctx)
    settings = opts.settings()
    try:
        roles = Roles.chosen(site or (), central, settings.sites)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--site/--central") from None

    def synced(result: SyncResult) -> None:
        typer.echo(
            f"schedules: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.deleted)} deleted, {len(result.unchanged)} unchanged",
            err=True,
        )

    queues = roles.describe(settings.sites)
    drive(
        opts,
        operations.serve(
            settings,
            address=opts.temporal_address,
            ui=ui,
            roles=roles,
            ready=lambda where: typer.echo(f"patchwave serving on {where} (queues: {queues})", err=True),
            schedules=schedules,
            on_sync=synced,
            on_metrics=lambda url: typer.echo(f"metrics on {url}", err=True),
            notice=notice,
            on_assessment=lambda state: typer.echo(f"fleet assessment schedule: {state}", err=True),
            on_verify_schedule=lambda state: typer.echo(f"backup restore-test schedule: {state}", err=True),
        ),
    )
