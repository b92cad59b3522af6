"""Temporal for patchwave: the embedded dev server or an external cluster, and worker assembly.

* :class:`Engine` — ``async with Engine(settings, address=...) as engine``: embedded mode starts
  (or attaches to) the dev server of :mod:`orchestrator.engine.server` on ``[temporal] address``
  with its SQLite file in the state directory; external mode (``[temporal] mode = "external"`` or
  an explicit ``--temporal-address``) only connects. ``engine.client`` is a connected client.
  ``hold=True`` (run, resume, rollback) keeps the state directory's lock until
  :meth:`Engine.admitted`: the next process attaches only once this one's workflow holds its leases.
* :func:`workers` — one ``Worker`` for the workflow queue ``patchwave`` (plus the run-level
  activities) and one per site on ``patchwave-site-<site>`` for that site's activities. Activities
  are sync and run in one ``ThreadPoolExecutor``; everything runs in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Self, TypeVar

from temporalio.client import Client

from orchestrator.config.settings import Settings
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.ownership import Notice, owner_of
from orchestrator.engine.server import (
    DevServer,
    DevServerSpec,
    EngineError,
    TemporalUnreachable,
    probe,
)
from orchestrator.engine.state_disk import until_full
from orchestrator.errors import StateDiskFull

CONNECT_TIMEOUT_S = 5.0
T = TypeVar("T")


class EngineLost(EngineError):
    """The embedded Temporal server this process uses exited while we were using it (killed, out
    of memory, or the process that owns it exited). Its SQLite file keeps every workflow:
    ``patchwave resume`` continues.

    The session's workers are abandoned, not shut down (a graceful shutdown would retry the dead
    server for minutes and wait for activities in flight): the process should exit right away, as
    the CLI does (``abandons_process``). That is safe for the same reason a SIGKILLed worker is:
    every side effect was journaled first and every activity checks real state when it is retried.
    """

    code = "engine_lost"
    abandons_process = True


class StateDiskFilled(StateDiskFull):
    """The state directory's disk filled up under a running command: the embedded server stalls
    and the fact store's writes fail. The process reports it and exits at once, like
    :class:`EngineLost` (its workers are abandoned; SQLite kept every committed record)."""

    abandons_process = True


class Engine:
    """The Temporal server (embedded, supervised) or cluster (external) and a client for it."""

    def __init__(
        self,
        settings: Settings,
        *,
        address: str = "",
        ui: bool = False,
        startup_timeout_s: float = 30.0,
        hold: bool = False,
        notice: Notice | None = None,
    ) -> None:
        self.settings = settings
        self.external = bool(address) or settings.temporal.mode == "external"
        self.address = address or settings.temporal.address
        self.namespace = settings.temporal.namespace
        self._ui = ui
        self._startup_timeout_s = startup_timeout_s
        self._hold = hold
        self._notice = notice
        self._server: DevServer | None = None
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("Engine is not started: use `async with Engine(...)`")
        return self._client

    @property
    def embedded_server(self) -> DevServer | None:
        return self._server

    async def start(self) -> Client:
        if self.external:
            self._client = await connect(self.address, self.namespace)
            return self._client
        state = self.settings.state.dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec = DevServerSpec(
            binary=temporal_binary(self.settings.temporal.binary),
            db_file=self.settings.state.temporal_db,
            address=self.address,
            namespace=self.namespace,
            retention_s=self.settings.temporal.retention_s,
            ui=self._ui,
            log_file=state / "temporal.log",
            startup_timeout_s=self._startup_timeout_s,
        )
        self._server = DevServer(spec, notice=self._notice)
        self._client = await self._server.start(hold=self._hold)
        return self._client

    def admitted(self) -> None:
        """This process's workflow holds its leases: other processes may start or attach now."""
        if self._server is not None:
            self._server.release()

    async def supervise(self, work: Awaitable[T], *, step: str = "engine", fix: str = "") -> T:
        """Await ``work``, watching what it cannot see fail: if the embedded server we use goes away
        first — ours exits, or the process owning the one we attached to exits — cancel it and raise
        :class:`EngineLost` at once (instead of a client retrying a dead address for a long time); if
        the state directory's disk fills up, the same with :class:`StateDiskFilled` (the server
        stalls, see :mod:`~orchestrator.engine.state_disk`). An external cluster is not ours to
        watch, nor is its disk: ``work`` is simply awaited."""
        server = self._server
        task = asyncio.ensure_future(work)
        if server is None:
            return await task
        disk = asyncio.ensure_future(until_full(self.settings.state.dir))
        died = asyncio.ensure_future(server.gone())
        watchers = [disk, died]
        try:
            await asyncio.wait({task, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            for watcher in watchers:
                if not watcher.done():
                    watcher.cancel()
        if task.done():
            return task.result()
        # Not awaited: a client call in flight keeps retrying the dead address (or the stalled
        # server) for minutes before it sees the cancellation (the process exits right after).
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        then = fix or "run the command again"
        if died.done():
            raise EngineLost(
                f"{died.result()}; its database {self.settings.state.temporal_db} keeps the workflows",
                step=step,
                fix=then,
            )
        raise StateDiskFilled(
            self.settings.state.dir, then=then, step=step, detail=f"{disk.result()} bytes free"
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()  # ours: stopped; attached: our lock (if held) released
        self._server = None
        self._client = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def connect(address: str, namespace: str, *, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A client for an external Temporal; :class:`TemporalUnreachable` (exit 2) when nothing answers."""
    client = await probe(address, namespace, timeout_s=timeout_s)
    if client is None:
        raise TemporalUnreachable(
            f"no Temporal server answers at {address}",
            step="engine",
            fix="check --temporal-address / [temporal] address, or use the embedded mode",
        )
    return client


async def running_engine(settings: Settings, address: str = "") -> Client | None:
    """A client for the configured (or given) server if one is up — never starts one. A server on
    the embedded address that belongs to another state directory is refused
    (:class:`~orchestrator.engine.ownership.ServerOwnedElsewhere`): its runs are not ours."""
    if address or settings.temporal.mode == "external":
        return await connect(address or settings.temporal.address, settings.temporal.namespace)
    temporal, db = settings.temporal, settings.state.temporal_db
    client = await probe(temporal.address, temporal.namespace)
    if client is not None:
        pid_file = db.with_name(db.name + ".pid")
        await owner_of(client, temporal.namespace, temporal.address, db.parent.absolute(), pid_file, db)
    return client


@asynccontextmanager
async def engine_to_ask(
    settings: Settings, address: str = "", *, notice: Notice | None = None
) -> AsyncIterator[Client | None]:
    """A client for the Temporal that knows which workflows run: the cluster, the embedded server
    that is up, or — none is, but its database exists — the embedded server started just to ask
    (no workers here: nothing advances meanwhile; stopped afterwards). None: no engine state at all."""
    client = await running_engine(settings, address)
    external = address or settings.temporal.mode == "external"
    if client is not None or external or not settings.state.temporal_db.exists():
        yield client
        return
    async with Engine(settings, notice=notice) as engine:
        yield engine.client
