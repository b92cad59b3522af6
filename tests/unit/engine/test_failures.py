"""One failure-cause walk with one meaning, for the workflows (outcome errors) and the client (RunFailed)."""

from __future__ import annotations

import itertools

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    TimeoutError,
    TimeoutType,
)

from orchestrator.engine.failures import FailureCause, cause_of, describe
from orchestrator.engine.runs import run_failed


def chained(*errors: BaseException) -> BaseException:
    """``errors[0]`` caused by ``errors[1]`` caused by ... (as Temporal deserialises a failure)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


def activity_error() -> ActivityError:
    return ActivityError("Activity task failed", scheduled_event_id=5, started_event_id=6, identity="w",
                         activity_type="vm_snapshot", activity_id="1", retry_state=None)  # fmt: skip


def child_error() -> ChildWorkflowError:
    return ChildWorkflowError("Child Workflow execution failed", namespace="default", workflow_id="r/vm",
                              run_id="x", workflow_type="VmPatch", initiated_event_id=1, started_event_id=2,
                              retry_state=None)  # fmt: skip


def test_the_cause_is_the_error_the_activity_raised_not_the_sdk_error_below_it() -> None:
    err = chained(
        activity_error(),
        ApplicationError("snapshot locked [lab/web1]", type="ResourceBusy"),  # translated, raised from:
        ApplicationError("snapshot locked [lab/web1]", type="ResourceBusy"),
        ApplicationError("internal error: domain is locked", type="libvirtError"),
    )
    assert cause_of(err) == FailureCause("ResourceBusy", "snapshot locked [lab/web1]")
    assert describe(err) == "ResourceBusy: snapshot locked [lab/web1]"


def test_a_child_workflow_that_failed_on_an_activity_is_described_by_that_activity() -> None:
    err = chained(
        child_error(), activity_error(), ApplicationError("no route to host", type="GuestUnreachable")
    )
    assert describe(err) == "GuestUnreachable: no route to host"


def test_a_timeout_has_no_application_error_and_is_described_by_its_message() -> None:
    timeout = TimeoutError(
        "activity StartToClose timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
    )
    assert describe(chained(activity_error(), timeout)) == "activity StartToClose timeout"


def test_a_failed_run_is_bad_input_when_its_activity_raised_a_config_error() -> None:
    # PatchRun wraps the activity's failure: ApplicationError("run r failed: ...") from the ActivityError.
    wrapper = ApplicationError("run r failed: ConfigError: bad window", non_retryable=True)
    cause = chained(wrapper, activity_error(), ApplicationError("bad window", type="ConfigError"),
                    ApplicationError("invalid cron", type="ValueError"))  # fmt: skip
    failed = run_failed("r", WorkflowFailureError(cause=cause))
    assert failed.message == "bad window"
    assert failed.exit_code == 2


def test_a_failed_run_from_a_provider_error_is_not_bad_input() -> None:
    wrapper = ApplicationError("run r failed: AuthenticationFailed: 401", non_retryable=True)
    cause = chained(wrapper, activity_error(), ApplicationError("401", type="AuthenticationFailed"))
    failed = run_failed("r", WorkflowFailureError(cause=cause))
    assert (failed.message, failed.exit_code) == ("401", 1)


def test_a_run_refused_by_a_lease_is_the_lease_held_error_the_activity_raised() -> None:
    from orchestrator.engine.activities.translation import application_error
    from orchestrator.errors import LeaseHeld

    held = LeaseHeld("run-a", "run", ["web-1", "web-2"], since="2026-05-09T20:00:00+00:00")
    raised = application_error(held)
    wrapper = ApplicationError("run r failed: LeaseHeld: ...", non_retryable=True)
    failed = run_failed("r", WorkflowFailureError(cause=chained(wrapper, activity_error(), raised)))
    assert isinstance(failed, LeaseHeld) and failed.exit_code == 2
    assert failed.render() == held.render()
    assert failed.render().startswith(
        "error: lease: run run-a is active on these targets: web-1, web-2 (held since 2026-05-09T20:00:00+00:00)"
    )
