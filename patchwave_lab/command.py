"""Running the host tools the lab builds with (dpkg-deb, mkfs.ext4, qemu-img, ...)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.environment import child_environment
from patchwave_lab.errors import LabError


def run_command(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``argv`` (allow-listed environment plus ``env``) and return its stdout; a non-zero exit
    raises :class:`LabError` with stderr's tail."""
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=child_environment(env), capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed (run .ci/setup-lab.sh)", code="tool") from exc
    if proc.returncode != 0:
        raise LabError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}", code="tool")
    return proc.stdout
