"""Non-retryable error types come from the error classes' ``retryable`` flag, not a hand-kept list."""

from __future__ import annotations

import orchestrator.engine.activities  # noqa: F401 - as in a worker: every activity (and error class) is loaded
from orchestrator.engine import retry
from orchestrator.engine.names import ActivityName
from orchestrator.errors import OrchestratorError
from providers.errors import ProviderError


def all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


def test_every_permanent_error_class_is_non_retryable_and_no_transient_one_is() -> None:
    names = set(retry.non_retryable_types())
    for cls in all_subclasses(ProviderError) | all_subclasses(OrchestratorError):
        assert (cls.__name__ in names) is (not cls.retryable), cls
    assert {"NotFound", "PackageManagerError", "HostKeyRejected", "ConfigError", "SettingsError"} <= names
    assert not {"ProviderTimeout", "GuestUnreachable", "GuestAgentUnavailable", "ResourceBusy"} & names


def test_the_activity_options_carry_them() -> None:
    policy = retry.options(ActivityName.VM_SNAPSHOT).retry_policy
    assert policy.non_retryable_error_types == retry.non_retryable_types()
    assert policy.maximum_attempts == retry.POLICIES["api_call"].maximum_attempts
