"""One SSH client (paramiko) for every SSH connection patchwave makes.

Used by the guest channel (:mod:`orchestrator.guests.ssh`, which wraps commands in ``/bin/sh -c``
with the guest environment), by the Proxmox node shell (:mod:`providers.proxmox.node_shell`) and by
the lab (:mod:`patchwave_lab.control`). Commands are sent as given.

Host keys are decided by type, never by paramiko's message text. A host is looked up in
``known_hosts`` (``None``: the user's ``~/.ssh/known_hosts``). A known host with another key is
paramiko's ``BadHostKeyException``: :class:`~providers.errors.HostKeyRejected` ``host_key_mismatch``,
with or without trust on first use. A host that is not known goes to :class:`KnownHostsPolicy`: it
raises ``host_key_unknown``, or with ``trust_on_first_use`` appends the key to ``known_hosts`` (once:
the file is re-read under a lock, so two clients racing for a new host write one line) and accepts it.

Errors, one vocabulary for every caller:

* ``host_key_unknown`` / ``host_key_mismatch`` -- :class:`~providers.errors.HostKeyRejected`, permanent;
* ``auth`` -- :class:`~providers.errors.AuthenticationFailed`, permanent: credentials refused or
  unusable (anything that fails after the host key was accepted and before login);
* ``known_hosts`` -- :class:`~providers.errors.PermanentProviderError`: the file cannot be read or
  the first key cannot be recorded;
* ``unreachable`` -- :class:`~providers.errors.ProviderUnavailable`, transient: refused, timed out,
  no banner, a session that cannot be opened or that died while a command ran (not re-run);
* ``timeout`` -- :class:`~providers.errors.ProviderTimeout`, transient: a command outlived its timeout.

The ssh-agent is used only when a target asks for it (``allow_agent``, default False), and so are
the user's ``~/.ssh/id_*`` keys (``look_for_keys``): which identity logs in must follow from the
configuration, not from the environment the worker happens to run in, and a guest's sshd (a
machine we patch, not one we trust) must not be offered every key an operator's agent holds. The
Proxmox node shell asks for both when no ``key_file`` is configured (as it always did: like
``ssh root@node``); guests and the lab never do.

:class:`SshClient` keeps one connection and opens a session per command. A connection that died
(sshd restarted, snapshot reverted, guest rebooted) is reopened by the next command. At the deadline
the command's channel is closed and ``ProviderTimeout`` raised; the connection stays usable. sshd
then closes the remote process's pipes, so a process that writes ends (EPIPE/SIGPIPE). A silent one
runs on (as before): OpenSSH refuses ``signal`` requests for root logins, so there is no portable
way to stop it from here.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paramiko
import structlog

from providers.base import ExecResult
from providers.errors import (
    AuthenticationFailed,
    HostKeyRejected,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.settings import Secret
from providers.timing import SYSTEM_CLOCK, Clock

log = structlog.get_logger("patchwave.providers.ssh")

# paramiko logs every failed handshake (e.g. a rebooting guest whose forwarded port accepts but sends
# no banner) with a traceback; without a handler Python prints it to stderr. We raise typed errors
# instead, so paramiko's records only go where the application's logging sends them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

#: Output kept per stream; the rest is dropped and the result says it was truncated.
MAX_OUTPUT_BYTES = 16 * 1024 * 1024
KEEPALIVE_S = 15


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where and how to log in. ``known_hosts=None``: the user's ``~/.ssh/known_hosts``."""

    host: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    password: Secret | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    allow_agent: bool = False  # the user's ssh-agent (see the module docstring)
    look_for_keys: bool = False  # the user's ~/.ssh/id_* keys

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_file(self) -> Path:
        return self.known_hosts or Path.home() / ".ssh" / "known_hosts"


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """What to do with a host that has no entry in known_hosts: refuse it, or trust on first use."""

    def __init__(self, target: SshTarget) -> None:
        self._target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self._target
        if not t.trust_on_first_use:
            raise HostKeyRejected(
                f"host {t.host}:{t.port} is not in {t.known_hosts_file}; add its key or set trust_on_first_use",
                target=str(t),
                code="host_key_unknown",
            )
        _record_first_key(t, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _record_first_key(target: SshTarget, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname``'s key to the known_hosts file (mode 0600 when created). Under an exclusive
    lock the file is read again first: a key another client recorded meanwhile is not written twice,
    and a different one is refused like any changed key."""
    path = target.known_hosts_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            recorded = paramiko.HostKeys(str(path)).lookup(hostname)
            if recorded is not None:
                if recorded.get(key.get_name()) != key:
                    raise _changed_key_error(target, key)
                return
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
    except OSError as exc:
        raise PermanentProviderError(
            f"cannot record the host key of {target.host}:{target.port} in {path}: {exc}",
            target=str(target),
            code="known_hosts",
        ) from None
    log.warning(
        "ssh_host_key_recorded", target=str(target), known_hosts=str(path), fingerprint=_fingerprint(key)
    )


def _changed_key_error(target: SshTarget, key: paramiko.PKey) -> HostKeyRejected:
    return HostKeyRejected(
        f"host key of {target.host}:{target.port} does not match {target.known_hosts_file} "
        f"(got {key.get_name()} {_fingerprint(key)}); if the host was rebuilt, remove its old entry",
        target=str(target),
        code="host_key_mismatch",
    )


def _fingerprint(key: paramiko.PKey) -> str:
    return str(key.fingerprint)  # "SHA256:...", as ssh-keygen -l prints it


# --------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------


def open_connection(target: SshTarget) -> paramiko.SSHClient:
    """A connected, authenticated paramiko client for ``target``, or one of the typed errors."""
    client = paramiko.SSHClient()
    try:
        _load_known_hosts(client, target)
        client.set_missing_host_key_policy(KnownHostsPolicy(target))
        client.connect(**_connect_arguments(target))
    except ProviderError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise _changed_key_error(target, exc.key) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise _auth_error(target, exc) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        authenticating = _host_key_accepted(client)
        client.close()
        if authenticating:  # after the host key check, connect() only authenticates
            raise _auth_error(target, exc) from None
        what = "handshake" if isinstance(exc, paramiko.SSHException) else "connect"
        raise ProviderUnavailable(
            f"ssh {what} failed: {exc}", target=str(target), code="unreachable"
        ) from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)
    return client


def _load_known_hosts(client: paramiko.SSHClient, target: SshTarget) -> None:
    path = target.known_hosts_file
    try:
        if target.known_hosts is None:
            client.load_system_host_keys()  # ~/.ssh/known_hosts, when it exists
        elif path.exists():
            client.load_host_keys(str(path))
    except OSError as exc:
        raise PermanentProviderError(
            f"cannot read {path}: {exc}", target=str(target), code="known_hosts"
        ) from None


def _connect_arguments(target: SshTarget) -> dict[str, Any]:
    return {
        "hostname": target.host,
        "port": target.port,
        "username": target.user,
        "key_filename": str(target.key_file) if target.key_file else None,
        "password": target.password.reveal() if target.password else None,
        "timeout": target.connect_timeout,
        "banner_timeout": target.connect_timeout,
        "auth_timeout": target.connect_timeout,
        "allow_agent": target.allow_agent,
        "look_for_keys": target.look_for_keys,
    }


def _host_key_accepted(client: paramiko.SSHClient) -> bool:
    """The key exchange finished and the connection is up: the host key check passed (a rejected key
    raises its own type before this is asked), so what failed was authentication."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        return False
    try:
        transport.get_remote_server_key()
    except paramiko.SSHException:  # no key exchange yet
        return False
    return True


def _auth_error(target: SshTarget, exc: BaseException) -> AuthenticationFailed:
    return AuthenticationFailed(f"ssh authentication failed: {exc}", target=str(target), code="auth")


# --------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------


class SshClient:
    """One connection to ``target``, kept between commands, reopened after it dropped. Commands run
    one at a time (a lock); use as a context manager or call :meth:`close`."""

    def __init__(
        self, target: SshTarget, *, clock: Clock = SYSTEM_CLOCK, max_output_bytes: int = MAX_OUTPUT_BYTES
    ) -> None:
        self.target = target
        self._clock = clock
        self._limit = max_output_bytes
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> Self:
        """Connect now (else the first command does), so host key and login errors show early."""
        with self._lock:
            if not self._alive():
                self._drop()
                self._client = open_connection(self.target)
        return self

    def exec(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        """Run ``command`` as given, with ``stdin`` then EOF; a non-zero exit is in the result."""
        with self._lock:
            started = self._clock.monotonic()
            chan = self._open_session(timeout=min(timeout, self.target.connect_timeout))
            try:
                return self._run(chan, command, stdin, deadline=started + timeout, timeout=timeout)
            finally:
                chan.close()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- connection -------------------------------------------------------------------------

    def _alive(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def _open_session(self, timeout: float) -> paramiko.Channel:
        """A fresh session channel; reconnects once if the kept connection has died."""
        for attempt in (1, 2):
            if not self._alive():
                self._drop()
                self._client = open_connection(self.target)
            transport = self._client.get_transport() if self._client is not None else None
            try:
                assert transport is not None
                return transport.open_session(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop()
                if attempt == 2:
                    raise ProviderUnavailable(
                        f"ssh session failed: {exc}", target=str(self.target), code="unreachable"
                    ) from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one command --------------------------------------------------------------------------

    def _run(
        self, chan: paramiko.Channel, command: str, stdin: str | None, *, deadline: float, timeout: float
    ) -> ExecResult:
        started = deadline - timeout
        try:
            chan.exec_command(command)
            if stdin is not None:
                chan.settimeout(max(deadline - self._clock.monotonic(), 0.001))
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            out, err = self._collect(chan, deadline=deadline, timeout=timeout)
            code = chan.recv_exit_status()
        except TimeoutError:  # sending stdin outlived the deadline
            raise self._timed_out(timeout) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop()
            raise ProviderUnavailable(
                f"ssh session dropped while running: {exc}", target=str(self.target), code="unreachable"
            ) from None
        return ExecResult(
            exit_code=code if code >= 0 else None,
            stdout=out.data.decode("utf-8", errors="replace"),
            stderr=err.data.decode("utf-8", errors="replace"),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            duration_s=self._clock.monotonic() - started,
        )

    def _collect(self, chan: paramiko.Channel, *, deadline: float, timeout: float) -> tuple[_Capped, _Capped]:
        """Read both streams until the command exited and its output is drained, or the deadline."""
        out, err = _Capped(self._limit), _Capped(self._limit)
        while True:
            got = False
            while chan.recv_ready():
                out.add(chan.recv(65536))
                got = True
            while chan.recv_stderr_ready():
                err.add(chan.recv_stderr(65536))
                got = True
            drained = not chan.recv_ready() and not chan.recv_stderr_ready()
            if chan.exit_status_ready() and drained and (chan.eof_received or chan.closed):
                return out, err
            if chan.closed and not got:
                if chan.exit_status_ready():
                    return out, err
                raise ProviderUnavailable(
                    "ssh channel closed before the command finished",
                    target=str(self.target),
                    code="unreachable",
                )
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise self._timed_out(timeout)
            if not got:
                select.select([chan], [], [], min(remaining, 0.5))

    def _timed_out(self, timeout: float) -> ProviderTimeout:
        return ProviderTimeout(
            f"command timed out after {timeout:g}s", target=str(self.target), code="timeout"
        )


class _Capped:
    """One output stream, kept up to ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self.data.extend(chunk)


__all__ = ["MAX_OUTPUT_BYTES", "KnownHostsPolicy", "SshClient", "SshTarget", "open_connection"]
