"""QEMU guest agent exec through the PVE API (QEMU only: LXC has no exec endpoint).

* ``POST agent/exec`` takes ``command`` as an *array* and ``exec``s it without a shell, returning
  ``{"pid": N}`` as soon as the process started. We wrap the caller's argv as
  ``/bin/sh -c 'export PATH=... LC_ALL=C [env]; exec "$@"' sh argv...`` so the environment is
  predictable while the argv itself is passed through untouched (no re-quoting).
* ``GET agent/exec-status?pid=N`` answers ``{"exited": 0}`` until the process ends, then once
  ``{"exited": 1, "exitcode"|"signal", "out-data", "err-data", "*-truncated"}``; qemu-ga then
  forgets the pid, so the final answer is never asked for twice.
* qemu-ga caps each stream at 16 MiB (``*-truncated``); we additionally keep at most
  ``exec_output_cap`` bytes per stream and set the truncation flag when we cut.
* There is no server-side timeout or kill: at our deadline the process keeps running in the guest.
* An agent that does not answer is :class:`~providers.errors.GuestAgentUnavailable` with code
  ``agent_not_ready``: after waiting ``agent_wait`` for it (:class:`AgentNotReady`, also a
  ``ProviderTimeout``), or when ``agent/exec`` is refused and a ping confirms the agent is gone.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from providers.base import ExecResult
from providers.errors import (
    CapabilityMissing,
    GuestAgentUnavailable,
    OperationRefused,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    TransientProviderError,
)
from providers.guest_environment import GUEST_PATH
from providers.proxmox.session import PveSession
from providers.timing import poll_delays

STDIN_LIMIT = 64 * 1024  # ``input-data`` maxLength in the schema
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AgentNotReady(GuestAgentUnavailable, ProviderTimeout):
    """The agent did not answer within ``agent_wait``: unavailable, and a wait that timed out."""


def wrap_argv(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """The ``command`` array sent to ``agent/exec`` for ``argv`` with a fixed PATH and ``env``."""
    if not argv:
        raise PermanentProviderError("guest_exec needs a non-empty argv", code="bad_request")
    exports = {"PATH": GUEST_PATH, "LC_ALL": "C", **(env or {})}
    for name in exports:
        if not _ENV_NAME.match(name):
            raise PermanentProviderError(f"invalid environment variable name {name!r}", code="bad_request")
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in exports.items())
    return ["/bin/sh", "-c", f'export {assignments}; exec "$@"', "sh", *argv]


def _cap(text: str, cap: int, truncated: bool) -> tuple[str, bool]:
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= cap:
        return text, truncated
    return data[:cap].decode("utf-8", "ignore"), True


class AgentExec:
    def __init__(self, session: PveSession, *, poll_interval: float, output_cap: int) -> None:
        self.session = session
        self.poll_interval = poll_interval
        self.output_cap = output_cap

    def ping(self, node: str, vmid: int) -> bool:
        """One ``agent/ping``; any refusal (not configured, not running, no answer) is ``False``."""
        return self._answers(f"nodes/{node}/qemu/{vmid}/agent")

    def _answers(self, base: str) -> bool:
        try:
            self.session.post(f"{base}/ping")
        except ProviderError:
            return False
        return True

    def wait_ready(self, node: str, vmid: int, *, timeout: float, target: str) -> None:
        clock = self.session.clock
        deadline = clock.monotonic() + timeout
        while not self.ping(node, vmid):
            if clock.monotonic() >= deadline:
                raise AgentNotReady(
                    f"the QEMU guest agent did not answer within {timeout:.0f}s (is qemu-guest-agent "
                    "installed and running in the guest?)",
                    target=target,
                    code="agent_not_ready",
                )
            clock.sleep(max(0.0, min(self.poll_interval, deadline - clock.monotonic())))

    def run(
        self,
        node: str,
        vmid: int,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None,
        stdin: str | None,
        target: str,
    ) -> ExecResult:
        if stdin is not None and len(stdin.encode()) > STDIN_LIMIT:
            raise PermanentProviderError(
                f"stdin is larger than the agent's 64 KiB input-data limit ({len(stdin.encode())} bytes)",
                target=target,
                code="stdin_too_large",
            )
        clock = self.session.clock
        started = clock.monotonic()
        base = f"nodes/{node}/qemu/{vmid}/agent"
        try:
            answer = self.session.post(f"{base}/exec", command=wrap_argv(argv, env), **{"input-data": stdin})
        except ProviderError as exc:
            raise self._exec_refused(base, exc, target) from exc
        pid = int(answer["pid"])
        status = self._poll(base, pid, deadline=started + timeout, timeout=timeout, target=target)
        return self._result(status, clock.monotonic() - started)

    def _poll(self, base: str, pid: int, *, deadline: float, timeout: float, target: str) -> dict[str, Any]:
        clock = self.session.clock
        delays = poll_delays(self.poll_interval)
        while True:
            try:
                status: dict[str, Any] | None = self.session.get(f"{base}/exec-status", pid=pid, retry=False)
            except TransientProviderError:
                status = None
            except ProviderError as exc:
                raise PermanentProviderError(
                    f"lost track of guest process {pid}: {exc.message}", target=target, code="exec_lost"
                ) from exc
            if status and status.get("exited"):
                return status
            if clock.monotonic() >= deadline:
                raise ProviderTimeout(
                    f"guest command (pid {pid}) still running after {timeout:.0f}s; the agent cannot "
                    "kill it, it keeps running in the guest",
                    target=target,
                    code="exec_timeout",
                )
            clock.sleep(max(0.0, min(next(delays), deadline - clock.monotonic())))

    def _result(self, status: Mapping[str, Any], duration: float) -> ExecResult:
        stdout, out_cut = _cap(
            str(status.get("out-data", "")), self.output_cap, bool(status.get("out-truncated"))
        )
        stderr, err_cut = _cap(
            str(status.get("err-data", "")), self.output_cap, bool(status.get("err-truncated"))
        )
        signal = status.get("signal")
        exitcode = status.get("exitcode")
        return ExecResult(
            exit_code=None if signal is not None and exitcode is None else int(exitcode or 0),
            stdout=stdout,
            stderr=stderr,
            signal=int(signal) if signal is not None else None,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            duration_s=duration,
        )

    def _exec_refused(self, base: str, exc: ProviderError, target: str) -> ProviderError:
        """An ``agent/exec`` refusal: an agent that no longer answers a ping is unavailable (transient);
        else ask ``agent/info`` whether guest-exec is disabled in qemu-ga."""
        if isinstance(exc, OperationRefused) and not self._answers(base):
            return GuestAgentUnavailable(
                f"the QEMU guest agent stopped answering: {exc.message}",
                target=target,
                code="agent_not_ready",
            )
        try:
            info = self.session.get(f"{base}/info", retry=False)
        except ProviderError:
            return exc
        commands = (info or {}).get("result", {}).get("supported_commands", [])
        for command in commands:
            if command.get("name") == "guest-exec" and not command.get("enabled", True):
                return CapabilityMissing(
                    "guest-exec is disabled in this guest's qemu-ga (allow it in the agent's config)",
                    target=target,
                    code="guest_exec_disabled",
                )
        return exc
