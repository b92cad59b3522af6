"""A loopback SSH server per simulated node (paramiko), for HA maintenance and node patching.

It accepts public-key logins for the keys registered with :meth:`Simulator.client_key`, runs one
``exec`` command per channel (several channels per connection, one after another) through
:func:`tests.simulators.pvesim.commands.run_node` (``ha-manager``, ``apt-get``, ``uname``, ``reboot``, ...) and
refuses connections (and drops open ones) while its node is offline.
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def new_ed25519() -> tuple[paramiko.Ed25519Key, str]:
    """A fresh key as a paramiko key plus its OpenSSH private-key text."""
    private = ed25519.Ed25519PrivateKey.generate()
    text = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    return paramiko.Ed25519Key(file_obj=io.StringIO(text)), text


#: A connection without a new session for this long is closed by the server.
IDLE_TIMEOUT_S = 60.0


class _Session(paramiko.ServerInterface):
    def __init__(self, authorized: Callable[[], list[paramiko.PKey]]) -> None:
        self.authorized = authorized
        self.commands: dict[int, str] = {}  # channel id -> its exec command
        self.ready = threading.Condition()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if any(key == k for k in self.authorized()):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return (
            paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        )

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        with self.ready:
            self.commands[channel.get_id()] = command.decode()
            self.ready.notify_all()
        return True

    def command_for(self, channel: Any, timeout: float) -> str | None:
        with self.ready:
            self.ready.wait_for(lambda: channel.get_id() in self.commands, timeout=timeout)
            return self.commands.pop(channel.get_id(), None)


class NodeSshServer:
    def __init__(
        self,
        node: str,
        host_key: paramiko.PKey,
        authorized: Callable[[], list[paramiko.PKey]],
        run: Callable[[str, str], tuple[int, str, str]],
        online: Callable[[str], bool],
    ) -> None:
        self.node = node
        self.host_key = host_key
        self._authorized, self._run, self._online = authorized, run, online
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._accept = threading.Thread(target=self._loop, name=f"pvesim-ssh-{node}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        self._accept.start()

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._socket.close()
        self._accept.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            if not self._online(self.node):
                conn.close()  # a rebooting node refuses connections
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        """One connection: any number of sessions, one ``exec`` each, one after another (like
        sshd); the connection drops when the node goes offline (a reboot) or the server stops."""
        transport = paramiko.Transport(conn)
        try:
            transport.add_server_key(self.host_key)
            session = _Session(self._authorized)
            transport.start_server(server=session)
            idle = 0.0
            while transport.is_active() and not self._stopped.is_set() and idle < IDLE_TIMEOUT_S:
                channel = transport.accept(timeout=0.5)
                if channel is None:
                    idle += 0.5
                    continue
                idle = 0.0
                command = session.command_for(channel, timeout=10)
                if command is None or not self._online(self.node):
                    channel.close()
                    return
                code, out, err = self._run(self.node, command)
                channel.sendall(out.encode())
                channel.sendall_stderr(err.encode())
                channel.send_exit_status(code)
                channel.shutdown_write()
                channel.close()
        except (paramiko.SSHException, OSError, EOFError):
            return
        finally:
            transport.close()
