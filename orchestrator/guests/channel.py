"""Guest channels: how a command reaches a guest.

Every channel runs ``/bin/sh -c command`` with the same small environment (:data:`GUEST_ENV`), so a
command builder never depends on which channel carries it. Channels raise :class:`GuestUnreachable`
(transient) when the guest cannot be reached and :class:`~providers.errors.ProviderTimeout` when a
command outlives its timeout; a non-zero exit status is *not* an error here, it is in the result.

* :class:`AgentChannel` — the platform's guest agent through ``providers.capabilities.GuestExecOps``.
  ``env`` *replaces* the guest process environment there (qemu-ga), hence the explicit PATH.
* :class:`LocalChannel` — a subprocess on this machine (hosts we run on), optionally inside a
  chroot (a throwaway root file system, used by the tests).
* :class:`~orchestrator.guests.ssh.SshChannel` — OpenSSH servers, in ``ssh.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from orchestrator.environment import child_environment
from orchestrator.guests.errors import GuestUnreachable
from providers.base import ExecResult, VmRef
from providers.capabilities import GuestExecOps
from providers.errors import GuestAgentUnavailable, ProviderError, ProviderTimeout, TransientProviderError
from providers.guest_environment import GUEST_PATH
from providers.settings import MAX_TIMEOUT_S
from providers.timing import SYSTEM_CLOCK, Clock

GUEST_ENV: Mapping[str, str] = {"PATH": GUEST_PATH, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
#: Output kept per stream; the rest is dropped and the result says it was truncated.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024


@runtime_checkable
class GuestChannel(Protocol):
    name: str  # "ssh" | "agent" | "local"

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult: ...
    def ping(self, *, timeout: float) -> bool: ...
    def close(self) -> None: ...


class AgentChannel:
    """Commands through the hypervisor's guest agent (``provider.guest_exec``)."""

    name = "agent"

    def __init__(self, provider: GuestExecOps, vm: VmRef) -> None:
        self._provider = provider
        self._vm = vm

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        try:
            return self._provider.guest_exec(
                self._vm, ["/bin/sh", "-c", command], timeout=timeout, env=dict(GUEST_ENV), stdin=stdin
            )
        except GuestAgentUnavailable as exc:  # checked first: Proxmox's AgentNotReady is also a timeout
            raise GuestUnreachable(f"guest agent unreachable: {exc.message}", target=str(self._vm)) from exc
        except ProviderTimeout:
            raise
        except TransientProviderError as exc:
            raise GuestUnreachable(f"guest agent unreachable: {exc.message}", target=str(self._vm)) from exc

    def ping(self, *, timeout: float) -> bool:
        # GuestExecOps.guest_ping has no timeout of its own; adapters bound it internally.
        try:
            return bool(self._provider.guest_ping(self._vm))
        except ProviderError:
            return False

    def close(self) -> None:
        """Nothing to release: the provider owns the connection."""


class LocalChannel:
    """Commands on this machine, or inside ``root`` through chroot(8) when it is given."""

    name = "local"

    def __init__(self, *, root: Path | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._root = root
        self._clock = clock

    def _argv(self, command: str) -> list[str]:
        argv = ["/bin/sh", "-c", command]
        return ["chroot", str(self._root), *argv] if self._root is not None else argv

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        if not 0 < timeout <= MAX_TIMEOUT_S:  # never start a command that cannot be waited for
            raise ValueError(
                f"timeout {timeout!r}s is outside (0, {MAX_TIMEOUT_S}]: select/poll would overflow"
            )
        start = self._clock.monotonic()
        try:
            proc = subprocess.Popen(
                self._argv(command),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_environment(GUEST_ENV, environ={}),  # the guest's, none of ours
                cwd="/",
                start_new_session=True,  # so a timeout kills the whole process group
            )
        except OSError as exc:
            raise GuestUnreachable(f"cannot start /bin/sh: {exc}", target="local") from exc
        try:
            out, err = proc.communicate(input=stdin.encode() if stdin is not None else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ProviderTimeout(f"command timed out after {timeout:g}s", target="local") from None
        code = proc.returncode
        return ExecResult(
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            stdout=_decode(out),
            stderr=_decode(err),
            stdout_truncated=len(out) > MAX_OUTPUT_BYTES,
            stderr_truncated=len(err) > MAX_OUTPUT_BYTES,
            duration_s=self._clock.monotonic() - start,
        )

    def ping(self, *, timeout: float) -> bool:
        try:
            return self.run("true", timeout=timeout).ok
        except ProviderError:
            return False

    def close(self) -> None:
        """Nothing to release."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _decode(data: bytes) -> str:
    return data[:MAX_OUTPUT_BYTES].decode("utf-8", errors="replace")
