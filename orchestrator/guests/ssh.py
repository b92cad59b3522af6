"""SshChannel: the guest channel over OpenSSH, a thin layer over :mod:`providers.ssh`.

The connection (host keys, login, reuse, reconnecting after a dropped session, timeouts, typed
errors) is :class:`providers.ssh.SshClient`'s; see there. Host keys are verified against
``known_hosts`` (``None``: the user's ``~/.ssh/known_hosts``); ``trust_on_first_use=True`` accepts
and records the key of a host that is *not yet known*; a known host with a different key is refused
either way (:class:`~providers.errors.HostKeyRejected`). Guests never use the ssh-agent.

This layer makes SSH a :class:`~orchestrator.guests.channel.GuestChannel`: sshd drops the client's
environment (Debian only accepts ``LANG LC_*``), so the guest environment (:data:`GUEST_ENV`: PATH,
LC_ALL, DEBIAN_FRONTEND) is exported inside the command itself, and the command always runs under
``/bin/sh`` whatever the login shell. A guest that cannot be reached, or whose session died while a
command ran, is :class:`GuestUnreachable` (transient; the command is not re-run).
"""

from __future__ import annotations

import shlex

from orchestrator.guests.channel import GUEST_ENV, MAX_OUTPUT_BYTES
from orchestrator.guests.errors import GuestUnreachable
from providers.base import ExecResult
from providers.errors import ProviderError, ProviderUnavailable
from providers.ssh import SshClient, SshTarget
from providers.timing import SYSTEM_CLOCK, Clock

_ENV_PREFIX = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in GUEST_ENV.items()) + "; "


def wrap_command(command: str) -> str:
    """What is sent to sshd: ``/bin/sh -c '<export ...; command>'``."""
    return "/bin/sh -c " + shlex.quote(_ENV_PREFIX + command)


class SshChannel:
    name = "ssh"

    def __init__(self, target: SshTarget, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.target = target
        self._client = SshClient(target, clock=clock, max_output_bytes=MAX_OUTPUT_BYTES)

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        try:
            return self._client.exec(wrap_command(command), timeout=timeout, stdin=stdin)
        except ProviderUnavailable as exc:
            raise GuestUnreachable(exc.message, target=exc.target, code=exc.code) from None

    def ping(self, *, timeout: float) -> bool:
        try:
            return self.run("true", timeout=timeout).ok
        except ProviderError:
            return False

    def close(self) -> None:
        self._client.close()


__all__ = ["SshChannel", "SshTarget", "wrap_command"]
