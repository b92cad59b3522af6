"""What every command shares: the global options, driving a coroutine that runs workers, the run summary."""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from orchestrator.cli import render
from orchestrator.cli.errors import SecretBox, exit_abandoned
from orchestrator.config.settings import Settings
from orchestrator.model import RunSummary
from orchestrator.operations import load

T = TypeVar("T")
Names = Annotated[list[str] | None, typer.Option("--vm", help="Only these VM/host names (repeatable).")]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait", help="If another run or operation works on the targets, wait for it instead of exiting 2."
    ),
]
WaitTimeout = Annotated[int, typer.Option("--wait-timeout", help="Seconds --wait waits at most.", min=1)]
WAIT_TIMEOUT_S = 3600


def wait_s(wait: bool, timeout_s: int) -> float:
    return float(timeout_s) if wait else 0.0


def notice(message: str) -> None:
    """What a command is told on the way (whose server it uses, what it waits for): one stderr line."""
    typer.echo(message, err=True)


@dataclass(frozen=True)
class Options:
    config: Path
    temporal_address: str
    state_dir: Path | None
    log_format: str
    box: SecretBox
    verbose: bool = False

    def settings(self) -> Settings:
        settings = load(
            self.config, state_dir=self.state_dir, log_format=self.log_format, verbose=self.verbose
        )
        self.box.secrets.extend(settings.secrets)
        self.box.state_dir = str(settings.state.dir)
        return settings


def drive(opts: Options, work: Coroutine[Any, Any, T], view: render.ProgressView | None = None) -> T:
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


def opts_of(ctx: typer.Context) -> Options:
    opts: Options = ctx.obj  # click's Context.obj is untyped; the app callback stores the Options
    return opts


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def finish(summary: RunSummary, view: render.ProgressView) -> int:
    render.console().print(render.summary_table(summary))
    for blocked in view.latest.blocked if view.latest else ():
        typer.echo(f"not patched (blocked): {blocked}", err=True)
    if summary.halted_reason:
        typer.echo(f"halted: {summary.halted_reason}", err=True)
    return int(summary.exit_code)
