"""Heartbeats of sync activities: a dead worker is noticed within the heartbeat timeout, and a
cancellation reaches the activity.

Every activity called with a heartbeat timeout heartbeats for its *whole* body
(:func:`orchestrator.engine.activities.translation.translated` wraps it in :func:`heartbeating`):
a probe before the long call — a boot id read over a slow guest agent, a provider lookup — must not
outlast the heartbeat timeout and fail an attempt that is alive (the attempt would go on in its
thread while Temporal starts the next one). Inside, ``heartbeating(detail)`` only names what the
activity is doing now; one side thread per activity sends the beats.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

from orchestrator.engine.retry import HEARTBEAT_S

#: Seconds between heartbeats of a long call (the heartbeat timeout is 30 s, see orchestrator.engine.retry).
HEARTBEAT_EVERY_S = min(5.0, HEARTBEAT_S / 3)


class _Running(threading.local):
    """The detail the activity thread's heartbeat thread sends, when one runs (a cell both share)."""

    detail: list[str] | None = None


_running = _Running()


@contextmanager
def heartbeating(detail: str = "") -> Iterator[None]:
    """Heartbeat every :data:`HEARTBEAT_EVERY_S` while the body runs (no-op outside an activity).
    Nested inside another ``heartbeating`` of the same activity it only changes the detail sent
    meanwhile."""
    if not activity.in_activity():
        yield
        return
    cell = _running.detail
    if cell is not None:  # the activity heartbeats already: say what it does now
        outer, cell[0] = cell[0], detail
        activity.heartbeat(detail)
        try:
            yield
        finally:
            cell[0] = outer
        return
    stop = threading.Event()
    context = contextvars.copy_context()
    cell = [detail]

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY_S):
            context.run(activity.heartbeat, cell[0])

    thread = threading.Thread(target=beat, name="patchwave-heartbeat", daemon=True)
    activity.heartbeat(detail)
    _running.detail = cell
    thread.start()
    try:
        yield
    finally:
        _running.detail = None
        stop.set()
        thread.join()


def beat(detail: str = "") -> None:
    """One heartbeat (inside polling loops); no-op outside an activity."""
    if activity.in_activity():
        activity.heartbeat(detail)
