"""TODO docstring."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

from orchestrator.engine.retry import HEARTBEAT_S

#: Seconds between heartbeats of a long call (the heartbeat timeout is 30 s, see orchestrator.engine.retry).
HEARTBEAT_EVERY_S = min(5.0, HEARTBEAT_S / 3)


@contextmanager
def heartbeating(detail: str = "", *, every_s: float = HEARTBEAT_EVERY_S) -> Iterator[None]:
    """Heartbeat every ``every_s`` while the body runs (no-op outside an activity)."""
    if not activity.in_activity():
        yield
        return
    stop = threading.Event()
    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(every_s):
            context.run(activity.heartbeat, detail)

    thread = threading.Thread(target=beat, name="patchwave-heartbeat", daemon=True)
    activity.heartbeat(detail)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def beat(detail: str = "") -> None:
    """One heartbeat (inside polling loops); no-op outside an activity."""
    if activity.in_activity():
        activity.heartbeat(detail)
