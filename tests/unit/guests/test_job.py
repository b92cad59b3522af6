"""Detached patch jobs (orchestrator/guests/job.py): ids, the shell text, and its output.

The shell itself runs for real in tests/e2e/engine/test_integrity.py (busybox, setsid) and on the
Debian lab (systemd-run); here: what the builders promise and how every status line parses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.guests import job as jobs
from orchestrator.guests.job import JobState, JobStatus

JOB = jobs.job_id("run-1", "vm:lab:abc", 1)


def test_job_ids_are_deterministic_per_run_step_and_intent() -> None:
    assert JOB == jobs.job_id("run-1", "vm:lab:abc", 1)
    assert len({JOB, jobs.job_id("run-1", "vm:lab:abc", 2), jobs.job_id("run-2", "vm:lab:abc", 1)}) == 3
    assert JOB.startswith("pw-") and len(JOB) == 19


def test_a_foreign_id_never_reaches_the_shell() -> None:
    for bad in ("pw-../../etc", "x; rm -rf /", "pw-0123"):
        with pytest.raises(ValueError):
            jobs.status_command(bad)


def test_the_start_claims_once_and_detaches_with_systemd_or_setsid() -> None:
    text = jobs.start_command(JOB, "apt-get -y upgrade")
    assert f"( set -C; : > {jobs.JOB_DIR}/{JOB}.start )" in text  # a second start finds the claim
    assert f"systemd-run --quiet --collect --unit=patchwave-{JOB}" in text
    assert "setsid /bin/sh" in text and "nohup /bin/sh" in text
    assert f"rm -f {jobs.JOB_DIR}/{JOB}.start; exit $rc" in text  # a failed start can be retried
    script = jobs.job_script(JOB, "apt-get -y upgrade")
    assert script.index(".pid") < script.index("apt-get") < script.index(".exit.tmp && mv -f")


@pytest.mark.parametrize(
    ("output", "status"),
    [
        ("state=absent\n", JobStatus(JobState.ABSENT)),
        ("state=running\n", JobStatus(JobState.RUNNING)),
        ("state=lost\n", JobStatus(JobState.LOST)),
        ("state=finished\nexit=0\n", JobStatus(JobState.FINISHED, 0)),
        ("state=finished\nexit=100\n", JobStatus(JobState.FINISHED, 100)),
    ],
)
def test_status_lines_parse(output: str, status: JobStatus) -> None:
    assert jobs.parse_status(output) == status
    assert status.done is (status.state in (JobState.FINISHED, JobState.LOST))


@pytest.mark.parametrize("output", ["", "state=weird\n", "state=finished\nexit=\n", "garbage"])
def test_anything_else_is_refused(output: str) -> None:
    with pytest.raises(ValueError):
        jobs.parse_status(output)


def _sh(command: str) -> str:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True).stdout


@pytest.mark.timeout(60)
def test_a_waiting_look_answers_when_the_job_ends_not_at_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look that waits in the guest (a real /bin/sh here): the job's end is seen as soon as its exit
    file appears — a bound of an hour would time this test out — and a job still running is reported
    running once the bound passed."""
    monkeypatch.setattr(jobs, "JOB_DIR", str(tmp_path))
    boot = Path("/proc/sys/kernel/random/boot_id").read_text()
    (tmp_path / f"{JOB}.start").write_text(boot)
    sleeper = subprocess.Popen(["/bin/sh", "-c", "sleep 30; :", JOB])  # the job id in its command line
    try:
        (tmp_path / f"{JOB}.pid").write_text(f"{sleeper.pid}\n")
        assert jobs.parse_status(_sh(jobs.wait_command(JOB, 0.3))) == JobStatus(JobState.RUNNING)
        finish = f"sleep 0.5; echo 0 > {tmp_path}/{JOB}.exit.tmp && mv -f {tmp_path}/{JOB}.exit.tmp {tmp_path}/{JOB}.exit"
        subprocess.Popen(["/bin/sh", "-c", finish])
        assert jobs.parse_status(_sh(jobs.wait_command(JOB, 3600))) == JobStatus(JobState.FINISHED, 0)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_waiting_look_is_the_status_look_once_the_job_ended() -> None:
    text = jobs.wait_command(JOB, 5)
    assert text.endswith(jobs.status_command(JOB)) and "[ $i -lt 50 ]" in text
    assert "[ $i -lt 0 ]" in jobs.wait_command(JOB, 0)
