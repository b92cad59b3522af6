"""A working session: the engine (server or cluster), the fact store, the context and the workers.

``async with Session(settings, address=..., worker=True) as session`` gives ``session.client``
with patchwave's workers running in this process (embedded mode always runs them; external mode
runs them when asked, e.g. ``patchwave serve``). Everything the CLI does goes through here.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, Self

from temporalio.client import Client

from orchestrator.config import Settings
from orchestrator.context import Context, ProviderOpener, open_site
from orchestrator.engine import Engine, EngineLost, workers
from orchestrator.facts import FactStore
from providers.base import SYSTEM_CLOCK, Clock


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
    ) -> None:
        self.settings = settings
        self.engine = Engine(settings, address=address, ui=ui)
        self.run_workers = (not self.engine.external) if worker is None else worker
        self._clock = clock
        self._log = log
        self._opener = opener
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
            self.facts = FactStore(self.settings.state.facts_path, clock=self._clock)
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
                    self._workers.enter_async_context(workers(self.client, self.context)),
                    step="engine",
                )
        except EngineLost:
            raise  # workers and the rest abandoned: the process exits next (see EngineLost)
        except BaseException:
            await self._workers.aclose()
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, EngineLost):
            # Abandoned with the dead server (see EngineLost), the process exits next: activities
            # in flight keep their providers and fact store until then instead of failing midway.
            return
        await self._workers.aclose()
        await self._stack.aclose()
