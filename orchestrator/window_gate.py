"""Maintenance windows inside ``PatchRun`` (workflow-side, deterministic).

A VM of a wave bound to a window starts only while the window is open and there is room for its
worst case before the cutoff: ``now + estimate + rollback <= end - cutoff``. Otherwise the run
waits durably (a timer) for the window to open, or for the next occurrence once this one is too
far gone. In-flight VMs are never interrupted. The window's occurrences come from the
``window_slot`` activity (the cron/RRULE, time zone and blackout dates live in the worker's
settings). Before sleeping until a window opens, ``before_open`` runs (the pre-notice); ``on_wait``
reports waiting / admitted (the run's status: paused / running). A window that never opens again
(an empty slot) admits nothing: ``admit`` returns False.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call
    from orchestrator.messages import CENTRAL_QUEUE, WindowQuery, WindowSlot
    from orchestrator.model import VmStep


WaitHook = Callable[[str, str], Awaitable[None]]
OpenHook = Callable[[str, datetime, datetime], Awaitable[None]]


async def _nothing(*_: object) -> None:
    return None


class WindowGate:
    def __init__(self, on_wait: WaitHook, before_open: OpenHook = _nothing) -> None:
        self._on_wait = on_wait  # (window, until ISO) while waiting; ("", "") when admitted
        self._before_open = before_open  # (window, start, end) before sleeping until the window opens
        self._slots: dict[str, WindowSlot] = {}

    async def admit(self, window: str, step: VmStep) -> bool:
        """True once ``step`` may start in ``window`` (waiting durably as long as needed); False when
        the window never opens again."""
        need = step.est_duration_s + step.est_rollback_s
        while True:
            now = workflow.now()
            slot = await self._slot(window, now)
            if not slot.start:
                await self._on_wait("", "")
                return False
            start, end, cutoff = (datetime.fromisoformat(v) for v in (slot.start, slot.end, slot.cutoff))
            usable = (cutoff - start).total_seconds()
            if start <= now and (now.timestamp() + min(need, usable) <= cutoff.timestamp()):
                await self._on_wait("", "")
                return True
            wake = start if now < start else end  # too late in this occurrence: wait for the next
            await self._on_wait(window, wake.isoformat(timespec="seconds"))
            if now < start:
                await self._before_open(window, start, end)
                now = workflow.now()
            if wake > now:
                await workflow.sleep(wake - now)

    async def _slot(self, window: str, now: datetime) -> WindowSlot:
        cached = self._slots.get(window)
        if cached is None or not cached.end or now >= datetime.fromisoformat(cached.end):
            cached = await call(
                "window_slot",
                WindowQuery(window, now.isoformat()),
                result_type=WindowSlot,
                queue=CENTRAL_QUEUE,
            )
            self._slots[window] = cached
        return cached
