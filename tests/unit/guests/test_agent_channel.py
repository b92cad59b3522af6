"""AgentChannel over providers.capabilities.GuestExecOps.

The provider here is a loopback implementation of the GuestExecOps Protocol that executes argv on
this machine with exactly the environment it is given (as qemu-ga's guest-exec does: ``env``
replaces the environment), so the test sees what a guest would see.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from orchestrator.guests.channel import GUEST_ENV, AgentChannel
from orchestrator.guests.errors import GuestUnreachable
from providers.base import ExecResult, VmRef
from providers.errors import NotFound, ProviderTimeout, ProviderUnavailable

VM = VmRef("lab", "uuid-1", "pw-lab-1")


@dataclass
class LoopbackAgent:
    fail_with: Exception | None = None
    calls: list[tuple[tuple[str, ...], dict[str, str] | None]] = field(default_factory=list)

    def guest_ping(self, vm: VmRef) -> bool:
        if self.fail_with:
            raise self.fail_with
        return True

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        self.calls.append((tuple(argv), dict(env) if env is not None else None))
        if self.fail_with:
            raise self.fail_with
        proc = subprocess.run(
            list(argv),
            env=dict(env or {}),
            input=stdin,
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return ExecResult(proc.returncode, proc.stdout, proc.stderr)


def test_runs_sh_c_with_the_full_guest_environment() -> None:
    agent = LoopbackAgent()
    channel = AgentChannel(agent, VM)
    result = channel.run(
        'echo "$PATH|$LC_ALL|$DEBIAN_FRONTEND|${HOME:-unset}"; cat; exit 3', timeout=10, stdin="in"
    )
    assert agent.calls[0][0][:2] == ("/bin/sh", "-c")
    assert agent.calls[0][1] == dict(GUEST_ENV)
    assert result.stdout == "/usr/sbin:/usr/bin:/sbin:/bin|C|noninteractive|unset\nin"
    assert result.exit_code == 3 and channel.name == "agent"


def test_transient_provider_errors_become_guest_unreachable() -> None:
    channel = AgentChannel(LoopbackAgent(fail_with=ProviderUnavailable("agent not responding")), VM)
    with pytest.raises(GuestUnreachable) as info:
        channel.run("true", timeout=5)
    assert info.value.retryable and "pw-lab-1" in str(info.value)
    assert channel.ping(timeout=5) is False


def test_timeouts_and_permanent_errors_pass_through() -> None:
    with pytest.raises(ProviderTimeout):
        AgentChannel(LoopbackAgent(fail_with=ProviderTimeout("slow")), VM).run("true", timeout=5)
    with pytest.raises(NotFound):
        AgentChannel(LoopbackAgent(fail_with=NotFound("no such vm")), VM).run("true", timeout=5)
    assert AgentChannel(LoopbackAgent(), VM).ping(timeout=5) is True
