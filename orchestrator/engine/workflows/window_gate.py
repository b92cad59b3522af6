"""Maintenance windows inside ``PatchRun`` (workflow-side, deterministic).

``HostBatch`` gates each host the same way with :meth:`WindowGate.admit_need` (the need: the rest of
its failure domain's worst case; :mod:`orchestrator.windows.hosts`).

A VM of a wave bound to a window starts only when :func:`orchestrator.windows.admits` says so —
the planner's rule: the window is open and ``now + estimate + rollback <= end - cutoff``.
Otherwise the run waits durably (a timer) until :func:`orchestrator.windows.retry_at`: the
window's opening, or the end of an occurrence that is too far gone (then the next one). In-flight
VMs are never interrupted (a VM prepared ahead of its concurrency slot is admitted again, without
waiting, when it takes the slot: :meth:`WindowGate.admits_now`). The occurrence comes from the ``window_slot`` activity
(:func:`orchestrator.windows.occurrence_at`; the cron/RRULE, time zone and blackout dates live in
the worker's settings), so the gate decides exactly as the planner's
:func:`orchestrator.windows.next_admission` predicts. Before sleeping until a window opens,
``before_open`` runs (the pre-notice); ``on_wait`` reports waiting / admitted (the run's status:
paused / running). A window that never opens again, or that the VM never fits in, admits nothing:
``admit`` returns why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import CENTRAL_QUEUE, WindowQuery, WindowSlot
    from orchestrator.engine.workflows.calls import call
    from orchestrator.model import VmStep
    from orchestrator.windows import Occurrence, admits, retry_at


WaitHook = Callable[[str, str], Awaitable[None]]
OpenHook = Callable[[str, datetime, datetime], Awaitable[None]]
SlotQuery = Callable[[WindowQuery], Awaitable[WindowSlot]]


async def _nothing(*_: object) -> None:
    return None


async def ask_window_slot(query: WindowQuery) -> WindowSlot:
    """Ask the ``window_slot`` activity for the occurrence to look at."""
    return await call(ActivityName.WINDOW_SLOT, query, result_type=WindowSlot, queue=CENTRAL_QUEUE)


async def _sleep(duration: timedelta) -> None:
    await workflow.sleep(duration)


def occurrence_of(slot: WindowSlot) -> Occurrence | None:
    """The slot as an :class:`Occurrence` (``None``: the window does not open again)."""
    if not slot.start:
        return None
    return Occurrence(*(datetime.fromisoformat(v) for v in (slot.start, slot.end, slot.cutoff)))


class WindowGate:
    """``slot``, ``now`` and ``sleep`` default to the activity and the workflow's clock and timers
    (tests pass their own: the gate's decisions are then checked without a Temporal server)."""

    def __init__(
        self,
        on_wait: WaitHook,
        before_open: OpenHook = _nothing,
        *,
        slot: SlotQuery = ask_window_slot,
        now: Callable[[], datetime] = workflow.now,
        sleep: Callable[[timedelta], Awaitable[None]] = _sleep,
    ) -> None:
        self._on_wait = on_wait  # (window, until ISO) while waiting; ("", "") when admitted
        self._before_open = before_open  # (window, start, end) before sleeping until the window opens
        self._query, self._now, self._sleep = slot, now, sleep
        self._slots: dict[str, WindowSlot] = {}

    async def admit(self, window: str, step: VmStep) -> str:
        """``""`` once ``step`` may start in ``window`` (waiting durably as long as needed); else why
        it never will (the window does not open again, or the VM does not fit in it)."""
        return await self.admit_need(
            window, step.est_duration_s + step.est_rollback_s, "its estimate plus worst-case rollback"
        )

    async def admit_need(self, window: str, need: int, what: str) -> str:
        """``""`` once work needing ``need`` seconds may start in ``window`` (the same loop as
        :func:`orchestrator.windows.next_admission`); else why it never will (``what`` names the need)."""
        while True:
            now = self._now()
            occurrence = occurrence_of(await self._slot(window, now))
            if occurrence is None:
                await self._on_wait("", "")
                return f"window {window!r} does not open again"
            if admits(occurrence, now, need):
                await self._on_wait("", "")
                return ""
            wake = retry_at(occurrence, now, need)
            if wake is None:  # the planner blocks such a VM: never wait for a window it cannot fit in
                await self._on_wait("", "")
                return f"{what} ({need}s) does not fit in window {window!r}"
            await self._on_wait(window, wake.isoformat(timespec="seconds"))
            if now < occurrence.start:
                await self._before_open(window, occurrence.start, occurrence.end)
                now = self._now()
            if wake > now:
                await self._sleep(wake - now)

    async def admits_now(self, window: str, step: VmStep) -> bool:
        """Would ``step`` start in ``window`` now (no waiting)? A VM prepared ahead of its slot asks
        again when it takes the slot: the window may have moved on while it waited."""
        now = self._now()
        occurrence = occurrence_of(await self._slot(window, now))
        return occurrence is not None and admits(occurrence, now, step.est_duration_s + step.est_rollback_s)

    async def _slot(self, window: str, now: datetime) -> WindowSlot:
        cached = self._slots.get(window)
        if cached is None or not cached.end or now >= datetime.fromisoformat(cached.end):
            cached = await self._query(WindowQuery(window, now.isoformat()))
            self._slots[window] = cached
        return cached
