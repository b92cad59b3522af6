"""Bad input and a full disk during real runs on the embedded default (libvirt test driver, fake guests).

* A run that fails before planning (its provider's URI cannot be used): exit 2 with a fix that
  helps; `status RUN` knows the run (from the engine), and after the URI is corrected
  `resume RUN` retries it with the new configuration and patches.
* An on-demand rollback records a fresh assessment: the compliance report shows what the revert
  brought back, not the post-patch "nothing pending".
* The state directory's disk fills up after the snapshot: the run stops with one line saying so
  (it used to hang), nothing is lost, and `resume RUN` finishes it once there is space.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import rollback, start_run, watch
from orchestrator.engine.session import Session
from orchestrator.model import RunRequest, StepStatus
from orchestrator.reporting.compliance import build_report
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

DEADLINE_S = 240.0  # for waiting on subprocesses (not an assertion on durations)


def patchwave(bed: DriverBed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(bed.root), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), *args], cwd=bed.root,
                          env=env, capture_output=True, text=True, timeout=DEADLINE_S, check=False)  # fmt: skip


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


# ------------------------------------------------------------------------------ failed before planning


def test_a_run_that_failed_before_planning_is_known_and_resumed_after_the_fix(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-early-1"),), port=unused_port())
    good = bed.config.read_text()
    bed.config.write_text(good.replace(bed.libvirt_uri, "test:///nonexistent/node.xml"))

    failed = patchwave(bed, "run", "--run-id", "run-early")
    assert failed.returncode == 2, failed.stderr  # a URI libvirt cannot use is bad input
    line = error_line(failed)
    assert "run-early: failed before planning, nothing was changed" in line, line
    assert "providers.td.uri" in line and line.count("(fix: ") == 1, line
    assert "correct the URI" in line and "then `patchwave resume run-early` retries the run" in line, line

    status = patchwave(bed, "status", "run-early")
    assert status.returncode == 0, status.stderr
    assert "run run-early: failed before planning" in status.stdout, status.stdout
    assert "patchwave resume run-early" in status.stdout

    bed.config.write_text(good)  # the fix: a new configuration digest, and nothing was planned before
    resumed = patchwave(bed, "resume", "run-early")
    assert resumed.returncode == 0, resumed.stderr
    assert bed.guests["pw-early-1"].upgrades() == 1
    assert "succeeded" in patchwave(bed, "status", "run-early").stdout


# ------------------------------------------------------------------------------ rollback assessment


async def test_an_on_demand_rollback_records_a_fresh_assessment(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-rb-1"),), port=unused_port(), ttl="2h")
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        request = RunRequest(run_id="run-rb", config_digest=settings.digest, requested_by="e2e")
        summary = await watch(await start_run(running.client, request), lambda _p: None, interval_s=0.2)
        assert [o.status for o in summary.vms] == [StepStatus.SUCCEEDED]
        [patched] = build_report(running.facts, datetime.now(UTC)).machines
        assert patched.pending_total == 0  # the post-patch assessment

        [outcome] = await rollback(running.client, "run-rb", ("pw-rb-1",))

        assert outcome.status is StepStatus.ROLLED_BACK
        assert bed.guests["pw-rb-1"].installed() == {"demo-app": "1.0", "openssl": "3.0.11"}
        [reverted] = build_report(running.facts, datetime.now(UTC)).machines
        assert reverted.pending_total == 2, reverted  # demo-app and openssl are pending again
        assert reverted.assessed_at >= patched.assessed_at and reverted.last_result == "rolled_back"


# ------------------------------------------------------------------------------ the state disk fills up


@pytest.fixture
def state_on_tmpfs(tmp_path: Path) -> Iterator[DriverBed]:
    """A bed whose state directory is a 64 MiB tmpfs (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the state directory needs root")
    bed = build(tmp_path / "bed", (GuestSpec("pw-full-1"),), port=unused_port())
    bed.state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(bed.state)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield bed
    finally:
        for _ in range(50):  # the dev server (SIGTERMed with its owner) may still hold its files
            if subprocess.run(["umount", str(bed.state)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(bed.state)], check=False)


def snapshotted(bed: DriverBed) -> bool:
    db = bed.state / "facts.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return bool(conn.execute("SELECT COUNT(*) FROM snapshots WHERE snapshot_id != ''").fetchone()[0])
    except sqlite3.Error:
        return False


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_state_disk_that_fills_up_stops_the_run_with_the_reason_and_resume_finishes(state_on_tmpfs) -> None:
    bed = state_on_tmpfs
    bed.guests["pw-full-1"].linger_after_apply(3)  # the disk fills while the guest is being patched
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(bed.root), "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "run", "--run-id", "run-full"]
    proc = subprocess.Popen(
        argv, cwd=bed.root, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + DEADLINE_S
    while not snapshotted(bed):
        assert proc.poll() is None and time.monotonic() < deadline, "no snapshot was recorded"
        time.sleep(0.1)
    filler = fill(bed.state)
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)  # it used to hang here for ever
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("`patchwave run` kept running on a full state disk")
    assert proc.returncode == 1, err
    assert "Traceback" not in out + err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"the disk of the state directory {bed.state} is full" in line, line
    assert "free space on that disk, then `patchwave resume run-full` continues the run" in line, line

    filler.unlink()
    resumed = patchwave(bed, "resume", "run-full")
    assert resumed.returncode == 0, resumed.stderr
    assert bed.guests["pw-full-1"].upgrades() == 1  # patched once: nothing lost, nothing redone
    assert bed.guests["pw-full-1"].installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
