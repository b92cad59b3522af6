"""``python -m patchwave_lab up|down|status|publish`` — a thin command line over patchwave_lab.control."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from patchwave_lab import control as lab
from patchwave_lab import repo
from patchwave_lab.state import state_file
from providers.errors import ProviderError


def _default_state_dir() -> Path:
    return Path(os.environ.get("PATCHWAVE_STATE_DIR") or Path.home() / ".local/state/patchwave")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m patchwave_lab", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=_default_state_dir(),
        help="lab files go to STATE_DIR/lab (default: $PATCHWAVE_STATE_DIR or ~/.local/state/patchwave)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build/cache the image, start the repo and the guests")
    up.add_argument("--guests", type=int, default=2)
    up.add_argument("--uri", default=lab.DEFAULT_URI)
    sub.add_parser("down", help="remove the guests, stop the repo server, delete overlays")
    sub.add_parser("status", help="print lab.json plus live checks as JSON")
    publish = sub.add_parser("publish", help="choose the update the repo offers (all guests, or one)")
    publish.add_argument("update", choices=sorted([*repo.UPDATES, *repo.STACKED]))
    publish.add_argument("--guest", help="only this guest's view (e.g. pw-lab-2)")
    publish.add_argument("--pocket", choices=sorted(repo.POCKETS), default="main", help="main or security")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        if args.command == "up":
            state = lab.up(args.state_dir, args.guests, uri=args.uri)
            print(
                json.dumps(
                    {"state_file": str(state_file(args.state_dir)), "timings": state.timings}, indent=2
                )
            )
        elif args.command == "down":
            print(json.dumps({"removed": lab.down(args.state_dir)}))
        elif args.command == "status":
            report = lab.status(args.state_dir)
            print(json.dumps(report, indent=2))
            return 0 if report["up"] else 1
        else:
            state = lab.publish(args.state_dir, args.update, args.guest, pocket=args.pocket)
            views = repo.published(Path(state.repo_dir), args.pocket)
            print(json.dumps({"views": views, "pocket": args.pocket, "version": state.updates[args.update]}))
    except ProviderError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
