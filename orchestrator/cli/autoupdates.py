"""``patchwave autoupdates plan|apply|status``: the guests' own automatic updaters.

Thin: parse, call :mod:`orchestrator.autoupdate_fleet`, render. Exit codes: 0 every VM is done
(plan: planned; apply: applied; status: compliant), 1 some VM failed (or, for status, drifts or is
paused by a run), 2 bad input (configuration, unknown ``--vm`` names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator import autoupdate_fleet as fleet
from orchestrator.autoupdate_fleet import VmAutoUpdate
from orchestrator.cli import render
from orchestrator.cli.options import Names, opts_of

Output = Annotated[str, typer.Option(help="table | json")]


def plan(ctx: typer.Context, vm: Names = None, output: Output = "table") -> None:
    """What `autoupdates apply` would write and switch on each VM (reads only /etc/os-release)."""
    rows = fleet.plan_autoupdates(opts_of(ctx).settings(), selection=tuple(vm or ()))
    _show(rows, output, _plan_table)
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)


def apply(ctx: typer.Context, vm: Names = None, output: Output = "table") -> None:
    """Configure each VM's automatic updater as its group's \\[autoupdates] says (journaled)."""
    rows = fleet.apply_autoupdates(opts_of(ctx).settings(), selection=tuple(vm or ()))
    _show(rows, output, _apply_table)
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)


def status(ctx: typer.Context, vm: Names = None, output: Output = "table") -> None:
    """Per VM: updater installed/enabled, drift from the policy, last automatic run, pause."""
    rows = fleet.autoupdate_status(opts_of(ctx).settings(), selection=tuple(vm or ()))
    _show(rows, output, _status_table)
    compliant = all(
        r.ok and r.status is not None and r.status.compliant and r.status.paused is None for r in rows
    )
    raise typer.Exit(0 if compliant else 1)


def _show(rows: Sequence[VmAutoUpdate], output: str, table: object) -> None:
    if output == "json":
        typer.echo(render.to_json(list(rows)))
        return
    if output != "table":
        raise typer.BadParameter("use table or json", param_hint="--output")
    out = render.console()
    if not rows:
        out.print("no VM is targeted ([targets] or --vm)")
        return
    out.print(table(rows))  # type: ignore[operator]
    for row in rows:
        if row.error:
            typer.echo(f"{row.vm}: {row.error}", err=True)


def _plan_table(rows: Sequence[VmAutoUpdate]) -> Table:
    table = Table(title="automatic updates: plan")
    for col in ("vm", "group", "mode", "os", "updater", "files", "units", "holds", "notes"):
        table.add_column(col)
    for r in rows:
        c = r.change
        if c is None:
            table.add_row(r.vm.name, r.group, r.mode, r.os, "", "", "", "", f"[red]{escape(r.error)}[/red]")
            continue
        files = [f.path for f in c.files] + [f"-{p}" for p in c.remove]
        units = [f"+{u}" for u in c.enable] + [f"-{u}" for u in c.disable]
        notes = [*([f"installs {c.updater} if missing"] if c.install else []), *c.notes]
        table.add_row(r.vm.name, r.group, r.mode, r.os, c.updater, "\n".join(files), "\n".join(units),
                      " ".join(c.holds), escape("\n".join(notes)))  # fmt: skip
    return table


def _apply_table(rows: Sequence[VmAutoUpdate]) -> Table:
    table = Table(title="automatic updates: apply")
    for col in ("vm", "group", "mode", "result", "installed", "changed", "units"):
        table.add_column(col)
    for r in rows:
        if r.error:
            table.add_row(r.vm.name, r.group, r.mode, "[red]failed[/red]", "", escape(r.error), "")
        elif r.report is None:
            table.add_row(r.vm.name, r.group, r.mode, "nothing to do", "", "", "")
        else:
            rep = r.report
            result = "[green]changed[/green]" if rep.changed_anything else "unchanged"
            changed = [*rep.changed, *(f"-{p}" for p in rep.removed)]
            table.add_row(r.vm.name, r.group, r.mode, result, "yes" if rep.installed else "",
                          "\n".join(changed), "\n".join(rep.units))  # fmt: skip
    return table


def _status_table(rows: Sequence[VmAutoUpdate]) -> Table:
    table = Table(title="automatic updates: status")
    for col in ("vm", "mode", "updater", "installed", "enabled", "drift", "last run", "paused by"):
        table.add_column(col)
    for r in rows:
        s = r.status
        if s is None:
            table.add_row(r.vm.name, r.mode, "", "", "", f"[red]{escape(r.error)}[/red]", "", "")
            continue
        drift = "\n".join(str(d) for d in s.drift) or "[green]none[/green]"
        last = s.last_run
        run = f"{last.started_at} {last.result}".strip() if last.started_at else "never"
        if last.error:
            run += f": {last.error}"
        table.add_row(r.vm.name, s.mode, f"{s.updater} {s.version}".strip(), _yes(s.installed),
                      _yes(s.enabled and s.active), escape(drift) if s.drift else drift, escape(run),
                      s.paused.run_id if s.paused else "")  # fmt: skip
    return table


def _yes(value: bool) -> str:
    return "yes" if value else "[yellow]no[/yellow]"
