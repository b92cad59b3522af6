"""The ``patchwave`` command line (Typer + rich). Thin: parse, call the library, render, exit code.

Exit codes: 0 all succeeded, 1 some VMs rolled back/failed (or a runtime error), 2 bad input
(configuration, names, unreachable Temporal address), 3 the run halted on its failure budget.
Every expected error is one line on stderr — never a traceback, never a secret.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import assess, autoupdates, backups, inspect, lab, runs, starter
from orchestrator.cli.errors import SecretBox, end_process, run_guarded
from orchestrator.cli.options import Options

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Virtualization-aware patch orchestration on Temporal.",
)
snapshots_app = typer.Typer(no_args_is_help=True, help="Snapshots recorded by patchwave.")
lab_app = typer.Typer(no_args_is_help=True, help="The local Debian guest lab (libvirt + QEMU).")
autoupdates_app = typer.Typer(
    no_args_is_help=True, help="The guests' automatic security updates (unattended-upgrades, dnf-automatic)."
)
feeds_app = typer.Typer(no_args_is_help=True, help="Vulnerability feeds cached in the fact store.")
backups_app = typer.Typer(no_args_is_help=True, help="Backups taken before patching, verified by restore.")
app.add_typer(snapshots_app, name="snapshots")
app.add_typer(lab_app, name="lab")
app.add_typer(autoupdates_app, name="autoupdates")
app.add_typer(feeds_app, name="feeds")
app.add_typer(backups_app, name="backups")


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
    state_dir: Annotated[
        Path | None, typer.Option(help="Override the state directory (\\[state] dir in the config).")
    ] = None,
    log_format: Annotated[
        str, typer.Option(help="auto | json | console; json: every event on stderr (machine mode)")
    ] = "",
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Every event on stderr too (default: warnings and errors)."),
    ] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    if log_format not in ("", "auto", "json", "console"):
        raise typer.BadParameter("use auto, json or console", param_hint="--log-format")
    box = ctx.obj if isinstance(ctx.obj, SecretBox) else SecretBox()
    ctx.obj = Options(config, temporal_address, state_dir, log_format, box, verbose)


for command in (inspect.inventory, inspect.plan, inspect.status, inspect.doctor, runs.run, runs.resume,
                runs.rollback, runs.approve, runs.serve, inspect.report, lab.demo, assess.assess, starter.init):  # fmt: skip
    app.command()(command)
snapshots_app.command("list")(inspect.snapshots_list)
snapshots_app.command("cleanup")(inspect.snapshots_cleanup)
lab_app.command("up")(lab.lab_up)
lab_app.command("down")(lab.lab_down)
lab_app.command("status")(lab.lab_status)
autoupdates_app.command("plan")(autoupdates.plan)
autoupdates_app.command("apply")(autoupdates.apply)
autoupdates_app.command("status")(autoupdates.status)
feeds_app.command("load")(assess.feeds_load)
feeds_app.command("list")(assess.feeds_list)
backups_app.command("list")(backups.list_backups)
backups_app.command("verify")(backups.verify)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every expected error becomes one line on stderr and an exit code.

    Without ``argv`` (the ``patchwave`` script, ``python -m orchestrator.cli``: the command line is
    the process's) the process ends here with that code, without interpreter finalization, which
    the Temporal SDK's threads can crash (see :func:`~orchestrator.cli.errors.end_process`). With
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
