"""What every activity needs: error translation (retry meaning) and heartbeats for long calls.

* :func:`translated` turns :class:`providers.base.ProviderError` and
  :class:`orchestrator.errors.OrchestratorError` into ``ApplicationError`` whose ``type`` is the
  class name and whose ``non_retryable`` flag says whether Temporal may try again.
* :func:`heartbeating` heartbeats from a side thread while a blocking provider call runs (evacuation,
  reboot waits, patching), so a dead worker is noticed after the heartbeat timeout and a
  cancellation reaches the activity.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.errors import OrchestratorError
from orchestrator.retry import HEARTBEAT_S
from providers.base import ProviderError

P = ParamSpec("P")
R = TypeVar("R")

#: Seconds between heartbeats of a long call (the heartbeat timeout is 30 s, see orchestrator.retry).
HEARTBEAT_EVERY_S = min(5.0, HEARTBEAT_S / 3)


class OwnershipError(ApplicationError):
    """A snapshot or maintenance state is not provably ours: we refuse to touch it (never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="OwnershipError", non_retryable=True)


def application_error(exc: BaseException) -> ApplicationError:
    """The ApplicationError that carries ``exc``'s retry meaning across Temporal."""
    if isinstance(exc, ProviderError):
        return ApplicationError(
            str(exc),
            {"code": exc.code, "target": exc.target},
            type=type(exc).__name__,
            non_retryable=not exc.retryable,
        )
    if isinstance(exc, OrchestratorError):
        return ApplicationError(str(exc), {"code": exc.code}, type=type(exc).__name__, non_retryable=True)
    return ApplicationError(str(exc), type=type(exc).__name__)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for sync activities: provider/orchestrator errors become ApplicationErrors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (ProviderError, OrchestratorError) as exc:
            raise application_error(exc) from exc

    return wrapper


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
