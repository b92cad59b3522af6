"""A working session: the engine (server or cluster), the fact store, the context and the workers.

``async with Session(settings, address=..., worker=True) as session`` gives ``session.client``
with patchwave's workers running in this process (embedded mode always runs them; external mode
runs them when asked, e.g. ``patchwave serve``); ``roles`` chooses which of them (the central
queue and/or some sites' queues, :class:`~orchestrator.engine.workers.Roles`). Everything the CLI does goes through here.
``hold``/``notice``: see :class:`~orchestrator.engine.connection.Engine` (the state directory's
lock kept until :meth:`Engine.admitted`; what the caller is told about whose server it uses).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, Self

from temporalio.client import Client

from orchestrator.config.settings import Settings
from orchestrator.context import Context, ProviderOpener, open_site
from orchestrator.engine.connection import Engine, EngineLost, StateDiskFilled
from orchestrator.engine.ownership import Notice
from orchestrator.engine.workers import EVERYTHING, Roles, workers
from orchestrator.facts.store import FactStore, open_store
from providers.timing import SYSTEM_CLOCK, Clock


class Session:
    def __init__(
        self,
        settings: Settings,
        *,
        address: str = "",
        worker: bool | None = None,
        ui: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        log: Any = None,
        opener: ProviderOpener = open_site,
        hold: bool = False,
        notice: Notice | None = None,
        roles: Roles = EVERYTHING,
    ) -> None:
        self.settings = settings
        self.engine = Engine(settings, address=address, ui=ui, hold=hold, notice=notice)
        self.run_workers = (not self.engine.external) if worker is None else worker
        self._clock = clock
        self._log = log
        self._opener = opener
        self.roles = roles
        self._stack = AsyncExitStack()
        self._workers = AsyncExitStack()
        self.facts: FactStore | None = None
        self.context: Context | None = None

    @property
    def client(self) -> Client:
        return self.engine.client

    async def __aenter__(self) -> Self:
        stack = self._stack
        await stack.__aenter__()
        try:
            self.facts = open_store(self.settings, clock=self._clock)
            stack.callback(self.facts.close)
            await stack.enter_async_context(self.engine)
            if self.run_workers:
                self.context = Context(
                    self.settings, self.facts, clock=self._clock, log=self._log, opener=self._opener
                )
                stack.callback(self.context.close)
                await self._workers.__aenter__()
                # Workers validate the namespace first: a server that dies meanwhile is EngineLost.
                await self.engine.supervise(
                    self._workers.enter_async_context(workers(self.client, self.context, roles=self.roles)),
                    step="engine",
                )
        except (EngineLost, StateDiskFilled):
            raise  # workers and the rest abandoned: the process exits next (see EngineLost)
        except BaseException:
            await self._workers.aclose()
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if getattr(exc, "abandons_process", False):  # EngineLost, StateDiskFilled
            # Abandoned with the dead server (see EngineLost), the process exits next: activities
            # in flight keep their providers and fact store until then instead of failing midway.
            return
        await self._workers.aclose()
        await self._stack.aclose()
