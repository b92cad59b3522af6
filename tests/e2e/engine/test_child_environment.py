"""Secrets stay out of child processes: every child of a real `patchwave run` has an allow-listed environment.

The run gets a notification URL by reference (``urls = [{ env = "PATCHWAVE_NOTIFY_URL" }]``, a local
receiver with a token in its path) and an unrelated ``SECRET_TOKEN`` in its environment. While the
run is in flight, every descendant of the patchwave process — the embedded Temporal dev server and
the guest commands of the ``local`` channel (sh and the fake apt-get in the chroot, lingering after
its upgrade) — is found by walking ``/proc/*/stat`` parent ids, and its ``/proc/<pid>/environ`` is read:
no secret value may be there, and no variable outside the allow-list
(:func:`orchestrator.environment.child_environment`; the guest's own fixed environment for guest
commands). The receiver getting the run's notifications shows the secret was used where it belongs.
This found a library's own helper too: croniter runs ``file -b <python>`` when it is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.environment import allowed
from orchestrator.guests.channel import GUEST_ENV
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.receiver import receiving
from tests.support.testbed import GuestSpec, build

pytestmark = pytest.mark.e2e

TOKEN_PATH = "hook-Xk42TokenInTheUrl"
DUMMY_SECRET = "s3cret-Token-Never-In-A-Child"
DEADLINE_S = 240.0
#: What a shell in the guest sets for the commands it starts itself (never taken from patchwave).
SHELL_SET = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ..."; comm may hold ")"


def descendants(root: int) -> set[int]:
    parents = {int(p.name): parent_of(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def detached(marker: str) -> set[int]:
    """Processes chrooted under ``marker`` (the bed's directory, where the fake guests' roots are): a
    guest's patch job is started detached (``setsid``, orchestrator/guests/job.py), so it is no
    descendant of the run."""
    found = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "root").startswith(marker):
                    found.add(int(p.name))
            except OSError:
                continue
    return found


def snapshot(pid: int, parent_exe: str) -> tuple[str, dict[str, str]] | None:
    """(command line, environment) of ``pid``; None when it exited meanwhile or is a fork of patchwave
    that has not exec'd yet (its memory, and so its environ, is still patchwave's own)."""
    try:
        if os.readlink(f"/proc/{pid}/exe") == parent_exe:
            return None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return cmdline.strip(), env


def test_no_child_of_a_run_sees_a_secret_or_a_variable_outside_the_allow_list(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-env-1"),), port=unused_port())
    bed.guests["pw-env-1"].linger_after_apply(4)  # the guest command stays alive to be looked at
    text = bed.config.read_text()
    bed.config.write_text(
        text.replace("[hosts]", '[notifications]\nurls = [{ env = "PATCHWAVE_NOTIFY_URL" }]\n\n[hosts]')
    )
    with receiving() as endpoint:
        secret_url = endpoint.url(TOKEN_PATH)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8", "TZ": "UTC", "PATCHWAVE_NOTIFY_URL": secret_url, "SECRET_TOKEN": DUMMY_SECRET}  # fmt: skip
        argv = [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "run", "--run-id", "run-env"]
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        seen: set[tuple[int, str, tuple[tuple[str, str], ...]]] = set()  # a pid may exec again: each image
        parent_exe = os.readlink(f"/proc/{proc.pid}/exe")
        deadline = time.monotonic() + DEADLINE_S
        while proc.poll() is None and time.monotonic() < deadline:
            for pid in descendants(proc.pid) | detached(str(tmp_path / "bed")):
                if (found := snapshot(pid, parent_exe)) is not None:
                    seen.add((pid, found[0], tuple(sorted(found[1].items()))))
            time.sleep(0.05)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        posted = endpoint.paths()

    assert any(f"/{TOKEN_PATH}" == path for path in posted), posted  # the secret URL was used by patchwave
    commands = [cmdline for _pid, cmdline, _env in seen]
    assert any("server start-dev" in c for c in commands), commands  # the embedded Temporal server
    assert any("apt-get" in c and "upgrade" in c for c in commands), commands  # a guest command (chroot)
    for pid, cmdline, items in seen:
        child_env = dict(items)
        values = "\0".join(child_env.values())
        assert TOKEN_PATH not in values and DUMMY_SECRET not in values, (pid, cmdline, child_env)
        extra = sorted(
            name for name in child_env if not (allowed(name) or name in GUEST_ENV or name in SHELL_SET)
        )
        assert not extra, (pid, cmdline, extra)
