"""Maintenance windows inside ``PatchRun`` (workflow-side, deterministic).

A VM of a wave bound to a window starts only while the window is open and there is room for its
worst case before the cutoff: ``now + estimate + rollback <= end - cutoff``. Otherwise the run
waits durably (a timer) for the window to open, or for the next occurrence once this one is too
far gone. In-flight VMs are never interrupted. The window's occurrences come from the
``window_slot`` activity (the cron and time zone live in the worker's settings).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call
    from orchestrator.messages import CENTRAL_QUEUE, WindowQuery, WindowSlot
    from orchestrator.model import VmStep


class WindowGate:
    def __init__(self, on_wait: Callable[[str, str], None]) -> None:
        self._on_wait = on_wait  # (window, until ISO) while waiting; ("", "") when admitted
        self._slots: dict[str, WindowSlot] = {}

    async def admit(self, window: str, step: VmStep) -> None:
        """Return once ``step`` may start in ``window`` (waiting durably as long as needed)."""
        need = step.est_duration_s + step.est_rollback_s
        while True:
            now = workflow.now()
            slot = await self._slot(window, now)
            start, end, cutoff = (datetime.fromisoformat(v) for v in (slot.start, slot.end, slot.cutoff))
            usable = (cutoff - start).total_seconds()
            if start <= now and (now.timestamp() + min(need, usable) <= cutoff.timestamp()):
                self._on_wait("", "")
                return
            wake = start if now < start else end  # too late in this occurrence: wait for the next
            self._on_wait(window, wake.isoformat(timespec="seconds"))
            await workflow.sleep(wake - now)

    async def _slot(self, window: str, now: datetime) -> WindowSlot:
        cached = self._slots.get(window)
        if cached is None or now >= datetime.fromisoformat(cached.end):
            cached = await call(
                "window_slot",
                WindowQuery(window, now.isoformat()),
                result_type=WindowSlot,
                queue=CENTRAL_QUEUE,
            )
            self._slots[window] = cached
        return cached
