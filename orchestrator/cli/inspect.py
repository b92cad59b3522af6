"""The commands that look: inventory, plan, status, snapshots list|cleanup, doctor, report."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator import operations
from orchestrator.assessment import commands as assessing
from orchestrator.cli import assess_views, render
from orchestrator.cli.options import WAIT_TIMEOUT_S, Names, Wait, WaitTimeout, notice, opts_of, wait_s

if TYPE_CHECKING:
    from orchestrator.reconcile import Finding


def inventory(
    ctx: typer.Context, output: Annotated[str, typer.Option(help="table | json")] = "table"
) -> None:
    """Hosts and guests per site, with state and tags."""
    inventories = operations.inventory(opts_of(ctx).settings())
    if output == "json":
        typer.echo(render.to_json(list(inventories)))
        return
    out = render.console()
    for table in render.inventory_tables(inventories):
        out.print(table)


def plan(
    ctx: typer.Context,
    vm: Names = None,
    hosts: bool = True,
    guests: bool = True,
    output: Annotated[str, typer.Option(help="table | json")] = "table",
) -> None:
    """Order, waves, window fit and blockers — what `run` would do; per VM its risk and the CVEs the
    updates its baseline approves would fix (latest assessments)."""
    settings = opts_of(ctx).settings()
    made = operations.plan(settings, selection=tuple(vm or ()), hosts=hosts, guests=guests)
    exposure = assessing.exposure(settings, made)
    if output == "json":
        typer.echo(
            render.to_json(
                {**dataclasses.asdict(made), "exposure": [dataclasses.asdict(e) for e in exposure]}
            )
        )
        return
    out = render.console()
    for table in render.plan_tables(made):
        out.print(table)
    if exposure:
        out.print(assess_views.exposure_table(exposure))


def status(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument()] = None,
    page: Annotated[int, typer.Option(help="Page of the run's VM outcomes (failed first).")] = 1,
) -> None:
    """Recent runs, or one run's state: counters, live progress when its engine is up, a page of outcomes."""
    opts = opts_of(ctx)
    out = render.console()
    if run is None:
        out.print(render.runs_table(operations.list_runs(opts.settings())))
        return
    record, shown, live = asyncio.run(
        operations.status(opts.settings(), run, address=opts.temporal_address, page=page)
    )
    if record is None:  # known to the engine only: not planned (yet)
        typer.echo(render.unplanned_status(live))
    else:
        out.print(render.runs_table([record]))
    if live.progress is not None:
        out.print(render.progress_table(live.progress))
    if link := operations.temporal_ui(opts.settings(), run, address=opts.temporal_address):
        typer.echo(f"Temporal UI: {link}")
    if record is not None:
        out.print(render.counts_line(shown.counts, shown.planned))
        for line in render.promotion_lines(operations.promotion(opts.settings(), run)):
            out.print(line, markup=False)
    for line in operations.gate_decisions(opts.settings(), run):
        typer.echo(f"gate: {line}")
    if shown.outcomes:
        title = f"{run}: recorded outcomes (workflow {live.workflow}), page {shown.page} of {shown.pages}"
        out.print(render.outcomes_table(title, shown.outcomes))
    cve_view = assessing.cve_run(opts.settings(), run, page=page)
    if cve_view is not None:
        for table in assess_views.cve_run_tables(cve_view):
            out.print(table)


def snapshots_list(ctx: typer.Context, run: Annotated[str, typer.Option(help="Only this run.")] = "") -> None:
    """Snapshots patchwave recorded, with state and expiry."""
    render.console().print(render.snapshots_table(operations.snapshots(opts_of(ctx).settings(), run_id=run)))


def snapshots_cleanup(
    ctx: typer.Context,
    run: Annotated[str, typer.Option(help="Only this run.")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Also unexpired ones of --run.")] = False,
    wait: Wait = False,
    wait_timeout: WaitTimeout = WAIT_TIMEOUT_S,
) -> None:
    """Delete expired run snapshots (ownership checked first). Never those of a run that is not
    finished; exit 2 when --run's run is not, or another run or operation works on one of the VMs
    (--wait waits for it)."""
    if all_ and not run:
        raise typer.BadParameter("--all needs --run RUN", param_hint="--all")
    results = operations.cleanup(
        opts_of(ctx).settings(),
        run_id=run,
        include_unexpired=all_,
        wait_s=wait_s(wait, wait_timeout),
        notice=notice,
    )
    for site, result in results.items():
        typer.echo(
            f"{site}: deleted {len(result.deleted)}, already gone {len(result.gone)}, "
            f"not ours (left alone) {len(result.refused)}, in use (run not finished) {len(result.in_use)}"
        )


def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option(help="Clean up what was found (asks per item).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --fix: do not ask.")] = False,
) -> None:
    """Leftovers of dead runs: orphan snapshots, hosts left in maintenance, stale records, expired
    leases. Exit 0 nothing left over, 1 leftovers remain."""
    if yes and not fix:
        raise typer.BadParameter("--yes needs --fix", param_hint="--yes")
    opts = opts_of(ctx)
    out = render.console()

    def confirm(finding: Finding) -> bool:
        return yes or typer.confirm(f"{finding.action} ({finding.kind} {finding.target})?", default=False)

    result = asyncio.run(
        operations.doctor(
            opts.settings(),
            address=opts.temporal_address,
            confirm=confirm if fix else None,
            on_findings=lambda found: out.print(render.findings_table(found)),
            notice=notice,
        )
    )
    for done in result.fixed:
        typer.echo(f"{'fixed' if done.done else 'not fixed'}: {done.finding.target}: {done.note}")
    raise typer.Exit(1 if result.unresolved else 0)


def report(
    ctx: typer.Context,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="table | json | csv | html | openmetrics | prometheus")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Discover every site first (live), then report.")] = False,
) -> None:
    """Compliance report of the whole fleet (latest inventory): machines, groups, hosts, trends and run
    timelines; or its figures as metrics for a node-exporter textfile collector (openmetrics | prometheus)."""
    from orchestrator.metrics.exposition import METRIC_FORMATS
    from orchestrator.reporting.render import FORMATS

    if format_ not in (*FORMATS, *METRIC_FORMATS):
        raise typer.BadParameter(
            f"use one of {', '.join((*FORMATS, *METRIC_FORMATS))}", param_hint="--format"
        )
    text = operations.report(opts_of(ctx).settings(), fmt=format_, refresh=refresh)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    write_whole(output, text)
    typer.echo(f"compliance report ({format_}) written to {output}", err=True)


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a collector reading the file never sees half of it."""
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
