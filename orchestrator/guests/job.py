"""Detached package-manager jobs: an apply that no channel, worker or timeout can kill.

A patch runs as a *job* in the guest, detached from the channel that started it: under systemd as a
transient unit (``systemd-run --unit=patchwave-<job> --collect``: its own cgroup, outside the SSH
session and qemu-ga's exec), elsewhere (the test driver's busybox guests) with ``setsid`` (or
``nohup``). So a channel timeout, a dropped SSH session, a killed worker or a guest-agent exec
timeout never kills dpkg in mid-configure. The job writes under :data:`JOB_DIR`:

* ``<job>.start`` — the boot id at start (a claim made with ``set -C``: a job is started once);
* ``<job>.pid`` — the job's shell, written first thing;
* ``<job>.out`` / ``<job>.err`` — the command's stdout and stderr;
* ``<job>.exit`` — its exit status, written (atomically) when it ends.

The job id is deterministic per (run, step, patch intent): a retried or resumed activity finds the
job the earlier attempt started. Pure: these functions build shell text and parse its output.
"""

from __future__ import annotations

import enum
import hashlib
import re
import shlex
from dataclasses import dataclass

JOB_DIR = "/var/lib/patchwave/jobs"
_JOB_ID = re.compile(r"^pw-[0-9a-f]{16}$")
_EOF = "PATCHWAVE_JOB_EOF"


class JobState(enum.StrEnum):
    ABSENT = "absent"  # never started (or the disk was reverted since)
    RUNNING = "running"  # started in this boot, its process alive (or about to write its pid)
    FINISHED = "finished"  # the exit file is there
    LOST = "lost"  # started, but neither running nor finished (killed, or the guest rebooted)


@dataclass(frozen=True, slots=True)
class JobStatus:
    state: JobState
    exit_code: int | None = None  # FINISHED only

    @property
    def done(self) -> bool:
        return self.state in (JobState.FINISHED, JobState.LOST)


def job_id(run_id: str, step_id: str, attempt: int) -> str:
    """The deterministic id of (run, step)'s ``attempt``-th patch job (``pw-`` + 16 hex digits)."""
    digest = hashlib.sha256(f"{run_id}\0{step_id}\0{attempt}".encode()).hexdigest()
    return f"pw-{digest[:16]}"


def _path(job: str, suffix: str) -> str:
    if not _JOB_ID.match(job):
        raise ValueError(f"not a patchwave job id: {job!r}")
    return f"{JOB_DIR}/{job}.{suffix}"


def job_script(job: str, command: str) -> str:
    """The script the job runs: pid first, then ``command`` with its output in files, exit last."""
    exit_path = _path(job, "exit")
    return (
        "#!/bin/sh\n"
        f"echo $$ > {_path(job, 'pid')}\n"
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        " LC_ALL=C DEBIAN_FRONTEND=noninteractive\n"
        f"( {command}\n) > {_path(job, 'out')} 2> {_path(job, 'err')} < /dev/null\n"
        f"echo $? > {exit_path}.tmp && mv -f {exit_path}.tmp {exit_path}\n"
    )


def start_command(job: str, command: str) -> str:
    """Shell text that starts ``command`` as detached job ``job`` unless it was started already.

    Prints ``job=started <how>`` or ``job=exists``; a non-zero exit means it could not start (the
    claim is released again, so a retry can)."""
    start, script = _path(job, "start"), _path(job, "sh")
    unit = f"patchwave-{job}"
    return (
        f"mkdir -p {JOB_DIR} || exit $?\n"
        f"if ! ( set -C; : > {start} ) 2>/dev/null; then echo job=exists; exit 0; fi\n"
        f"cat /proc/sys/kernel/random/boot_id > {start} 2>/dev/null\n"
        f"cat > {script} <<'{_EOF}'\n{job_script(job, command)}{_EOF}\n"
        "if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then\n"
        f"  systemd-run --quiet --collect --unit={unit} --description='patchwave patch job {job}'"
        f" -p KillMode=process /bin/sh {script} || {{ rc=$?; rm -f {start}; exit $rc; }}\n"
        "  echo job=started systemd\n"
        "elif command -v setsid >/dev/null 2>&1; then\n"
        f"  setsid /bin/sh {script} </dev/null >/dev/null 2>&1 &\n"
        "  echo job=started setsid\n"
        "else\n"
        f"  nohup /bin/sh {script} </dev/null >/dev/null 2>&1 &\n"
        "  echo job=started nohup\n"
        "fi\n"
    )


def status_command(job: str) -> str:
    """Shell text printing ``state=<JobState>`` (and ``exit=<n>`` when finished)."""
    start, pid_path, exit_path = _path(job, "start"), _path(job, "pid"), _path(job, "exit")
    return (
        f"if [ -e {exit_path} ]; then echo state=finished; echo exit=$(cat {exit_path}); exit 0; fi\n"
        f"if [ ! -e {start} ]; then echo state=absent; exit 0; fi\n"
        f"boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); started=$(cat {start})\n"
        f'if [ "$boot" != "$started" ]; then echo state=lost; exit 0; fi\n'
        f"pid=$(cat {pid_path} 2>/dev/null)\n"
        'if [ -z "$pid" ]; then echo state=running; exit 0; fi\n'  # claimed, the script not yet begun
        f'if kill -0 "$pid" 2>/dev/null && {{ [ ! -r /proc/$pid/cmdline ] || tr "\\0" " " < /proc/$pid/cmdline | grep -q {job}; }};'
        " then echo state=running; else echo state=lost; fi\n"
    )


#: How often the guest looks for the job's exit file while :func:`wait_command` waits.
WAIT_STEP_S = 0.1


def wait_command(job: str, up_to_s: float) -> str:
    """:func:`status_command`, once the job's exit file is there or ``up_to_s`` seconds passed: the
    guest looks every :data:`WAIT_STEP_S` (every second where ``sleep`` takes no fraction), so one
    channel round trip sees the job's end within a tenth of a second — a poll from the orchestrator
    every few seconds saw it up to a whole interval late (1.5 s per VM on average at 3 s)."""
    exit_path = _path(job, "exit")
    rounds = max(0, round(up_to_s / WAIT_STEP_S))
    return (
        f"if [ ! -e {exit_path} ]; then i=0; while [ ! -e {exit_path} ] && [ $i -lt {rounds} ]; do"
        f" sleep {WAIT_STEP_S} 2>/dev/null || {{ sleep 1; i=$((i + 9)); }}; i=$((i + 1)); done; fi\n"
        + status_command(job)
    )


def parse_status(text: str) -> JobStatus:
    """The output of :func:`status_command`; ValueError for anything else."""
    values = dict(line.strip().partition("=")[::2] for line in text.splitlines() if "=" in line)
    state = JobState(values.get("state", ""))
    if state is not JobState.FINISHED:
        return JobStatus(state)
    code = values.get("exit", "")
    if not code.isdigit():
        raise ValueError(f"finished job without an exit status: {text!r}")
    return JobStatus(state, int(code))


def output_command(job: str, stream: str) -> str:
    """``cat`` of the job's ``out`` or ``err`` file (empty when there is none)."""
    if stream not in ("out", "err"):
        raise ValueError(f"unknown stream {stream!r}")
    return f"cat {shlex.quote(_path(job, stream))} 2>/dev/null; true"
