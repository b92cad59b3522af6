"""`patchwave` as real processes on a test-driver bed: started, awaited, their output read.

Each process writes stdout and stderr to ``<bed>/<label>.log``. Deadlines here mean "never
happened" (the test fails with the log), not timing assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.testbed import DriverBed

DEADLINE_S = 180.0
_started: list[subprocess.Popen[str]] = []


def kill_leftovers() -> None:
    """Kill the processes :func:`start` started that still run (a failed test's): by their own
    handles, never by name. Their embedded servers die with them (``PR_SET_PDEATHSIG``)."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass
class Patchwave:
    proc: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait(self, what: str = "patchwave to exit", *, deadline_s: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"gave up waiting for {what}:\n{self.output()[-4000:]}")

    def until(self, what: str, predicate: Callable[[], bool], *, deadline_s: float = DEADLINE_S) -> None:
        """Wait for ``predicate`` while this process runs (its exit first fails the test)."""
        deadline = time.monotonic() + deadline_s
        while not predicate():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"patchwave exited ({self.proc.returncode}) before {what}:\n{self.output()[-4000:]}"
                )
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"gave up waiting for {what}:\n{self.output()[-4000:]}")
            time.sleep(0.1)


def start(
    bed: DriverBed, *args: str, label: str = "", env: Mapping[str, str] = {}, config: Path | None = None
) -> Patchwave:
    """``patchwave -c <config> ARGS`` (the bed's config by default) as a process."""
    log = bed.root / f"{label or args[0]}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(config or bed.config), *args],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    _started.append(proc)
    return Patchwave(proc, log)


def until(what: str, predicate: Callable[[], bool], *, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.1)
