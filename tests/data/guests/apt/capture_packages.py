"""Re-create the ``packages-*`` apt captures (provenance record; not run by the tests).

    mmdebstrap --variant=apt --mode=root bookworm /tmp/pw-assess-cap/chroot
    chroot /tmp/pw-assess-cap/chroot sh -c 'apt-get update && apt-get install -y --no-install-recommends cron less \
        && apt-get remove -y cron'         # cron stays in dpkg's database as "rc" (config files only)
    .venv/bin/python tests/data/guests/apt/capture_packages.py /tmp/pw-assess-cap/chroot

``packages-chroot`` is the whole-system listing ``Apt.packages_command()`` runs (``dpkg-query -W -f``
with the binary and source package, both versions and the state) inside that throwaway chroot
through the real ``LocalChannel(root=...)``. Outputs are written as they came; expected.json is written by the
current parser and was reviewed by hand.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.packages.apt import Apt

HERE = Path(__file__).resolve().parent


def capture(name: str, root: Path, source: str) -> None:
    command = Apt().packages_command()
    result = LocalChannel(root=root).run(command, timeout=60)
    case = HERE / name
    case.mkdir(exist_ok=True)
    (case / "stdout.txt").write_text(result.stdout)
    (case / "stderr.txt").write_text(result.stderr)
    meta = {"command": command, "exit_code": result.exit_code, "parser": "packages", "source": source}
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    parsed = [dataclasses.asdict(p) for p in Apt().parse_packages(result)]
    (case / "expected.json").write_text(json.dumps({"result": parsed}, indent=2) + "\n")


if __name__ == "__main__":
    capture("packages-chroot", Path(sys.argv[1]),
            "throwaway bookworm chroot (mmdebstrap --variant=apt), cron installed then removed (rc)")  # fmt: skip
