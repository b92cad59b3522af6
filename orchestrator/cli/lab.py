"""The lab commands: demo, lab up|down|status (the only CLI module that imports patchwave_lab, lazily)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from orchestrator.cli import render
from orchestrator.cli.options import finish, opts_of
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from patchwave_lab.state import LabState


class _Lab(Protocol):
    """What these commands use of the lab's control module (``patchwave_lab.control``)."""

    def up(
        self, state_dir: Path, guests: int, *, on_stage: Callable[[str], None] | None = None
    ) -> LabState: ...

    def down(self, state_dir: Path) -> list[str]: ...

    def status(self, state_dir: Path) -> dict[str, Any]: ...


def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option(help="Keep the lab up and the temp state dir.")] = False,
    testdriver: Annotated[
        bool, typer.Option(help="The fast demo on libvirt's test driver (a fake guest, no QEMU).")
    ] = False,
) -> None:
    """The main job: a real rollout on the Debian guest lab (3 QEMU guests, one bad update rolled back)."""
    from patchwave_lab import demo as demo_mod

    if testdriver:
        with render.ProgressView() as view:
            summary, state = asyncio.run(
                demo_mod.run_demo(keep=keep, on_progress=view, log_format=opts_of(ctx).log_format)
            )
        typer.echo(f"demo state directory: {state}" + ("" if keep else " (removed)"), err=True)
        raise typer.Exit(finish(summary, view))
    with render.ProgressView() as view:
        report = asyncio.run(
            demo_mod.run_lab_demo(
                keep=keep,
                on_progress=view,
                log_format=opts_of(ctx).log_format,
                echo=lambda line: typer.echo(line, err=True),
            )
        )
    finish(report.summary, view)
    out = render.console()
    for table in render.demo_tables(report):
        out.print(table)
    where = f"lab kept up in {report.state} (`python -m patchwave_lab --state-dir {report.state} down`)"
    typer.echo(where if report.kept else f"demo state directory: {report.state} (removed)", err=True)
    if report.as_expected:
        typer.echo(f"demo: as designed: {demo_mod.BREAKING_GUEST} rolled back, the others kept 1.1", err=True)
    raise typer.Exit(0 if report.as_expected else 1)


def _lab() -> _Lab:
    """providers.lab, imported only for these commands (it drives libvirt; the orchestrator never does)."""
    try:
        from patchwave_lab import control as lab
    except ImportError as exc:
        raise OrchestratorError(
            f"the guest lab is not available: {exc}", step="lab", fix="pip install 'patchwave[libvirt]'"
        ) from None
    return lab


def lab_up(ctx: typer.Context, guests: Annotated[int, typer.Option(help="How many guests.")] = 2) -> None:
    """Build (cached) and boot the Debian guest lab into the state directory."""
    state_dir = opts_of(ctx).settings().state.dir
    with render.StageView("lab up") as view:
        state = _lab().up(state_dir, guests, on_stage=view)
    typer.echo(render.to_json({"guests": [g.name for g in state.guests], "timings": state.timings}))


def lab_down(ctx: typer.Context) -> None:
    """Remove the lab's guests, repo server and overlays."""
    typer.echo(render.to_json({"removed": _lab().down(opts_of(ctx).settings().state.dir)}))


def lab_status(ctx: typer.Context) -> None:
    """The lab's recorded state plus live checks; exit 1 when it is not up."""
    report = _lab().status(opts_of(ctx).settings().state.dir)
    typer.echo(render.to_json(report))
    raise typer.Exit(0 if report.get("up") else 1)
