"""`patchwave serve` supervises the embedded Temporal server it started: when that server dies
(SIGKILL, OOM killer) serve ends at once with one clear line and exit code 1, so its supervisor
(systemd) restarts it, instead of staying up with workers that poll a dead address forever.

(`run`/`resume` are covered with a real run in tests/e2e/test_resume.py; the crash-injection
campaign checks the same after every server kill.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

#: A deadline for "never happened", not a timing assertion.
DEADLINE_S = 120.0


def wait_until(what: str, predicate, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"serve exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"gave up waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def exit_code(proc: subprocess.Popen[str], log: Path, failure: str) -> int:
    """``proc``'s exit code; a test failure saying ``failure`` (with the log) if it does not end."""
    try:
        return proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{failure}:\n{log.read_text()[-3000:]}")


def start_serve(tmp_path: Path) -> tuple[DriverBed, subprocess.Popen[str], Path]:
    """`patchwave serve` (embedded server, no schedules) on a one-guest test-driver bed."""
    bed = build(tmp_path / "bed", (GuestSpec("pw-web-1"),), port=unused_port())
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "serve", "--no-schedules"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return bed, proc, log


def test_serve_ends_with_a_clear_error_when_its_server_is_killed(tmp_path: Path) -> None:
    bed, proc, log = start_serve(tmp_path)
    pid_file = bed.state / "temporal.db.pid"
    wait_until("serve to be ready", lambda: "patchwave serving on" in log.read_text(), proc, log)
    server, owner = (int(x) for x in pid_file.read_text().split())
    assert owner == proc.pid

    os.kill(server, signal.SIGKILL)
    code = exit_code(proc, log, "serve kept running after its Temporal server died")
    text = log.read_text()
    assert code == 1, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("error: serve: the embedded Temporal server") and "killed by signal 9" in last, (
        last
    )
    assert "start `patchwave serve` again" in last, last
    assert "Traceback" not in text


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    bed, proc, log = start_serve(tmp_path)
    wait_until("serve to be ready", lambda: "patchwave serving on" in log.read_text(), proc, log)
    server = int((bed.state / "temporal.db.pid").read_text().split()[0])
    proc.send_signal(signal.SIGTERM)
    code = exit_code(proc, log, "serve did not stop on SIGTERM")
    assert code == 0, log.read_text()[-3000:]
    assert not (bed.state / "temporal.db.pid").exists()  # it stopped the server it started
    assert not Path(f"/proc/{server}").exists() or "Z" in Path(f"/proc/{server}/stat").read_text().split()[2]
