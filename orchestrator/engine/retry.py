"""Named retry policies and per-activity options for Temporal — the one place they are defined.

``providers.base`` names the in-process (tenacity) policies; this module maps the same names onto
:class:`temporalio.common.RetryPolicy` and adds the activity-level ones (patching, reboot waits,
health, maintenance exit). Every activity the workflows call has one row in :data:`ACTIVITIES`:
its retry policy, its ``start_to_close`` timeout and, for long calls, a ``heartbeat`` timeout.

Permanent errors never retry: activities raise ``ApplicationError(non_retryable=True)`` for an
error whose class says ``retryable = False`` (:mod:`orchestrator.engine.activities.translation`), and
:func:`non_retryable_types` lists the same classes as ``non_retryable_error_types`` as a second guard.

Imported by the deterministic workflows: no I/O here, only values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio.common import RetryPolicy

from orchestrator.engine.names import ActivityName
from orchestrator.errors import OrchestratorError
from providers import timing
from providers.errors import ProviderError
from providers.settings import SettingsError

#: Crash-recovery knob for tests (crash injection): ``PATCHWAVE_RECOVERY_S=N`` makes a killed
#: worker's work come back after ~N seconds instead of 10-60 s: the workflow-task timeout and the
#: sticky-queue timeout become N, the heartbeat timeout N (heartbeats every N/3), and activities
#: without heartbeats get a start_to_close of at most max(15, 5 N); retries start after at most N s.
#: Unset (0) = production values.
RECOVERY_S = float(os.environ.get("PATCHWAVE_RECOVERY_S", "0") or 0)
#: Workflow-task timeout for PatchRun and its children (None = the server's default, 10 s).
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=RECOVERY_S) if RECOVERY_S else None


def non_retryable_types() -> list[str]:
    """The ``ApplicationError`` types Temporal must never retry: every error class loaded in this
    process whose ``retryable`` flag is False — the :class:`~providers.errors.ProviderError`,
    :class:`~orchestrator.errors.OrchestratorError` and :class:`~providers.settings.SettingsError`
    trees (a class without the flag is permanent).

    Derived when an activity's options are built, not at import: by then the worker has imported
    its activities and so every error class (guest, adapter and lab errors too).
    """
    names: set[str] = set()
    pending: list[type] = [ProviderError, OrchestratorError, SettingsError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if not getattr(cls, "retryable", False):
            names.add(cls.__name__)
    return sorted(names)


def temporal_policy(policy: timing.RetryPolicy) -> RetryPolicy:
    """The Temporal equivalent of one of ``providers.base``'s named policies."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=policy.initial_s),
        backoff_coefficient=policy.multiplier,
        maximum_interval=timedelta(seconds=policy.max_s),
        maximum_attempts=policy.max_attempts,
    )


def _policy(attempts: int, initial_s: float, max_s: float) -> RetryPolicy:
    if RECOVERY_S:
        initial_s = min(initial_s, RECOVERY_S)
    return RetryPolicy(
        initial_interval=timedelta(seconds=initial_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=max_s),
        maximum_attempts=attempts,
    )


#: Name -> Temporal retry policy (backoff and attempts; :attr:`ActivityOptions.retry_policy` adds
#: :func:`non_retryable_types`). ``api_call``/``lock_wait`` mirror ``providers.timing.POLICIES``.
POLICIES: dict[str, RetryPolicy] = {
    "api_call": temporal_policy(timing.API_CALL),
    "lock_wait": temporal_policy(timing.LOCK_WAIT),
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
    # A fleet assessment's batch: a retry skips the VMs already marked; one guest never fails it.
    "assessment": _policy(attempts=3, initial_s=10.0, max_s=60.0),
}


@dataclass(frozen=True)
class ActivityOptions:
    """How the workflows call one activity."""

    policy: str
    start_to_close_s: float
    heartbeat_s: float | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        return replace(POLICIES[self.policy], non_retryable_error_types=non_retryable_types())

    @property
    def start_to_close(self) -> timedelta:
        return timedelta(seconds=self.start_to_close_s)

    @property
    def heartbeat(self) -> timedelta | None:
        return None if self.heartbeat_s is None else timedelta(seconds=self.heartbeat_s)


#: Heartbeat timeout for long activities: a dead worker is noticed within this time.
HEARTBEAT_S = RECOVERY_S or 30.0

#: Activity name -> options. Long activities heartbeat (see ``orchestrator.engine.activities.translation``).
ACTIVITIES: dict[ActivityName, ActivityOptions] = {
    # central queue (fact store and planner)
    ActivityName.RUN_SETUP: ActivityOptions("bookkeeping", 60),
    ActivityName.PLAN_RUN: ActivityOptions("bookkeeping", 900),  # 50,000 VMs plan in ~1-2 min
    ActivityName.SET_RUN_STATUS: ActivityOptions("bookkeeping", 60),
    ActivityName.FINISH_RUN: ActivityOptions("bookkeeping", 60),
    ActivityName.ROLLBACK_TARGETS: ActivityOptions("bookkeeping", 60),
    ActivityName.WINDOW_SLOT: ActivityOptions("bookkeeping", 60),
    # the plan's slices (fact store reads, bounded) and a batch's skipped VMs
    ActivityName.PLAN_WAVES: ActivityOptions("bookkeeping", 60),
    ActivityName.WAVE_BATCH: ActivityOptions("bookkeeping", 60),
    ActivityName.HOST_BATCH: ActivityOptions("bookkeeping", 60),
    ActivityName.RECORD_SKIPS: ActivityOptions("bookkeeping", 60),
    # notifications: a delivery failure is a result, not an error (notify never raises for it)
    ActivityName.NOTIFY_SETUP: ActivityOptions("bookkeeping", 60),
    ActivityName.NOTIFY: ActivityOptions("bookkeeping", 300),
    # leases (fact store): renewed every third of their TTL, released at the end
    ActivityName.RENEW_LEASES: ActivityOptions("bookkeeping", 60),
    ActivityName.RELEASE_LEASES: ActivityOptions("bookkeeping", 60),
    # site queues
    ActivityName.DISCOVER: ActivityOptions("api_call", 300),
    ActivityName.VM_RECORDED_OUTCOME: ActivityOptions("bookkeeping", 60),
    ActivityName.VM_BASELINE_HEALTH: ActivityOptions("health", 900, HEARTBEAT_S),
    ActivityName.VM_SNAPSHOT: ActivityOptions("api_call", 1800, HEARTBEAT_S),
    ActivityName.VM_PATCH: ActivityOptions("guest_patch", 3600, HEARTBEAT_S),
    ActivityName.VM_REBOOT: ActivityOptions("reboot_wait", 1200, HEARTBEAT_S),
    ActivityName.VM_RESTART_SERVICES: ActivityOptions("guest_patch", 1200, HEARTBEAT_S),
    ActivityName.VM_VERIFY_HEALTH: ActivityOptions("health", 900, HEARTBEAT_S),
    ActivityName.VM_REVERT: ActivityOptions("api_call", 1800, HEARTBEAT_S),
    ActivityName.VM_RELEASE_SNAPSHOT: ActivityOptions("api_call", 1800, HEARTBEAT_S),
    ActivityName.VM_RECORD_OUTCOME: ActivityOptions("bookkeeping", 60),
    ActivityName.VM_ASSESS: ActivityOptions("api_call", 900, HEARTBEAT_S),
    # read-only checks (provider API, SSH no-op, capacity): a few retries for an unreachable host
    ActivityName.HOST_PREFLIGHT: ActivityOptions("api_call", 300, HEARTBEAT_S),
    ActivityName.VM_PROVE_CVES: ActivityOptions("api_call", 900, HEARTBEAT_S),
    ActivityName.HOST_ENTER_MAINTENANCE: ActivityOptions("lock_wait", 7200, HEARTBEAT_S),
    ActivityName.HOST_PATCH: ActivityOptions("guest_patch", 7200, HEARTBEAT_S),
    ActivityName.HOST_REBOOT: ActivityOptions("reboot_wait", 3600, HEARTBEAT_S),
    ActivityName.HOST_VERIFY: ActivityOptions("api_call", 600, HEARTBEAT_S),
    ActivityName.HOST_EXIT_MAINTENANCE: ActivityOptions("maintenance_exit", 3600, HEARTBEAT_S),
    ActivityName.HOST_RECORD_OUTCOME: ActivityOptions("bookkeeping", 60),
    ActivityName.CLEANUP_EXPIRED_SNAPSHOTS: ActivityOptions("api_call", 1800, HEARTBEAT_S),
    # the fleet assessment (AssessFleet): feeds may be large downloads; a batch is <= 500 guests
    ActivityName.ASSESS_ROUND_START: ActivityOptions("bookkeeping", 60),
    ActivityName.ASSESS_FEEDS_REFRESH: ActivityOptions("assessment", 3600, HEARTBEAT_S),
    ActivityName.ASSESS_ROUND_FINISH: ActivityOptions("bookkeeping", 600, HEARTBEAT_S),
    ActivityName.ASSESS_TARGETS: ActivityOptions("api_call", 1800, HEARTBEAT_S),
    ActivityName.VM_ASSESS_VULNS: ActivityOptions("assessment", 4 * 3600, HEARTBEAT_S),
    # safeguards: a backup is long (vzdump, a backup job, a clone; policy.backup_timeout widens it);
    # pause waits for a running automatic update (policy.autoupdates_wait widens it)
    ActivityName.VM_BACKUP: ActivityOptions("api_call", 7200, HEARTBEAT_S),
    ActivityName.VM_PAUSE_AUTOUPDATES: ActivityOptions("api_call", 1200, HEARTBEAT_S),
    ActivityName.VM_RESTORE_AUTOUPDATES: ActivityOptions("api_call", 300, HEARTBEAT_S),
    ActivityName.BACKUP_VERIFY_ROUND: ActivityOptions("assessment", 6 * 3600, HEARTBEAT_S),
}

#: Learned reboot durations raise ``policy.reboot_timeout`` by at most this factor (``vm_reboot``);
#: VmPatch widens the reboot activity's start_to_close accordingly.
LEARNED_REBOOT_FACTOR = 3

#: Margin added to a policy-derived timeout (patch_timeout, health_deadline) for the activity's
#: own bookkeeping, so the activity reports its own timeout before Temporal kills it.
TIMEOUT_MARGIN_S = 120.0


def options(name: ActivityName, *, timeout_s: float | None = None) -> ActivityOptions:
    """The options for ``name``; ``timeout_s`` (a policy's deadline) widens start_to_close."""
    opts = ACTIVITIES[name]
    if RECOVERY_S and opts.heartbeat_s is None:
        opts = ActivityOptions(opts.policy, min(opts.start_to_close_s, max(15.0, 5 * RECOVERY_S)))
    if timeout_s is None:
        return opts
    return ActivityOptions(
        opts.policy, max(opts.start_to_close_s, timeout_s + TIMEOUT_MARGIN_S), opts.heartbeat_s
    )
