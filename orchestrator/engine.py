"""Temporal for patchwave: the embedded dev server or an external cluster, and worker assembly.

* :class:`Engine` — ``async with Engine(settings, address=...) as engine``: embedded mode starts
  (or reuses) the dev server of :mod:`orchestrator.devserver` on ``[temporal] address`` with its
  SQLite file in the state directory; external mode (``[temporal] mode = "external"`` or an
  explicit ``--temporal-address``) only connects. ``engine.client`` is a connected client.
* :func:`workers` — one ``Worker`` for the workflow queue ``patchwave`` (plus the run-level
  activities) and one per site on ``patchwave-site-<site>`` for that site's activities. Activities
  are sync and run in one ``ThreadPoolExecutor``; everything runs in this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Self, TypeVar

from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.activities import Activities
from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.devserver import (
    DevServer,
    DevServerSpec,
    EngineError,
    TemporalUnreachable,
    probe,
    temporal_binary,
)
from orchestrator.messages import CENTRAL_QUEUE, site_queue
from orchestrator.retry import RECOVERY_S
from orchestrator.vm_workflow import VmPatch, VmRollback
from orchestrator.workflows import PatchRun, RollbackRun

WORKFLOWS = [PatchRun, VmPatch, RollbackRun, VmRollback]
#: Activities in flight per worker; the shared thread pool is sized for all workers.
MAX_CONCURRENT_ACTIVITIES = 16
CONNECT_TIMEOUT_S = 5.0
T = TypeVar("T")


class EngineLost(EngineError):
    """The embedded Temporal server this process started exited while we were using it (killed,
    out of memory). Its SQLite file keeps every workflow: ``patchwave resume`` continues.

    The session's workers are abandoned, not shut down (a graceful shutdown would retry the dead
    server for minutes and wait for activities in flight): the process should exit right away, as
    the CLI does (``abandons_process``). That is safe for the same reason a SIGKILLed worker is:
    every side effect was journaled first and every activity checks real state when it is retried.
    """

    code = "engine_lost"
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
    ) -> None:
        self.settings = settings
        self.external = bool(address) or settings.temporal.mode == "external"
        self.address = address or settings.temporal.address
        self.namespace = settings.temporal.namespace
        self._ui = ui
        self._startup_timeout_s = startup_timeout_s
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
        self._server = DevServer(spec)
        self._client = await self._server.start()
        return self._client

    async def supervise(self, work: Awaitable[T], *, step: str = "engine", fix: str = "") -> T:
        """Await ``work``; if the embedded server we started exits first, cancel it and raise
        :class:`EngineLost` at once (instead of a client retrying a dead address for a long time).
        Reused servers and external clusters are not ours to watch: ``work`` is simply awaited."""
        server = self._server
        task = asyncio.ensure_future(work)
        if server is None or not server.owned:
            return await task
        pid = server.pid
        died = asyncio.ensure_future(server.exited())
        try:
            await asyncio.wait({task, died}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            if not died.done():
                died.cancel()
        if task.done():
            return task.result()
        # Not awaited: a client call in flight keeps retrying the dead address for minutes before
        # it sees the cancellation (the process exits right after EngineLost anyway).
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        status = died.result()
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise EngineLost(
            f"the embedded Temporal server (pid {pid}) {how}; "
            f"its database {self.settings.state.temporal_db} keeps the workflows",
            step=step,
            fix=fix or "run the command again",
        )

    async def stop(self) -> None:
        if self._server is not None and self._server.owned:
            await self._server.stop()
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


def build_workers(
    client: Client, ctx: Context, *, sites: Sequence[str], executor: ThreadPoolExecutor
) -> list[Worker]:
    """The workflow worker (``patchwave``) and one activity worker per site."""
    acts = Activities(ctx)
    common: dict = {"activity_executor": executor, "max_concurrent_activities": MAX_CONCURRENT_ACTIVITIES}
    if RECOVERY_S:  # crash-injection tests: a dead worker's sticky queue is given up quickly
        common["sticky_queue_schedule_to_start_timeout"] = timedelta(seconds=RECOVERY_S)
    central = Worker(
        client, task_queue=CENTRAL_QUEUE, workflows=WORKFLOWS, activities=acts.central(), **common
    )
    per_site = [
        Worker(client, task_queue=site_queue(site), activities=acts.site(), **common) for site in sites
    ]
    return [central, *per_site]


@asynccontextmanager
async def workers(
    client: Client, ctx: Context, *, sites: Sequence[str] | None = None
) -> AsyncIterator[list[Worker]]:
    """Run the workers in this process for the duration of the block; shut them down after."""
    sites = list(ctx.settings.sites if sites is None else sites)
    executor = ThreadPoolExecutor(
        max_workers=MAX_CONCURRENT_ACTIVITIES * (1 + len(sites)), thread_name_prefix="patchwave-activity"
    )
    try:
        async with AsyncExitStack() as stack:
            built = build_workers(client, ctx, sites=sites, executor=executor)
            for worker in built:
                await stack.enter_async_context(worker)
            yield built
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
