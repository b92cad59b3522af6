"""A loopback SSH server per simulated node (paramiko), for HA maintenance and node patching.

It accepts public-key logins for the keys registered with :meth:`Simulator.client_key`, runs one
``exec`` command per channel through :func:`tests.pvesim.commands.run_node` (``ha-manager``,
``apt-get``, ``uname``, ``reboot``, ...) and refuses connections while its node is offline.
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


class _Session(paramiko.ServerInterface):
    def __init__(self, authorized: Callable[[], list[paramiko.PKey]]) -> None:
        self.authorized = authorized
        self.command: str | None = None
        self.ready = threading.Event()

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
        self.command = command.decode()
        self.ready.set()
        return True


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
        transport = paramiko.Transport(conn)
        try:
            transport.add_server_key(self.host_key)
            session = _Session(self._authorized)
            transport.start_server(server=session)
            channel = transport.accept(timeout=10)
            if channel is None or not session.ready.wait(timeout=10) or session.command is None:
                return
            code, out, err = self._run(self.node, session.command)
            channel.sendall(out.encode())
            channel.sendall_stderr(err.encode())
            channel.send_exit_status(code)
            channel.shutdown_write()
            channel.close()
        except (paramiko.SSHException, OSError, EOFError):
            return
        finally:
            transport.close()
