"""SshChannel: commands over OpenSSH with paramiko.

Host keys are verified by default (paramiko ``RejectPolicy``) against ``known_hosts`` (or, when it is
not given, the user's and the system's known_hosts). ``trust_on_first_use=True`` accepts the key of a
host that is *not yet known* and appends it to ``known_hosts``; a known host with a different key is
refused either way.

sshd drops the client's environment (Debian only accepts ``LANG LC_*``), so the environment is set
inside the command itself, and the command always runs under ``/bin/sh`` whatever the login shell.
A dropped session (sshd restarted, snapshot reverted, guest rebooted) is reconnected on the next call;
a command whose session died while it ran is not re-run (the caller decides: it is transient).
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from providers.base import (
    SYSTEM_CLOCK,
    AuthenticationFailed,
    Clock,
    ExecResult,
    ProviderError,
    ProviderTimeout,
    Secret,
)

from .channel import GUEST_ENV, MAX_OUTPUT_BYTES
from .errors import GuestUnreachable, HostKeyRejected

# paramiko logs every failed handshake (e.g. a rebooting guest whose forwarded port accepts but sends
# no banner) with a traceback; without a handler Python prints it to stderr. We raise typed errors
# instead, so paramiko's records only go where the application's logging sends them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

_ENV_PREFIX = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in GUEST_ENV.items()) + "; "


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    password: Secret | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def wrap_command(command: str) -> str:
    """What is sent to sshd: ``/bin/sh -c '<export ...; command>'``."""
    return "/bin/sh -c " + shlex.quote(_ENV_PREFIX + command)


class _RecordFirstKey(paramiko.MissingHostKeyPolicy):
    """Trust on first use: accept an unknown host's key and append it to the known_hosts file."""

    def __init__(self, known_hosts: Path) -> None:
        self._path = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class SshChannel:
    name = "ssh"

    def __init__(self, target: SshTarget, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.target = target
        self._clock = clock
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------------------------

    def _known_hosts(self) -> Path:
        return self.target.known_hosts or Path.home() / ".ssh" / "known_hosts"

    def _connect(self) -> paramiko.SSHClient:
        t = self.target
        client = paramiko.SSHClient()
        known = self._known_hosts()
        if t.known_hosts is None:
            client.load_system_host_keys()
        elif known.exists():
            client.load_host_keys(str(known))
        client.set_missing_host_key_policy(
            _RecordFirstKey(known) if t.trust_on_first_use else paramiko.RejectPolicy()
        )
        try:
            client.connect(
                t.host,
                port=t.port,
                username=t.user,
                key_filename=str(t.key_file) if t.key_file else None,
                password=t.password.reveal() if t.password else None,
                timeout=t.connect_timeout,
                banner_timeout=t.connect_timeout,
                auth_timeout=t.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejected(
                f"host key of {t.host}:{t.port} does not match {known} (got {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}); if the guest was rebuilt, remove its old entry",
                target=str(t),
                code="host_key_mismatch",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise AuthenticationFailed(
                f"ssh authentication failed: {exc}", target=str(t), code="auth"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):  # paramiko's RejectPolicy has no own class
                raise HostKeyRejected(
                    f"host {t.host}:{t.port} is not in {known}; add its key or set trust_on_first_use",
                    target=str(t),
                    code="host_key_unknown",
                ) from None
            raise GuestUnreachable(f"ssh handshake failed: {exc}", target=str(t)) from None
        except (OSError, EOFError) as exc:  # refused, unreachable, socket.timeout, reset
            client.close()
            raise GuestUnreachable(f"ssh connect failed: {exc}", target=str(t)) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)
        return client

    def _open_session(self, timeout: float) -> paramiko.Channel:
        """A fresh session channel; reconnects once if the cached connection has died."""
        for attempt in (1, 2):
            client = self._client
            transport = client.get_transport() if client is not None else None
            if client is None or transport is None or not transport.is_active():
                self._drop()
                self._client = client = self._connect()
                transport = client.get_transport()
            try:
                assert transport is not None
                return transport.open_session(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop()
                if attempt == 2:
                    raise GuestUnreachable(f"ssh session failed: {exc}", target=str(self.target)) from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- GuestChannel ----------------------------------------------------------------------

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        with self._lock:
            start = self._clock.monotonic()
            chan = self._open_session(timeout=min(timeout, self.target.connect_timeout))
            try:
                chan.exec_command(wrap_command(command))
                if stdin is not None:
                    chan.sendall(stdin.encode())
                chan.shutdown_write()
                out, err, truncated = self._collect(chan, deadline=start + timeout, timeout=timeout)
                code = chan.recv_exit_status()
            except ProviderTimeout:
                chan.close()
                raise
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop()
                raise GuestUnreachable(
                    f"ssh session dropped while running: {exc}", target=str(self.target)
                ) from None
            chan.close()
            return ExecResult(
                exit_code=code if code >= 0 else None,
                stdout=out.decode("utf-8", errors="replace"),
                stderr=err.decode("utf-8", errors="replace"),
                stdout_truncated=truncated[0],
                stderr_truncated=truncated[1],
                duration_s=self._clock.monotonic() - start,
            )

    def _collect(
        self, chan: paramiko.Channel, *, deadline: float, timeout: float
    ) -> tuple[bytes, bytes, tuple[bool, bool]]:
        out, err = bytearray(), bytearray()
        trunc = [False, False]
        while True:
            got = False
            while chan.recv_ready():
                got = True
                _append(out, chan.recv(65536), trunc, 0)
            while chan.recv_stderr_ready():
                got = True
                _append(err, chan.recv_stderr(65536), trunc, 1)
            drained = not chan.recv_ready() and not chan.recv_stderr_ready()
            if chan.exit_status_ready() and drained and (chan.eof_received or chan.closed):
                return bytes(out), bytes(err), (trunc[0], trunc[1])
            if chan.closed and not got:
                if chan.exit_status_ready():
                    return bytes(out), bytes(err), (trunc[0], trunc[1])
                raise GuestUnreachable(
                    "ssh channel closed before the command finished", target=str(self.target)
                )
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise ProviderTimeout(f"command timed out after {timeout:g}s", target=str(self.target))
            if not got:
                select.select([chan], [], [], min(remaining, 0.5))

    def ping(self, *, timeout: float) -> bool:
        try:
            return self.run("true", timeout=timeout).ok
        except ProviderError:
            return False

    def close(self) -> None:
        with self._lock:
            self._drop()


def _append(buf: bytearray, data: bytes, trunc: list[bool], idx: int) -> None:
    room = MAX_OUTPUT_BYTES - len(buf)
    if len(data) > room:
        trunc[idx] = True
        data = data[: max(room, 0)]
    buf.extend(data)


__all__ = ["SshChannel", "SshTarget", "wrap_command"]
