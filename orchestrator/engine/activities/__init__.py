"""Temporal activities: all of patchwave's I/O. Idempotent; each checks real state first.

:class:`Activities` assembles them per task queue:

* ``patchwave`` (central): run_setup, set_run_status, finish_run, rollback_targets, window_slot
  (:mod:`.run`), plan_run, plan_waves, wave_batch, host_batch, record_skips (:mod:`.plans`),
  notify_setup, notify (:mod:`.notify`), renew_leases, release_leases (:mod:`.leases`),
  assess_round_start, assess_feeds_refresh, assess_round_finish (:mod:`.assess`),
  backup_verify_round (:mod:`.backups`)
* ``patchwave-site-<site>``: discover, cleanup_expired_snapshots (:mod:`.run`), every vm_* (:mod:`.vms`)
  (vm_restart_services: :mod:`.services`) and host_* (:mod:`.hosts`; host_preflight: :mod:`.preflight`)
  activity, assess_targets and vm_assess_vulns (:mod:`.assess`),
  vm_backup (:mod:`.backups`), vm_pause_autoupdates and vm_restore_autoupdates (:mod:`.autoupdates`)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.context import Context
from orchestrator.engine.activities.assess import AssessActivities
from orchestrator.engine.activities.autoupdates import AutoUpdateActivities
from orchestrator.engine.activities.backups import BackupActivities
from orchestrator.engine.activities.hosts import HostActivities
from orchestrator.engine.activities.leases import LeaseActivities
from orchestrator.engine.activities.notify import NotifyActivities
from orchestrator.engine.activities.plans import PlanActivities
from orchestrator.engine.activities.preflight import PreflightActivities
from orchestrator.engine.activities.run import RunActivities
from orchestrator.engine.activities.services import ServiceActivities
from orchestrator.engine.activities.vms import VmActivities


class Activities:
    """Every activity, bound to one :class:`Context`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.run = RunActivities(ctx)
        self.plans = PlanActivities(ctx)
        self.vms = VmActivities(ctx)
        self.hosts = HostActivities(ctx)
        self.preflight = PreflightActivities(ctx)
        self.services = ServiceActivities(ctx)
        self.notices = NotifyActivities(ctx)
        self.leases = LeaseActivities(ctx)
        self.assess = AssessActivities(ctx)
        self.backups = BackupActivities(ctx)
        self.autoupdates = AutoUpdateActivities(ctx)

    def central(self) -> list[Callable[..., Any]]:
        """The activities of the central queue (``patchwave``)."""
        return [
            *self.run.central(),
            *self.plans.all(),
            *self.notices.all(),
            *self.leases.all(),
            *self.assess.central(),
            *self.backups.central(),
        ]

    def site(self) -> list[Callable[..., Any]]:
        """The activities of a site's queue (``patchwave-site-<site>``)."""
        return [
            *self.run.site(),
            *self.vms.all(),
            *self.services.all(),
            *self.hosts.all(),
            *self.preflight.all(),
            *self.assess.site(),
            *self.backups.site(),
            *self.autoupdates.all(),
        ]
