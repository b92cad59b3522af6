"""The one qemu-guest-agent exec (providers.libvirt.agent), as the provider and the lab use it.

``libvirt_qemu.qemuAgentCommand`` is replaced by a loopback qemu-ga that runs ``guest-exec`` on this
machine the way qemu-ga does in a guest: ``env`` replaces the environment, stdin and output travel
base64-encoded, ``guest-exec-status`` reports a process once after it exited. So the test sees what
a guest would, including the process tree killed at a timeout (KILL_TREE runs here, on our own
children). The real agent is exercised by tests/contract/test_libvirt_qemu.py with
PW_LIBVIRT_AGENT_DOMAIN and by the lab tests (tests/e2e/lab).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from patchwave_lab import guest_clock
from providers.base import VmRef
from providers.errors import ProviderTimeout
from providers.guest_environment import GUEST_PATH
from providers.libvirt.agent import DomainSession, GuestAgent
from providers.timing import wait_until

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Domain:
    """What the agent code asks of a ``virDomain``."""

    def __init__(self, active: bool = True) -> None:
        self.active = active

    def name(self) -> str:
        return "pw-lab-1"

    def UUIDString(self) -> str:
        return "8e0f1f5c-0000-4000-8000-000000000001"

    def isActive(self) -> bool:
        return self.active


class LoopbackQemuGa:
    """guest-ping, guest-exec and guest-exec-status, running the commands on this machine."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._done: dict[int, dict[str, Any]] = {}
        self._running: dict[int, threading.Thread] = {}

    def __call__(self, dom: Any, request: str, timeout: int, flags: int) -> str:
        message = json.loads(request)
        self.requests.append(message)
        arguments = message.get("arguments", {})
        answer = getattr(self, message["execute"].replace("-", "_"))(**arguments)
        return json.dumps({"return": answer})

    def guest_ping(self) -> dict[str, Any]:
        return {}

    def guest_exec(self, path: str, arg: list[str], env: list[str], **options: Any) -> dict[str, Any]:
        proc = subprocess.Popen(
            [path, *arg],
            env=dict(e.split("=", 1) for e in env),  # replaces the environment, as qemu-ga does
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        data = base64.b64decode(options["input-data"]) if "input-data" in options else b""
        thread = threading.Thread(target=self._wait, args=(proc, data), daemon=True)
        self._running[proc.pid] = thread
        thread.start()
        return {"pid": proc.pid}

    def guest_exec_status(self, pid: int) -> dict[str, Any]:
        if self._running[pid].is_alive():
            return {"exited": False}
        del self._running[pid]
        return self._done.pop(pid)  # reported once, then forgotten

    def _wait(self, proc: subprocess.Popen[bytes], data: bytes) -> None:
        out, err = proc.communicate(data)
        code = proc.returncode
        status = {"exited": True, "signal": -code} if code < 0 else {"exited": True, "exitcode": code}
        encoded = {"out-data": base64.b64encode(out).decode(), "err-data": base64.b64encode(err).decode()}
        self._done[proc.pid] = {**status, **encoded}


@pytest.fixture
def qemu_ga(monkeypatch: pytest.MonkeyPatch) -> LoopbackQemuGa:
    agent = LoopbackQemuGa()
    monkeypatch.setattr(libvirt_qemu, "qemuAgentCommand", agent)
    return agent


def test_the_lab_runs_commands_through_the_providers_agent_with_the_one_guest_path(
    qemu_ga: LoopbackQemuGa,
) -> None:
    result = guest_clock.agent_exec(
        Domain(), ["/bin/sh", "-c", 'echo "$PATH|$LC_ALL|${HOME:-unset}"; cat; echo err >&2; exit 3'],
        timeout=10, stdin="private key\n",
    )  # fmt: skip
    assert (result.exit_code, result.signal) == (3, None)
    assert result.stdout == f"{GUEST_PATH}|C|unset\nprivate key\n"
    assert result.stderr == "err\n"
    assert [r["execute"] for r in qemu_ga.requests][:1] == ["guest-exec"]


def test_the_callers_environment_wins_over_the_default_path(qemu_ga: LoopbackQemuGa) -> None:
    agent = GuestAgent(DomainSession(libvirt, Domain(), site="lab"), timeout=5, poll_interval=0.01)
    result = agent.run(
        VmRef("lab", Domain().UUIDString(), "pw-lab-1"),
        ["/bin/sh", "-c", 'echo "$PATH|$MARK"'],
        timeout=10,
        env={"PATH": "/bin", "MARK": "42"},
    )
    assert result.stdout == "/bin|42\n"


def test_a_command_past_its_timeout_is_killed_with_its_children(
    qemu_ga: LoopbackQemuGa, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    with pytest.raises(ProviderTimeout):
        guest_clock.agent_exec(
            Domain(), ["/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1
        )
    child = int(pidfile.read_text())
    wait_until(lambda: gone(child), timeout=10, interval=0.05, what=f"child {child} to be killed")
    killers = [
        r for r in qemu_ga.requests if r["execute"] == "guest-exec" and "kill-tree" in r["arguments"]["arg"]
    ]
    assert len(killers) == 1


def test_the_lab_pings_the_agent_of_a_running_domain_only(qemu_ga: LoopbackQemuGa) -> None:
    assert guest_clock.agent_ping(Domain()) is True
    assert guest_clock.agent_ping(Domain(active=False)) is False
