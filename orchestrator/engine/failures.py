"""Why a Temporal call failed, in one line: the cause an activity or child workflow raised.

One meaning for the workflows (a VM's or host's error, a log line) and for the client (the
:class:`~orchestrator.errors.RunFailed` of a failed run and whether it was bad input): below the
innermost Temporal boundary of the chain (``ActivityError`` / ``ChildWorkflowError``; the top of
the chain when there is none), the first ``ApplicationError`` — its ``type`` (the error class the
activity raised, :mod:`orchestrator.engine.activities.translation`) and its message. Deeper
causes (the SDK exception a provider error was translated from) are detail, not the reason.
Without an ``ApplicationError`` there (a timeout, a cancellation) the innermost message is the
reason.

Pure (no I/O): imported by the deterministic workflows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError


@dataclass(frozen=True)
class FailureCause:
    type: str  # the ApplicationError's type (the raised error's class name); "" when there is none
    message: str
    #: An OrchestratorError's own parts (its ApplicationError details): the message without the
    #: "(fix: ...)" it carries, and that fix. "" when the cause is not one or named no fix.
    reason: str = ""
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.type else self.message


def _chain(err: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = err
    while current is not None:
        yield current
        current = current.cause if isinstance(current, FailureError) else current.__cause__


def _message(err: BaseException) -> str:
    return err.message if isinstance(err, FailureError) else str(err)


def cause_of(err: BaseException) -> FailureCause:
    """The cause of ``err`` (see the module docstring for which one)."""
    chain = list(_chain(err))
    boundaries = [i for i, e in enumerate(chain) if isinstance(e, (ActivityError, ChildWorkflowError))]
    below = chain[boundaries[-1] + 1 :] if boundaries else chain
    for current in below:
        if isinstance(current, ApplicationError):
            parts = _operator_parts(current)
            return FailureCause(
                current.type or "", current.message, parts.get("reason", ""), parts.get("fix", "")
            )
    return FailureCause("", next((m for e in reversed(chain) if (m := _message(e))), str(err)))


def _operator_parts(err: ApplicationError) -> dict[str, str]:
    """``reason``/``fix`` from the details an OrchestratorError was raised with (translation.py)."""
    details = err.details[0] if err.details else None
    if not isinstance(details, dict):
        return {}
    return {key: details[key] for key in ("reason", "fix") if isinstance(details.get(key), str)}


def describe(err: BaseException) -> str:
    """One line for an outcome's error or a log: ``"Type: message"`` (see :func:`cause_of`)."""
    return str(cause_of(err))
