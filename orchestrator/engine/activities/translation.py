"""What every activity needs: error translation (retry meaning) and heartbeats for long calls.

* :func:`translated` turns :class:`providers.errors.ProviderError` and
  :class:`orchestrator.errors.OrchestratorError` into ``ApplicationError`` whose ``type`` is the
  class name and whose ``non_retryable`` flag says whether Temporal may try again.
* An activity called with a heartbeat timeout heartbeats for its whole body
  (:func:`orchestrator.engine.activities.heartbeat.heartbeating`, from a side thread), so a dead
  worker is noticed after the heartbeat timeout, a cancellation reaches the activity, and a slow
  probe before the long call (a boot id over a busy guest agent) never times a live attempt out.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.state_disk import is_disk_full
from orchestrator.errors import OrchestratorError, StateDiskFull
from providers.errors import ProviderError

P = ParamSpec("P")
R = TypeVar("R")


class OwnershipError(ApplicationError):
    """A snapshot or maintenance state is not provably ours: we refuse to touch it (never retried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type="OwnershipError", non_retryable=True)


def application_error(exc: BaseException) -> ApplicationError:
    """The ApplicationError that carries ``exc``'s retry meaning across Temporal."""
    if isinstance(exc, ProviderError):
        details: dict[str, object] = {"code": exc.code, "target": exc.target}
        if getattr(exc, "fix", ""):  # EndpointInvalid: the message and its fix apart, like below
            details.update(reason=exc.message, fix=exc.fix)  # type: ignore[attr-defined]
        return ApplicationError(str(exc), details, type=type(exc).__name__, non_retryable=not exc.retryable)
    if isinstance(exc, OrchestratorError):
        details = {"code": exc.code, "reason": f"{exc.step}: {exc.message}" if exc.step else exc.message,
                   "fix": exc.fix, **exc.details}  # fmt: skip
        return ApplicationError(str(exc), details, type=type(exc).__name__, non_retryable=not exc.retryable)
    return ApplicationError(str(exc), type=type(exc).__name__)


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for sync activities: provider/orchestrator errors become ApplicationErrors, and a
    write that did not fit in the state directory (the fact store's disk is full) a retryable
    ``StateDiskFull`` that says so. Called with a heartbeat timeout, the activity heartbeats from
    its first line to its last."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            if activity.in_activity() and activity.info().heartbeat_timeout:
                with heartbeating(activity.info().activity_type):
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        except (ProviderError, OrchestratorError) as exc:
            raise application_error(exc) from exc
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc):
                raise application_error(StateDiskFull(None, then="", detail=str(exc))) from exc
            raise

    return wrapper
