"""A real OpenSSH server for the SSH tests: ``/usr/sbin/sshd -D -e -f <tmp config>`` as root on
127.0.0.1 (a port from :func:`tests.support.loopback.unused_port`), with a temporary host key and
``authorized_keys``. Needs root and openssh-server (``.ci/setup-guests.sh`` installs it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.ssh import SshTarget
from tests.support.loopback import unused_port

SSHD = Path("/usr/sbin/sshd")


def require_root(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd logs in as root and chroot(8) needs it (CI runs as root)")
    for tool in tools:
        if shutil.which(tool) is None and not Path(tool).exists():
            pytest.skip(f"{tool} is not installed; run .ci/setup-guests.sh")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def gone(pid: int) -> bool:
    """``pid`` has exited (or is a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@dataclass
class SshServer:
    dir: Path
    port: int
    host_pub: str  # "ssh-ed25519 AAAA... comment"
    client_key: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        log = (self.dir / "sshd.log").open("ab")
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log, start_new_session=True
        )
        for _ in range(200):  # bounded: ~10 s
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()[-2000:]}")
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def stop(self) -> None:
        """Kill the listener and every session it forked (as a snapshot revert would)."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def known_hosts_line(self, pub: str | None = None) -> str:
        kind, blob = (pub or self.host_pub).split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def target(self, known_hosts: Path, **kw: object) -> SshTarget:
        """Root on this server with the authorised client key; ``kw`` overrides any field."""
        fields: dict[str, object] = {"key_file": self.client_key, "connect_timeout": 5.0, **kw}
        return SshTarget("127.0.0.1", self.port, "root", known_hosts=known_hosts, **fields)  # type: ignore[arg-type]


def start_sshd(d: Path) -> SshServer:
    """A started server whose files live in ``d``; stop it with :meth:`SshServer.stop`."""
    require_root(str(SSHD), "ssh-keygen")
    host_pub = keygen(d / "host_ed25519")
    client_pub = keygen(d / "client_ed25519")
    (d / "authorized_keys").write_text(client_pub + "\n")
    server = SshServer(dir=d, port=unused_port(), host_pub=host_pub, client_key=d / "client_ed25519")
    server.config.write_text(
        textwrap.dedent(
            f"""\
            Port {server.port}
            ListenAddress 127.0.0.1
            HostKey {d}/host_ed25519
            PidFile {d}/sshd.pid
            AuthorizedKeysFile {d}/authorized_keys
            UsePAM no
            PermitRootLogin prohibit-password
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            StrictModes no
            AcceptEnv LANG LC_*
            LogLevel INFO
            """
        )
    )
    server.start()
    return server
