"""The live view of ``patchwave run`` as people see it: in a terminal (a real pseudo-terminal) and in a pipe.

A real run on the embedded default (the bed's ``[logging] format = "json"`` is overridden with
``--log-format auto``, what people get by default) (test driver, fake guests through the ``local`` channel) whose
upgrades linger a few seconds after installing, so that every VM is seen in its ``patch`` stage.
In a TTY: rich's live table redrawn in place — one row per VM in flight with its stage, time in
stage, elapsed against the learned estimate and channel, the counters per status and an ETA — and
no log line among it. In a pipe: one plain line per VM stage change and per VM that concluded.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.simulators.pvesim import SimConfig, Simulator
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.platformbed import build_platform_bed
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

PVE_TOKEN = "pve-live-token-0c1d2e3f"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def lingering_bed(root: Path) -> DriverBed:
    bed = build(root, (GuestSpec("pw-web-1"), GuestSpec("pw-web-2")), port=unused_port(), concurrency=2)
    for guest in bed.guests.values():
        guest.linger_after_apply(5)
    return bed


def env_for(tty: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PATCHWAVE_CONFIG", None)
    if tty:
        env.update(TERM="xterm-256color", COLUMNS="220", LINES="50")
    return env


def run_in_pty(args: list[str], *, timeout: float = 300) -> tuple[int, str]:
    """Run ``args`` with stdin/stdout/stderr on a new pseudo-terminal; everything it wrote, and its exit code."""
    master, slave = os.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env_for(True), close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_a_run_in_a_terminal_shows_each_vm_in_flight_with_its_stage_and_an_eta(tmp_path: Path) -> None:
    bed = lingering_bed(tmp_path / "tty")
    code, raw = run_in_pty([sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "--log-format",
                            "auto", "run", "--run-id", "run-live-tty"])  # fmt: skip
    screen = ANSI.sub("", raw)
    assert code == 0, screen[-4000:]
    assert "\x1b[" in raw  # drawn with terminal control sequences (a live display), not plain lines
    for header in ("vm", "ring", "stage", "in stage", "elapsed / est.", "channel"):
        assert header in screen, header
    rows = [line for line in screen.splitlines() if "td/pw-web-" in line and " patch " in line]
    assert {"td/pw-web-1", "td/pw-web-2"} <= {m for line in rows for m in re.findall(r"td/pw-web-\d", line)}
    assert any(" local " in line for line in rows)  # the channel column
    assert re.search(r"ETA \d\d:\d\d \(in [\d:]+, learned durations\)", screen), screen[-3000:]
    assert re.search(r"VMs 0/2 done \(running 2\)", screen)
    assert '{"event"' not in screen and "event=" not in screen  # no log line among the live view
    assert "run run-live-tty: succeeded" in screen


def test_a_run_in_a_pipe_prints_one_plain_line_per_vm_stage_change(tmp_path: Path) -> None:
    bed = lingering_bed(tmp_path / "pipe")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "--log-format", "auto", "run",
         "--run-id", "run-live-pipe"],
        env=env_for(False), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "\x1b[" not in done.stdout  # no live display, no colour codes in a pipe
    for vm in ("td/pw-web-1", "td/pw-web-2"):
        assert re.search(rf"^\d\d:\d\d:\d\d {vm} \[main\] patch via local$", done.stdout, re.MULTILINE), (
            done.stdout
        )
        assert re.search(rf"^\d\d:\d\d:\d\d {vm} concluded$", done.stdout, re.MULTILINE), done.stdout
    stages = re.findall(r"td/pw-web-1 \[main\] (\S+) via local", done.stdout)
    assert stages == list(dict.fromkeys(stages))  # a line per change, never the same stage twice in a row
    assert '{"event"' not in done.stdout


@pytest.fixture
def pvesim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02)) as sim:
        sim.auth.add_token("root@pam", "pwlive", PVE_TOKEN)
        yield sim


def test_a_rollback_in_a_pipe_prints_each_vm_it_reverts(tmp_path: Path, pvesim: Simulator) -> None:
    """On the PVE simulator (its snapshots outlive the run's process, unlike the test driver's)."""
    provider = (
        f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {pvesim.port}\nca_file = "{pvesim.ca_file}"\n'
        'user = "root@pam"\ntoken_name = "pwlive"\ntoken_value = { env = "PW_LIVE_TOKEN" }\npoll_interval = 0.02'
    )
    bed = build_platform_bed(tmp_path / "pve", site="pve", provider_toml=provider, vms=("web-1", "app-1"))
    env = {**env_for(False), "PW_LIVE_TOKEN": PVE_TOKEN}
    base = [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "--log-format", "auto"]
    done = subprocess.run([*base, "run", "--run-id", "run-live-rb"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reverted = subprocess.run([*base, "rollback", "run-live-rb"], env=env, capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip
    assert reverted.returncode == 0, reverted.stdout[-3000:] + reverted.stderr[-3000:]
    out = reverted.stdout
    assert re.search(r"^\d\d:\d\d:\d\d run-live-rb phase=rollback ring=- .*running=2", out, re.MULTILINE), out
    for vm in ("pve/web-1", "pve/app-1"):
        assert re.search(rf"^\d\d:\d\d:\d\d {vm} \[default\] revert via local$", out, re.MULTILINE), out
        assert re.search(rf"^\d\d:\d\d:\d\d {vm} concluded$", out, re.MULTILINE), out
    assert re.search(r"phase=rollback ring=- rolled_back=2$", out, re.MULTILINE), out
