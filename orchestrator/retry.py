"""Named retry policies and per-activity options for Temporal — the one place they are defined.

``providers.base`` names the in-process (tenacity) policies; this module maps the same names onto
:class:`temporalio.common.RetryPolicy` and adds the activity-level ones (patching, reboot waits,
health, maintenance exit). Every activity the workflows call has one row in :data:`ACTIVITIES`:
its retry policy, its ``start_to_close`` timeout and, for long calls, a ``heartbeat`` timeout.

Permanent errors never retry: activities raise ``ApplicationError(non_retryable=True)`` for
:class:`providers.base.PermanentProviderError`, and the class names below are listed as
``non_retryable_error_types`` as a second guard.

Imported by the deterministic workflows: no I/O here, only values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from providers import base

#: Crash-recovery knob for tests (crash injection): ``PATCHWAVE_RECOVERY_S=N`` makes a killed
#: worker's work come back after ~N seconds instead of 10-60 s: the workflow-task timeout and the
#: sticky-queue timeout become N, the heartbeat timeout N (heartbeats every N/3), and activities
#: without heartbeats get a start_to_close of at most max(15, 5 N); retries start after at most N s.
#: Unset (0) = production values.
RECOVERY_S = float(os.environ.get("PATCHWAVE_RECOVERY_S", "0") or 0)
#: Workflow-task timeout for PatchRun and its children (None = the server's default, 10 s).
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=RECOVERY_S) if RECOVERY_S else None

#: Error type names (``ApplicationError.type``) that must never be retried.
NON_RETRYABLE: tuple[str, ...] = (
    "PermanentProviderError",
    "NotFound",
    "AuthenticationFailed",
    "OperationRefused",
    "CapabilityMissing",
    "SdkMissing",
    "PackageManagerError",
    "ConfigError",
    "SettingsError",
    "OwnershipError",
    "ConfigMismatch",
)


def temporal_policy(policy: base.RetryPolicy) -> RetryPolicy:
    """The Temporal equivalent of one of ``providers.base``'s named policies."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=policy.initial_s),
        backoff_coefficient=policy.multiplier,
        maximum_interval=timedelta(seconds=policy.max_s),
        maximum_attempts=policy.max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


def _policy(attempts: int, initial_s: float, max_s: float) -> RetryPolicy:
    if RECOVERY_S:
        initial_s = min(initial_s, RECOVERY_S)
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=max_s),
        maximum_attempts=attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: Name -> Temporal retry policy. ``api_call``/``lock_wait`` mirror ``providers.base.POLICIES``.
POLICIES: dict[str, RetryPolicy] = {
    "api_call": temporal_policy(base.API_CALL),
    "lock_wait": temporal_policy(base.LOCK_WAIT),
    # Patching is idempotent (checks installed versions first) but slow: a few attempts only.
    "guest_patch": _policy(attempts=3, initial_s=10.0, max_s=60.0),
    # A reboot wait that timed out may succeed on a second look; never loop for long.
    "reboot_wait": _policy(attempts=3, initial_s=5.0, max_s=30.0),
    # Health activities poll internally until their deadline; one retry covers a lost worker.
    "health": _policy(attempts=2, initial_s=1.0, max_s=5.0),
    # Leaving maintenance must happen: many attempts, long backoff.
    "maintenance_exit": _policy(attempts=20, initial_s=5.0, max_s=120.0),
    # Fact-store bookkeeping: local SQLite, quick retries.
    "bookkeeping": _policy(attempts=10, initial_s=0.5, max_s=10.0),
}


@dataclass(frozen=True)
class ActivityOptions:
    """How the workflows call one activity."""

    policy: str
    start_to_close_s: float
    heartbeat_s: float | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        return POLICIES[self.policy]

    @property
    def start_to_close(self) -> timedelta:
        return timedelta(seconds=self.start_to_close_s)

    @property
    def heartbeat(self) -> timedelta | None:
        return None if self.heartbeat_s is None else timedelta(seconds=self.heartbeat_s)


#: Heartbeat timeout for long activities: a dead worker is noticed within this time.
HEARTBEAT_S = RECOVERY_S or 30.0

#: Activity name -> options. Long activities heartbeat (see ``orchestrator.activity_support``).
ACTIVITIES: dict[str, ActivityOptions] = {
    # central queue (fact store and planner)
    "run_setup": ActivityOptions("bookkeeping", 60),
    "plan_run": ActivityOptions("bookkeeping", 300),
    "set_run_status": ActivityOptions("bookkeeping", 60),
    "finish_run": ActivityOptions("bookkeeping", 60),
    "rollback_targets": ActivityOptions("bookkeeping", 60),
    "window_slot": ActivityOptions("bookkeeping", 60),
    # notifications: a delivery failure is a result, not an error (notify never raises for it)
    "notify_setup": ActivityOptions("bookkeeping", 60),
    "notify": ActivityOptions("bookkeeping", 300),
    # site queues
    "discover": ActivityOptions("api_call", 300),
    "vm_recorded_outcome": ActivityOptions("bookkeeping", 60),
    "vm_baseline_health": ActivityOptions("health", 900, HEARTBEAT_S),
    "vm_snapshot": ActivityOptions("api_call", 1800, HEARTBEAT_S),
    "vm_patch": ActivityOptions("guest_patch", 3600, HEARTBEAT_S),
    "vm_reboot": ActivityOptions("reboot_wait", 1200, HEARTBEAT_S),
    "vm_verify_health": ActivityOptions("health", 900, HEARTBEAT_S),
    "vm_revert": ActivityOptions("api_call", 1800, HEARTBEAT_S),
    "vm_record_outcome": ActivityOptions("bookkeeping", 60),
    "vm_assess": ActivityOptions("api_call", 900, HEARTBEAT_S),
    "host_enter_maintenance": ActivityOptions("lock_wait", 7200, HEARTBEAT_S),
    "host_patch": ActivityOptions("guest_patch", 7200, HEARTBEAT_S),
    "host_reboot": ActivityOptions("reboot_wait", 3600, HEARTBEAT_S),
    "host_verify": ActivityOptions("api_call", 600, HEARTBEAT_S),
    "host_exit_maintenance": ActivityOptions("maintenance_exit", 3600, HEARTBEAT_S),
    "host_record_outcome": ActivityOptions("bookkeeping", 60),
    "cleanup_expired_snapshots": ActivityOptions("api_call", 1800, HEARTBEAT_S),
}

#: Margin added to a policy-derived timeout (patch_timeout, health_deadline) for the activity's
#: own bookkeeping, so the activity reports its own timeout before Temporal kills it.
TIMEOUT_MARGIN_S = 120.0


def options(name: str, *, timeout_s: float | None = None) -> ActivityOptions:
    """The options for ``name``; ``timeout_s`` (a policy's deadline) widens start_to_close."""
    opts = ACTIVITIES[name]
    if RECOVERY_S and opts.heartbeat_s is None:
        opts = ActivityOptions(opts.policy, min(opts.start_to_close_s, max(15.0, 5 * RECOVERY_S)))
    if timeout_s is None:
        return opts
    return ActivityOptions(
        opts.policy, max(opts.start_to_close_s, timeout_s + TIMEOUT_MARGIN_S), opts.heartbeat_s
    )
