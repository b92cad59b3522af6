"""``patchwave backups list|verify``: the backups patchwave took before patching, and restore tests.

Thin: parse, call :mod:`orchestrator.backup_fleet`, render. ``list`` reads the fact store only.
``verify`` restore-verifies, now, the newest backup of each VM (or of the ``--vm`` names): restored
into an isolated copy, probed, destroyed, the verdict on record. Exit codes: 0 every backup listed /
verified, 1 a verification failed, 2 bad input (configuration, a ``--vm`` without any backup).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator import backup_fleet as fleet
from orchestrator.cli import render
from orchestrator.cli.options import Names, opts_of
from orchestrator.facts.backups import BackupRecord
from orchestrator.facts.store import open_store

Output = Annotated[str, typer.Option(help="table | json")]


def list_backups(ctx: typer.Context, vm: Names = None, output: Output = "table") -> None:
    """The backups on record: VM, run, where, size, checksum, state, last restore test."""
    _check_output(output)
    settings = opts_of(ctx).settings()
    facts = open_store(settings)
    try:
        rows = fleet.backup_list(facts, names=tuple(vm or ()))
    finally:
        facts.close()
    if output == "json":
        typer.echo(render.to_json(rows))
        raise typer.Exit(0)
    out = render.console()
    if not rows:
        out.print("no backup on record" + (f" for {', '.join(vm)}" if vm else ""))
        raise typer.Exit(0)
    out.print(_list_table(rows))
    raise typer.Exit(0)


def verify(ctx: typer.Context, vm: Names = None, output: Output = "table") -> None:
    """Restore-verify now the newest backup of each VM (isolated copy, probes, destroyed)."""
    _check_output(output)
    settings = opts_of(ctx).settings()
    names = tuple(vm or ())
    rows = fleet.verify_now(settings, names=names, now=datetime.now(UTC))
    missing = [n for n in names if not any(fleet.selected(r.backup, (n,)) for r in rows)]
    if missing:
        raise typer.BadParameter(
            f"no backup on record for {', '.join(missing)}; `patchwave backups list` shows what there is",
            param_hint="--vm",
        )
    if output == "json":
        typer.echo(render.to_json(rows))
    elif not rows:
        render.console().print("no backup on record to verify")
    else:
        render.console().print(_verify_table(rows))
    raise typer.Exit(0 if all(r.ok for r in rows) else 1)


def _check_output(output: str) -> None:
    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")


def _list_table(rows: Sequence[BackupRecord]) -> Table:
    table = Table(title="backups")
    for col in ("vm", "run", "created", "state", "location", "size", "checksum", "verified"):
        table.add_column(col)
    for r in rows:
        verdict = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(r.verify_result, "never")
        verified = f"{r.verified_at[:19]} {verdict} ({r.verified_how})" if r.verified_at else verdict
        state = r.state if r.state != "failed" else f"[red]failed[/red]: {escape(r.error)}"
        table.add_row(str(r.vm), r.run_id, r.created_at[:19], state, escape(r.location), _size(r.size),
                      r.checksum[:16], verified)  # fmt: skip
    return table


def _verify_table(rows: Sequence[fleet.VerifyRow]) -> Table:
    table = Table(title="backups: restore tests")
    for col in ("vm", "backup", "result", "how", "boot s", "detail"):
        table.add_column(col)
    for row in rows:
        v = row.verification
        result = "[green]ok[/green]" if row.ok else "[red]failed[/red]"
        boot = f"{v.boot_s:.1f}" if v is not None and v.boot_s is not None else ""
        table.add_row(str(row.backup.vm), escape(row.backup.location or row.backup.backup_id), result,
                      v.how if v is not None else "", boot, escape(row.error))  # fmt: skip
    return table


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size //= 1024
    return f"{size} TiB"
