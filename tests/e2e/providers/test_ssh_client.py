"""providers.ssh.SshClient, the one SSH client of guests, Proxmox nodes and the lab, against a real
OpenSSH server on 127.0.0.1 (tests/e2e/providers/openssh.py) and, for password logins, a paramiko
server here. Every failure is told apart by the error's type and code, never by its message."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from providers.errors import (
    AuthenticationFailed,
    HostKeyRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.settings import Secret
from providers.ssh import SshClient, SshTarget
from providers.timing import wait_until
from tests.e2e.providers.openssh import SshServer, gone, keygen
from tests.simulators.pvesim.sshd import new_ed25519
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e


def run(target: SshTarget, command: str = "echo ok", *, timeout: float = 30) -> str:
    with SshClient(target) as client:
        return client.exec(command, timeout=timeout).stdout


# -- host keys ----------------------------------------------------------------------------------


def test_an_unknown_host_key_is_refused_by_default(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected) as info:
        run(sshd.target(empty))
    assert type(info.value) is HostKeyRejected
    assert info.value.code == "host_key_unknown" and not info.value.retryable
    assert empty.read_text() == ""


def test_trust_on_first_use_appends_the_key_exactly_once(sshd: SshServer, tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "known_hosts"
    tofu = sshd.target(path, trust_on_first_use=True)
    barrier = threading.Barrier(4)
    outputs: list[str] = []

    def racer() -> None:  # four clients meet a host none of them knows, at the same moment
        client = SshClient(tofu)
        barrier.wait(timeout=30)
        with client:
            outputs.append(client.exec("echo first", timeout=30).stdout)

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outputs == ["first\n"] * 4
    assert path.read_text() == sshd.known_hosts_line()
    assert path.stat().st_mode & 0o777 == 0o600
    assert run(tofu) == "ok\n"  # a later client finds it: nothing appended
    assert run(sshd.target(path)) == "ok\n"  # and one without trust on first use accepts it
    assert path.read_text() == sshd.known_hosts_line()


@pytest.mark.parametrize("tofu", [False, True])
def test_a_changed_host_key_is_refused_even_with_trust_on_first_use(
    sshd: SshServer, tmp_path: Path, tofu: bool
) -> None:
    other = keygen(tmp_path / "other_ed25519")
    stale = tmp_path / "known_hosts"
    stale.write_text(sshd.known_hosts_line(other))
    with pytest.raises(HostKeyRejected) as info:
        run(sshd.target(stale, trust_on_first_use=tofu))
    assert info.value.code == "host_key_mismatch" and not info.value.retryable
    assert stale.read_text() == sshd.known_hosts_line(other)  # nothing overwritten, nothing appended


# -- logging in --------------------------------------------------------------------------------


def test_a_key_the_server_does_not_know_fails_authentication(
    sshd: SshServer, known_hosts: Path, tmp_path: Path
) -> None:
    keygen(tmp_path / "stranger")
    with pytest.raises(AuthenticationFailed) as info:
        run(sshd.target(known_hosts, key_file=tmp_path / "stranger"))
    assert info.value.code == "auth" and not info.value.retryable


@pytest.mark.parametrize("credentials", ["a missing key file", "none at all"])
def test_credentials_that_cannot_be_used_fail_authentication_not_reachability(
    sshd: SshServer, known_hosts: Path, tmp_path: Path, credentials: str
) -> None:
    key_file = tmp_path / "absent" if credentials == "a missing key file" else None
    with pytest.raises(AuthenticationFailed) as info:  # paramiko raises OSError / SSHException here
        run(sshd.target(known_hosts, key_file=key_file))
    assert info.value.code == "auth" and not info.value.retryable


class PasswordServer:
    """A paramiko SSH server on 127.0.0.1 that logs ``root`` in with one password and answers each
    exec with ``ok`` (OpenSSH would need a real account's password)."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.host_key, _ = new_ed25519()
        self.port = unused_port()
        self._socket = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self._socket.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        login = _PasswordLogin(self.password)
        with paramiko.Transport(conn) as transport:
            transport.add_server_key(self.host_key)
            transport.start_server(server=login)
            channel = transport.accept(timeout=10)
            if channel is not None and login.exec_requested.wait(timeout=10):
                channel.sendall(b"ok\n")
                channel.send_exit_status(0)
                channel.close()
            wait_until(lambda: not transport.is_active(), timeout=10, interval=0.05, what="client to leave")


class _PasswordLogin(paramiko.ServerInterface):
    def __init__(self, password: str) -> None:
        self.password = password
        self.exec_requested = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = (username, password) == ("root", self.password)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.exec_requested.set()
        return True


@pytest.fixture
def password_server() -> Iterator[PasswordServer]:
    server = PasswordServer("right horse battery staple")
    yield server
    server.close()


def test_a_wrong_password_fails_authentication(password_server: PasswordServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(password_server.known_hosts_line())

    def target(password: str) -> SshTarget:
        return SshTarget(
            "127.0.0.1", password_server.port, password=Secret(password), known_hosts=known_hosts
        )

    assert run(target(password_server.password)) == "ok\n"  # the control: the right one logs in
    with pytest.raises(AuthenticationFailed) as info:
        run(target("wrong"))
    assert info.value.code == "auth" and not info.value.retryable


# -- reaching the server -----------------------------------------------------------------------


def test_nothing_listening_is_transient(sshd: SshServer, known_hosts: Path) -> None:
    target = SshTarget(
        "127.0.0.1", unused_port(), key_file=sshd.client_key, known_hosts=known_hosts, connect_timeout=2
    )
    with pytest.raises(ProviderUnavailable) as info:
        run(target)
    assert info.value.code == "unreachable" and info.value.retryable


def test_the_connection_is_kept_and_reopened_after_the_server_restarts(
    sshd: SshServer, known_hosts: Path
) -> None:
    with SshClient(sshd.target(known_hosts)) as client:
        first = client.exec("echo $SSH_CONNECTION", timeout=30).stdout
        assert client.exec("echo $SSH_CONNECTION", timeout=30).stdout == first  # one connection, two commands
        sshd.stop()  # kills the listener and our session, like a snapshot revert
        sshd.start()
        assert client.exec("echo $SSH_CONNECTION", timeout=30).stdout not in ("", first)


# -- timeouts ----------------------------------------------------------------------------------


def test_a_command_outliving_its_timeout_raises_and_does_not_hold_the_channel(
    sshd: SshServer, known_hosts: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "writer.pid"
    with SshClient(sshd.target(known_hosts)) as client:
        connection = client.exec("echo $SSH_CONNECTION", timeout=30).stdout
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as info:  # it writes every 0.1 s: each read succeeds
            client.exec(f"echo $$ > {pidfile}; while echo tick; do sleep 0.1; done", timeout=1)
        assert time.monotonic() - started < 3
        assert info.value.code == "timeout" and info.value.retryable
        writer = int(pidfile.read_text())
        wait_until(lambda: gone(writer), timeout=10, interval=0.05, what=f"remote writer {writer} to end")
        assert client.exec("echo $SSH_CONNECTION", timeout=30).stdout == connection  # still usable
