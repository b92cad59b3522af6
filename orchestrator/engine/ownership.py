"""Who owns the embedded Temporal server of a state directory, and the lock that serialises it.

One embedded server has one owner: the process that started it (``<state>/temporal.db.pid`` says
"<server pid> <owner pid>"); it stops when that process exits. Another process of the same state
directory *attaches* to it as a client (and is told so); a process of another state directory
that finds it on its address is refused.

* :class:`StateLock` — an exclusive ``flock`` on ``<state>/temporal.db.lock``, held while a process
  looks for, starts, attaches to or stops the server (never two ``temporal server start-dev`` on one
  SQLite file), and by ``run``/``resume``/``rollback`` until their workflow holds its leases (a
  second process attaches only after that, so the owner is never the one refused while another
  process depends on its server). The kernel drops it when its holder dies.
* :func:`mark` / :func:`marked_by` — the owning state directory and owner pid, kept in the
  Temporal namespace's ``data`` map (the server's own SQLite file), read by every process that
  finds a server on its address.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.namespace.v1 import UpdateNamespaceInfo
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client

from orchestrator.engine.server_files import process_alive, read_pid_file, server_pid
from orchestrator.errors import OrchestratorError

MARK_STATE_DIR = "patchwave_state_dir"
MARK_OWNER_PID = "patchwave_owner_pid"
#: How long a process waits for another one's start / admission / stop (then it gives up).
LOCK_WAIT_S = 600.0
#: After this long waiting, the waiter is told who it waits for.
LOCK_NOTICE_S = 1.0

Notice = Callable[[str], None]


class ServerOwnedElsewhere(OrchestratorError):
    """The address answers with the embedded server of another state directory: never reused
    (its workers would refuse our runs, ours would run its workflows)."""

    exit_code = 2
    code = "engine"

    def __init__(self, address: str, state_dir: str, pid: int | None) -> None:
        owner = f" (pid {pid})" if pid else ""
        super().__init__(
            f"{address} is the embedded Temporal server of state dir {state_dir}{owner}",
            step="engine",
            fix="set [temporal] address to another port for this state dir",
        )


def command_of(pid: int) -> str:
    """What process ``pid`` runs, for messages: "patchwave run --run-id X" ("" when unknown)."""
    try:
        argv = [
            a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a
        ]
    except OSError:
        return ""
    for index, arg in enumerate(argv):
        name = Path(arg).name
        if name == "patchwave" or arg == "orchestrator.cli" or arg.endswith("orchestrator/cli/__main__.py"):
            return " ".join(["patchwave", *_without_options(argv[index + 1 :])])[:200]
    return " ".join(argv)[:200]


def _without_options(args: list[str]) -> list[str]:
    """The command words and its arguments, without the global options before it (config path...)."""
    shown: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif not shown and arg.startswith("-"):
            skip = "=" not in arg and arg in (
                "-c",
                "--config",
                "--state-dir",
                "--log-format",
                "--temporal-address",
            )
        else:
            shown.append(arg)
    return shown


@dataclass(frozen=True)
class ServerOwner:
    """The process that started (and will stop) the embedded server."""

    pid: int
    server_pid: int | None = None
    command: str = ""

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" ({self.command})" if self.command else "")

    def alive(self) -> bool:
        return process_alive(self.pid) and (self.server_pid is None or process_alive(self.server_pid))


class StateLock:
    """An exclusive ``flock`` on ``path``; the holder's pid and command are written into it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        try:
            pid = int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return "another process"
        return str(ServerOwner(pid, None, command_of(pid)))

    async def acquire(self, *, timeout_s: float = LOCK_WAIT_S, notice: Notice | None = None) -> bool:
        """Take the lock (waiting up to ``timeout_s``); False when another process kept it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        loop = asyncio.get_running_loop()
        start, told = loop.time(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = loop.time() - start
                if waited > timeout_s:
                    os.close(fd)
                    return False
                if notice is not None and not told and waited >= LOCK_NOTICE_S:
                    notice(
                        f"waiting for {self.holder()}, which is starting or using the embedded Temporal server"
                    )
                    told = True
                await asyncio.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


async def mark(client: Client, namespace: str, state_dir: Path) -> None:
    """Record ``state_dir`` and this process as the owner of the server ``client`` talks to."""
    data = {MARK_STATE_DIR: str(state_dir), MARK_OWNER_PID: str(os.getpid())}
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(namespace=namespace, update_info=UpdateNamespaceInfo(data=data))
    )


async def marked_by(client: Client, namespace: str) -> tuple[str, int | None]:
    """(state directory, owner pid) recorded on the server ("" when it carries no mark)."""
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    data = described.namespace_info.data
    pid = data.get(MARK_OWNER_PID, "")
    return data.get(MARK_STATE_DIR, ""), int(pid) if pid.isdigit() else None


async def owner_of(
    client: Client, namespace: str, address: str, state_dir: Path, pid_file: Path, db_file: Path
) -> ServerOwner | None:
    """The live process (not this one) that owns the server ``client`` reached for ``state_dir``;
    :class:`ServerOwnedElsewhere` when the server is marked with another state directory."""
    marked, marked_pid = await marked_by(client, namespace)
    if marked and Path(marked) != state_dir:
        raise ServerOwnedElsewhere(address, marked, marked_pid)
    recorded = read_pid_file(pid_file)
    pid = recorded[1] if recorded and server_pid(pid_file, db_file) else marked_pid
    if pid is None or pid == os.getpid() or not process_alive(pid):
        return None
    return ServerOwner(pid, recorded[0] if recorded else None, command_of(pid))
