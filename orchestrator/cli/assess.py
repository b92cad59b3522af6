"""The vulnerability commands: ``assess`` and ``feeds load|list`` (:mod:`orchestrator.assessment.commands`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer

from orchestrator.assessment import commands
from orchestrator.assessment.report import to_json
from orchestrator.assessment.vm import VmResult
from orchestrator.cli import assess_views, render
from orchestrator.cli.options import Names, opts_of, who

OUTPUTS = ("table", "json", "csv")
VIEWS = ("cve", "vm")


def _choice(value: str, choices: tuple[str, ...], hint: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"use one of {', '.join(choices)}", param_hint=hint)
    return value


def assess(
    ctx: typer.Context,
    vm: Names = None,
    output: Annotated[str, typer.Option(help="table | json | csv")] = "table",
    view: Annotated[
        str, typer.Option(help="cve (per CVE: machines affected) | vm (per VM); table and csv")
    ] = "cve",
    refresh: Annotated[
        bool,
        typer.Option(help="Refresh the guests' package lists first (apt-get update, dnf/zypper refresh)."),
    ] = False,
    cached: Annotated[
        bool, typer.Option(help="Scan nothing: show the latest assessments on record.")
    ] = False,
) -> None:
    """Scan VMs read-only through their guest channels (installed packages, pending updates), match the
    cached feeds, record the assessment and show it per CVE or per VM. Exit 1 when no VM could be assessed."""
    _choice(output, OUTPUTS, "--output")
    _choice(view, VIEWS, "--view")
    if cached and refresh:
        raise typer.BadParameter("--refresh scans the guests; --cached scans nothing", param_hint="--refresh")
    settings = opts_of(ctx).settings()
    selection = tuple(vm or ())
    if cached:
        report = commands.cached(settings, selection=selection)
    else:
        progress = _progress if output == "table" else None
        report = commands.assess(
            settings, selection=selection, refresh=refresh, requested_by=who(), on_result=progress
        )
    if output == "json":
        typer.echo(to_json(report))
    elif output == "csv":
        typer.echo(assess_views.report_csv(report, view), nl=False)
    else:
        render.console().print(assess_views.report_table(report, view))
        for line in assess_views.summary_lines(report):
            typer.echo(line, err=True)
    if report.vms and not any(r.assessed for r in report.vms):
        raise typer.Exit(1)


def _progress(result: VmResult) -> None:
    if result.assessed:
        typer.echo(f"assessed {result.vm}: {result.findings} finding(s), {result.kev} known exploited, "
                   f"{result.pending} update(s) pending", err=True)  # fmt: skip
    else:
        typer.echo(f"{result.vm}: {result.note}", err=True)


def feeds_load(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files, directories, OSV all.zip archives or https:// URLs ([assess] feeds if none)."
        ),
    ] = None,
) -> None:
    """Load vulnerability feeds (OSV, Debian Security Tracker, CISA KEV) into the fact store's cache."""
    settings = opts_of(ctx).settings()
    commands.load_feeds(settings, tuple(sources or ()), on_loaded=lambda info: typer.echo(
        f"loaded {info.kind} {info.source}: {info.count} record(s), version {info.version or 'unknown'}"
    ))  # fmt: skip


def feeds_list(
    ctx: typer.Context, output: Annotated[str, typer.Option(help="table | json")] = "table"
) -> None:
    """The cached feeds: kind, source, the feed's own version, records, when loaded, and STALE ones."""
    _choice(output, ("table", "json"), "--output")
    found = commands.feed_status(opts_of(ctx).settings())
    if output == "json":
        typer.echo(json.dumps([dataclasses.asdict(f) for f in found], indent=2))
        return
    render.console().print(assess_views.feeds_table(found))
    for f in found:
        if f.stale:
            typer.echo(f"stale: {f.info.kind} {f.info.source} was loaded {f.info.loaded_at}; load it again "
                       "(`patchwave feeds load`)", err=True)  # fmt: skip
