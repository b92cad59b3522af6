"""The ``patchwave`` command line (Typer + rich). Thin: parse, call the library, render, exit code.

Exit codes: 0 all succeeded, 1 some VMs rolled back/failed (or a runtime error), 2 bad input
(configuration, names, unreachable Temporal address), 3 the run halted on its failure budget.
Every expected error is one line on stderr — never a traceback, never a secret.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from orchestrator import cli_render as render
from orchestrator.cli_errors import SecretBox, end_process, exit_abandoned, run_guarded
from orchestrator.cli_settings import load
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.model import RunSummary

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Virtualization-aware patch orchestration on Temporal.",
)
snapshots_app = typer.Typer(no_args_is_help=True, help="Snapshots recorded by patchwave.")
lab_app = typer.Typer(no_args_is_help=True, help="The local Debian guest lab (libvirt + QEMU).")
app.add_typer(snapshots_app, name="snapshots")
app.add_typer(lab_app, name="lab")

T = TypeVar("T")
Names = Annotated[list[str] | None, typer.Option("--vm", help="Only these VM/host names (repeatable).")]


@dataclass(frozen=True)
class Options:
    config: Path
    temporal_address: str
    state_dir: Path | None
    log_format: str
    box: SecretBox

    def settings(self) -> Settings:
        settings = load(self.config, state_dir=self.state_dir, log_format=self.log_format)
        self.box.secrets.extend(settings.secrets)
        return settings


def _drive(opts: Options, work: Coroutine[Any, Any, T], view: render.ProgressView | None = None) -> T:
    """``asyncio.run(work)`` for the commands that run workers: if the embedded Temporal server
    dies under them (EngineLost) the process reports it and exits at once; ``asyncio.run`` would
    otherwise wait minutes for the abandoned workers' tasks and threads."""

    async def guarded() -> T:
        try:
            return await work
        except Exception as exc:
            if getattr(exc, "abandons_process", False):
                if view is not None:
                    view.__exit__(None, None, None)
                exit_abandoned(exc, opts.box)
            raise

    return asyncio.run(guarded())


def _opts(ctx: typer.Context) -> Options:
    return ctx.obj


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"patchwave {version('patchwave')}")
        except PackageNotFoundError:
            typer.echo("patchwave (not installed)")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Configuration file.", envvar="PATCHWAVE_CONFIG")
    ] = Path("patchwave.toml"),
    temporal_address: Annotated[str, typer.Option(help="External Temporal frontend host:port.")] = "",
    state_dir: Annotated[Path | None, typer.Option(help="Override the state directory (\\[state] dir in the config).")] = None,
    log_format: Annotated[str, typer.Option(help="auto | json | console")] = "",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    if log_format not in ("", "auto", "json", "console"):
        raise typer.BadParameter("use auto, json or console", param_hint="--log-format")
    box = ctx.obj if isinstance(ctx.obj, SecretBox) else SecretBox()
    ctx.obj = Options(config, temporal_address, state_dir, log_format, box)


# ------------------------------------------------------------------------------ read-only


@app.command()
def inventory(
    ctx: typer.Context, output: Annotated[str, typer.Option(help="table | json")] = "table"
) -> None:
    """Hosts and guests per site, with state and tags."""
    from orchestrator import operations

    inventories = operations.inventory(_opts(ctx).settings())
    if output == "json":
        typer.echo(render.to_json(list(inventories)))
        return
    out = render.console()
    for table in render.inventory_tables(inventories):
        out.print(table)


@app.command()
def plan(
    ctx: typer.Context,
    vm: Names = None,
    hosts: bool = True,
    guests: bool = True,
    output: Annotated[str, typer.Option(help="table | json")] = "table",
) -> None:
    """Order, waves, window fit and blockers — what `run` would do."""
    from orchestrator import operations

    made = operations.plan(_opts(ctx).settings(), selection=tuple(vm or ()), hosts=hosts, guests=guests)
    if output == "json":
        typer.echo(render.to_json(made))
        return
    out = render.console()
    for table in render.plan_tables(made):
        out.print(table)


@app.command()
def status(ctx: typer.Context, run: Annotated[str | None, typer.Argument()] = None) -> None:
    """Recent runs, or one run's state (live progress when its engine is up)."""
    from orchestrator import operations

    opts = _opts(ctx)
    out = render.console()
    if run is None:
        out.print(render.runs_table(operations.list_runs(opts.settings())))
        return
    record, outcomes, live = asyncio.run(
        operations.status(opts.settings(), run, address=opts.temporal_address)
    )
    out.print(render.runs_table([record]))
    if live.progress is not None:
        out.print(render.progress_table(live.progress))
    elif outcomes:
        out.print(render.outcomes_table(f"{run}: recorded outcomes (workflow {live.workflow})", outcomes))


@snapshots_app.command("list")
def snapshots_list(ctx: typer.Context, run: Annotated[str, typer.Option(help="Only this run.")] = "") -> None:
    """Snapshots patchwave recorded, with state and expiry."""
    from orchestrator import operations

    render.console().print(render.snapshots_table(operations.snapshots(_opts(ctx).settings(), run_id=run)))


@snapshots_app.command("cleanup")
def snapshots_cleanup(
    ctx: typer.Context,
    run: Annotated[str, typer.Option(help="Only this run.")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Also unexpired ones of --run.")] = False,
) -> None:
    """Delete expired run snapshots (ownership checked first)."""
    from orchestrator import operations

    if all_ and not run:
        raise typer.BadParameter("--all needs --run RUN", param_hint="--all")
    results = operations.cleanup(_opts(ctx).settings(), run_id=run, include_unexpired=all_)
    for site, result in results.items():
        typer.echo(
            f"{site}: deleted {len(result.deleted)}, already gone {len(result.gone)}, "
            f"not ours (left alone) {len(result.refused)}"
        )


@app.command()
def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option(help="Clean up what was found (asks per item).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --fix: do not ask.")] = False,
) -> None:
    """Leftovers of dead runs: orphan snapshots, hosts left in maintenance, stale records.
    Exit 0 nothing left over, 1 leftovers remain."""
    from orchestrator import operations

    if yes and not fix:
        raise typer.BadParameter("--yes needs --fix", param_hint="--yes")
    opts = _opts(ctx)
    out = render.console()

    def confirm(finding) -> bool:  # an orchestrator.reconcile.Finding
        return yes or typer.confirm(f"{finding.action} ({finding.kind} {finding.target})?", default=False)

    result = asyncio.run(
        operations.doctor(
            opts.settings(),
            address=opts.temporal_address,
            confirm=confirm if fix else None,
            on_findings=lambda found: out.print(render.findings_table(found)),
        )
    )
    for done in result.fixed:
        typer.echo(f"{'fixed' if done.done else 'not fixed'}: {done.finding.target}: {done.note}")
    raise typer.Exit(1 if result.unresolved else 0)


# ------------------------------------------------------------------------------ runs


@app.command()
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
) -> None:
    """An ad-hoc rollout with live progress; exit 0 ok, 1 rolled back/failed, 3 halted."""
    from orchestrator import operations
    from orchestrator.model import RunRequest
    from orchestrator.runs import new_run_id

    opts = _opts(ctx)
    settings = opts.settings()
    request = RunRequest(
        run_id=run_id or new_run_id(),
        config_digest=settings.digest,
        selection=tuple(vm or ()),
        hosts=hosts,
        guests=guests,
        dry_run=dry_run,
        requested_by=_who(),
    )
    typer.echo(f"run {request.run_id} started (config {settings.file})", err=True)
    if worker is False or (
        worker is None and (opts.temporal_address or settings.temporal.mode == "external")
    ):
        typer.echo("no worker in this process: `patchwave serve` must be running for this Temporal", err=True)
    with render.ProgressView() as view:
        summary = _drive(
            opts,
            operations.run(
                settings, request, address=opts.temporal_address, ui=ui, worker=worker, on_progress=view
            ),
            view,
        )
    raise typer.Exit(_finish(summary, view))


@app.command()
def resume(ctx: typer.Context, run: str) -> None:
    """Continue RUN after a crash (finished VMs are not snapshotted or patched again)."""
    from orchestrator import operations

    opts = _opts(ctx)
    settings = opts.settings()
    with render.ProgressView() as view:
        summary = _drive(
            opts, operations.resume(settings, run, address=opts.temporal_address, on_progress=view), view
        )
    raise typer.Exit(_finish(summary, view))


@app.command()
def rollback(ctx: typer.Context, run: str, vm: Names = None) -> None:
    """Revert RUN's recorded snapshots (all, or --vm NAME) and verify health."""
    from orchestrator import operations
    from orchestrator.model import StepStatus

    opts = _opts(ctx)
    outcomes = _drive(
        opts, operations.rollback(opts.settings(), run, tuple(vm or ()), address=opts.temporal_address)
    )
    render.console().print(render.outcomes_table(f"rollback of {run}", outcomes))
    raise typer.Exit(0 if all(o.status is StepStatus.ROLLED_BACK for o in outcomes) else 1)


@app.command()
def approve(
    ctx: typer.Context, run: str, ring: Annotated[str, typer.Option(help="Ring to approve.")] = ""
) -> None:
    """Approve promotion of RUN past its approval gate."""
    from orchestrator import operations

    opts = _opts(ctx)
    current = asyncio.run(operations.approve(opts.settings(), run, ring, address=opts.temporal_address))
    typer.echo(
        f"approved {ring or 'the waiting ring'} of {run}" + (f"; phase {current.phase}" if current else "")
    )


@app.command()
def serve(
    ctx: typer.Context,
    ui: bool = False,
    schedules: Annotated[
        bool, typer.Option(help="Keep one Temporal schedule per site and windowed group in sync (hourly).")
    ] = True,
) -> None:
    """Long-running: the Temporal dev server (embedded), the workers and the schedules, until SIGTERM/SIGINT."""
    from orchestrator import operations

    opts = _opts(ctx)

    def synced(result) -> None:  # a schedules.SyncResult
        typer.echo(
            f"schedules: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.deleted)} deleted, {len(result.unchanged)} unchanged",
            err=True,
        )

    _drive(
        opts,
        operations.serve(
            opts.settings(),
            address=opts.temporal_address,
            ui=ui,
            ready=lambda where: typer.echo(f"patchwave serving on {where}", err=True),
            schedules=schedules,
            on_sync=synced,
        ),
    )


@app.command()
def report(
    ctx: typer.Context,
    format_: Annotated[str, typer.Option("--format", "-f", help="table | json | csv | html")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
) -> None:
    """Compliance report per machine and group: last patched, pending updates, reboots, snapshots."""
    from orchestrator import operations
    from orchestrator.report_render import FORMATS

    if format_ not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    text = operations.report(_opts(ctx).settings(), fmt=format_)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    output.write_text(text, encoding="utf-8")
    typer.echo(f"compliance report ({format_}) written to {output}", err=True)


@app.command()
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Keep the lab up and the temp state dir.")] = False,
    testdriver: Annotated[
        bool, typer.Option(help="The fast demo on libvirt's test driver (a fake guest, no QEMU).")
    ] = False,
) -> None:
    """The main job: a real rollout on the Debian guest lab (3 QEMU guests, one bad update rolled back)."""
    from orchestrator import demo as demo_mod

    if testdriver:
        with render.ProgressView() as view:
            summary, state = asyncio.run(
                demo_mod.run_demo(keep=keep, on_progress=view, log_format=_opts(ctx).log_format)
            )
        typer.echo(f"demo state directory: {state}" + ("" if keep else " (removed)"), err=True)
        raise typer.Exit(_finish(summary, view))
    with render.ProgressView() as view:
        report = asyncio.run(
            demo_mod.run_lab_demo(
                keep=keep,
                on_progress=view,
                log_format=_opts(ctx).log_format,
                echo=lambda line: typer.echo(line, err=True),
            )
        )
    _finish(report.summary, view)
    out = render.console()
    for table in render.demo_tables(report):
        out.print(table)
    where = f"lab kept up in {report.state} (`python -m providers.lab --state-dir {report.state} down`)"
    typer.echo(where if report.kept else f"demo state directory: {report.state} (removed)", err=True)
    if report.as_expected:
        typer.echo(f"demo: as designed: {demo_mod.BREAKING_GUEST} rolled back, the others kept 1.1", err=True)
    raise typer.Exit(0 if report.as_expected else 1)


# ------------------------------------------------------------------------------ lab


def _lab():
    """providers.lab, imported only for these commands (it drives libvirt; the orchestrator never does)."""
    try:
        from providers import lab
    except ImportError as exc:
        raise OrchestratorError(
            f"the guest lab is not available: {exc}", step="lab", fix="pip install 'patchwave[libvirt]'"
        ) from None
    return lab


@lab_app.command("up")
def lab_up(ctx: typer.Context, guests: Annotated[int, typer.Option(help="How many guests.")] = 2) -> None:
    """Build (cached) and boot the Debian guest lab into the state directory."""
    state = _lab().up(_opts(ctx).settings().state.dir, guests)
    typer.echo(render.to_json({"guests": [g.name for g in state.guests], "timings": state.timings}))


@lab_app.command("down")
def lab_down(ctx: typer.Context) -> None:
    """Remove the lab's guests, repo server and overlays."""
    typer.echo(render.to_json({"removed": _lab().down(_opts(ctx).settings().state.dir)}))


@lab_app.command("status")
def lab_status(ctx: typer.Context) -> None:
    """The lab's recorded state plus live checks; exit 1 when it is not up."""
    report = _lab().status(_opts(ctx).settings().state.dir)
    typer.echo(render.to_json(report))
    raise typer.Exit(0 if report.get("up") else 1)


# ------------------------------------------------------------------------------ helpers


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _finish(summary: RunSummary, view: render.ProgressView) -> int:
    from orchestrator.runs import exit_code

    render.console().print(render.summary_table(summary))
    for blocked in view.latest.blocked if view.latest else ():
        typer.echo(f"not patched (blocked): {blocked}", err=True)
    if summary.halted_reason:
        typer.echo(f"halted: {summary.halted_reason}", err=True)
    return exit_code(summary)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every expected error becomes one line on stderr and an exit code.

    Without ``argv`` (the ``patchwave`` script, ``python -m orchestrator.cli``: the command line is
    the process's) the process ends here with that code, without interpreter finalization, which
    the Temporal SDK's threads can crash (see :func:`~orchestrator.cli_errors.end_process`). With
    ``argv`` (tests, embedding) the code is returned."""
    box = SecretBox()
    command = typer.main.get_command(app)
    code = run_guarded(
        lambda: command.main(args=argv, prog_name="patchwave", standalone_mode=False, obj=box), box
    )
    if argv is None:
        end_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
