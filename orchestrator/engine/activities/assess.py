"""The fleet assessment's activities (``AssessFleet``): idempotent, constant-size values in and out.

* central queue: ``assess_round_start`` (record the round; the sites and the batch size),
  ``assess_feeds_refresh`` (reload the configured feeds that are older than ``[assess] refresh_feeds``;
  a feed that fails is counted, never an error), ``assess_round_finish`` (the round's counts, then
  ``vuln_found`` for new critical / known-exploited CVEs, once per CVE);
* site queues: ``assess_targets`` (discover the site and write the round's targets, once) and
  ``vm_assess_vulns`` (one batch: the targets at positions ``start .. start+count`` not marked yet,
  each through :func:`orchestrator.assessment.vm.assess_vm`, heartbeating meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.assessment import feeds
from orchestrator.assessment.alerts import send_alerts
from orchestrator.assessment.fleet import assess_slice, record_site_targets
from orchestrator.assessment.proof import prove_vm
from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import (
    AssessBatch,
    AssessRequest,
    BatchCounts,
    CveProofResult,
    FeedsRefreshed,
    RoundEnd,
    RoundStart,
    RoundSummary,
    SiteRound,
    SiteTargets,
    VmTask,
)
from orchestrator.facts.vuln_rounds import RoundStore
from orchestrator.notify.notifier import Notifier

#: Batch activities per AssessFleet execution before it continues as new (bounds its history:
#: ~3 events per batch).
BATCHES_PER_RUN = 100


class AssessActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def central(self) -> list[Callable[..., Any]]:
        return [self.assess_round_start, self.assess_feeds_refresh, self.assess_round_finish]

    def site(self) -> list[Callable[..., Any]]:
        return [self.assess_targets, self.vm_assess_vulns, self.vm_prove_cves]

    @activity.defn(name=ActivityName.ASSESS_ROUND_START)
    @translated
    def assess_round_start(self, request: AssessRequest) -> RoundStart:
        RoundStore(self.ctx.facts).start(request.round_id, requested_by=request.requested_by)
        cfg = self.ctx.settings.assess
        return RoundStart(request.round_id, self.ctx.settings.sites, cfg.batch_size, BATCHES_PER_RUN)

    @activity.defn(name=ActivityName.ASSESS_FEEDS_REFRESH)
    @translated
    def assess_feeds_refresh(self, round_id: str) -> FeedsRefreshed:
        with heartbeating(f"feeds for {round_id}"):
            done = feeds.refresh(self.ctx.facts, self.ctx.settings, self.ctx.clock.now())
        self.ctx.log.info("assessment_feeds_refreshed", round=round_id, loaded=len(done.loaded),
                          kept=len(done.kept), failed=len(done.failed))  # fmt: skip
        return FeedsRefreshed(len(done.loaded), len(done.kept), len(done.failed))

    @activity.defn(name=ActivityName.ASSESS_TARGETS)
    @translated
    def assess_targets(self, data: SiteRound) -> SiteTargets:
        with heartbeating(f"discover {data.site}"):
            return SiteTargets(record_site_targets(self.ctx, data.round_id, data.site))

    @activity.defn(name=ActivityName.VM_ASSESS_VULNS)
    @translated
    def vm_assess_vulns(self, batch: AssessBatch) -> BatchCounts:
        where = f"{batch.site} {batch.start}..{batch.start + batch.count - 1} of {batch.round_id}"
        with heartbeating(where):  # from this thread: the guests are asked from a pool's threads
            done = assess_slice(
                self.ctx, batch.round_id, batch.site, batch.start, batch.count, refresh=batch.refresh
            )
        self.ctx.log.info("assessment_batch_done", round=batch.round_id, site=batch.site, start=batch.start,
                          assessed=done.assessed, failed=done.failed, skipped=done.skipped)  # fmt: skip
        return BatchCounts(done.assessed, done.failed, done.skipped)

    @activity.defn(name=ActivityName.ASSESS_ROUND_FINISH)
    @translated
    def assess_round_finish(self, end: RoundEnd) -> RoundSummary:
        rounds = RoundStore(self.ctx.facts)
        # Deliveries are on record in vuln_alerts (a CVE is announced once), not in a run's journal.
        notifier = Notifier(self.ctx.settings.notifications)
        with heartbeating(f"alerts of {end.round_id}"):
            alerts = send_alerts(self.ctx.facts, self.ctx.settings, notifier, end.round_id)
        record = rounds.finish(end.round_id, alerts=alerts.sent)
        self.ctx.log.info("assessment_round_finished", round=end.round_id, targets=record.targets,
                          assessed=record.assessed, failed=record.failed, alerts=alerts.pending,
                          notified=alerts.sent)  # fmt: skip
        return RoundSummary(
            end.round_id, record.targets, record.assessed, record.failed, alerts.pending, alerts.sent
        )

    @activity.defn(name=ActivityName.VM_PROVE_CVES)
    @translated
    def vm_prove_cves(self, task: VmTask) -> CveProofResult:
        """After a ``run --cve`` VM's patch (or its revert): re-assess it and record, per targeted CVE,
        fixed-active / fixed-pending-restart / still-open (:mod:`orchestrator.assessment.proof`)."""
        vm = task.step.vm
        info = self.ctx.provider(vm.site).get_vm(vm)
        with heartbeating(f"proving the CVE fixes on {vm}"):
            summary = prove_vm(self.ctx, task.run_id, task.step.step_id, vm, info)
        return CveProofResult(summary.proved, dict(summary.verdicts), summary.still_open)
