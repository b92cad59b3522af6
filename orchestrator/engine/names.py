"""The names Temporal knows patchwave's activities by: one enum, used on both sides of the sandbox.

Workflows call activities by name (:func:`orchestrator.engine.workflows.calls.call`) so that the
workflow sandbox never imports the I/O modules; the activities register under the same member
(``@activity.defn(name=ActivityName.X)``) and :data:`orchestrator.engine.retry.ACTIVITIES` keys its
options by it. A typo is then an ``AttributeError`` at import (and a mypy error), not a workflow
task that fails — and is retried — forever. ``tests/unit/engine/test_activity_names.py`` checks
that the names the workflows call, the retry table and the workers' registrations are one set.

The values are the names Temporal has in its histories: never rename one.
"""

from __future__ import annotations

import enum


class ActivityName(enum.StrEnum):
    # central queue (fact store, planner, notifications)
    RUN_SETUP = "run_setup"
    PLAN_RUN = "plan_run"
    SET_RUN_STATUS = "set_run_status"
    FINISH_RUN = "finish_run"
    ROLLBACK_TARGETS = "rollback_targets"
    WINDOW_SLOT = "window_slot"
    PLAN_WAVES = "plan_waves"
    WAVE_BATCH = "wave_batch"
    HOST_BATCH = "host_batch"
    RECORD_SKIPS = "record_skips"
    NOTIFY_SETUP = "notify_setup"
    NOTIFY = "notify"
    RENEW_LEASES = "renew_leases"
    RELEASE_LEASES = "release_leases"
    ASSESS_ROUND_START = "assess_round_start"
    ASSESS_FEEDS_REFRESH = "assess_feeds_refresh"
    ASSESS_ROUND_FINISH = "assess_round_finish"
    # site queues
    DISCOVER = "discover"
    CLEANUP_EXPIRED_SNAPSHOTS = "cleanup_expired_snapshots"
    VM_RECORDED_OUTCOME = "vm_recorded_outcome"
    VM_BASELINE_HEALTH = "vm_baseline_health"
    VM_SNAPSHOT = "vm_snapshot"
    VM_PATCH = "vm_patch"
    VM_REBOOT = "vm_reboot"
    VM_RESTART_SERVICES = "vm_restart_services"
    VM_VERIFY_HEALTH = "vm_verify_health"
    VM_REVERT = "vm_revert"
    VM_RELEASE_SNAPSHOT = "vm_release_snapshot"
    VM_RECORD_OUTCOME = "vm_record_outcome"
    VM_ASSESS = "vm_assess"
    HOST_PREFLIGHT = "host_preflight"
    VM_PROVE_CVES = "vm_prove_cves"
    HOST_ENTER_MAINTENANCE = "host_enter_maintenance"
    HOST_PATCH = "host_patch"
    HOST_REBOOT = "host_reboot"
    HOST_VERIFY = "host_verify"
    HOST_EXIT_MAINTENANCE = "host_exit_maintenance"
    HOST_RECORD_OUTCOME = "host_record_outcome"
    ASSESS_TARGETS = "assess_targets"
    VM_ASSESS_VULNS = "vm_assess_vulns"
    # safeguards around a VM's patch (activities/backups.py, activities/autoupdates.py)
    VM_BACKUP = "vm_backup"
    VM_PAUSE_AUTOUPDATES = "vm_pause_autoupdates"
    VM_RESTORE_AUTOUPDATES = "vm_restore_autoupdates"
    # restore tests of backups (VerifyBackups, the patchwave-verify-backups schedule)
    BACKUP_VERIFY_ROUND = "backup_verify_round"
