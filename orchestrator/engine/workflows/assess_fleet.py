"""``AssessFleet``: one fleet vulnerability assessment (a *round*), as ``serve``'s schedule starts it.

1. ``assess_round_start`` records the round (id = ``request.round_id`` or the workflow id: a scheduled
   execution's id is the schedule id plus the fire time) and returns the sites and the batch size;
2. ``assess_feeds_refresh`` reloads the configured feeds that are old (first execution only);
3. per site: ``assess_targets`` (site queue) discovers the site and writes the round's targets in
   the fact store, then ``vm_assess_vulns`` batches of at most ``batch_size`` (<= 500) VMs, named by
   position, :data:`PARALLEL_BATCHES` at a time, each returning counts;
4. ``assess_round_finish`` records the totals and sends ``vuln_found`` for new critical or
   known-exploited CVEs (once per CVE).

Bounded: inputs and results are constant-size values (no VM list crosses Temporal), and after
``RoundStart.batches_per_run`` (100) batches the workflow continues as new with a cursor (site,
batch) and its counts, so one execution's history stays at a few hundred events whatever the fleet. Deterministic
(no I/O; activities by name).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        AssessBatch,
        AssessRequest,
        BatchCounts,
        FeedsRefreshed,
        RoundEnd,
        RoundStart,
        RoundSummary,
        SiteRound,
        SiteTargets,
        site_queue,
    )
    from orchestrator.engine.workflows.calls import call

#: Batch activities in flight at once (each asks ``[assess] parallel`` guests at a time).
PARALLEL_BATCHES = 4


@workflow.defn(name="AssessFleet")
class AssessFleet:
    """Assess every ``[targets]`` VM of every site in bounded batches; notify new critical/KEV CVEs."""

    @workflow.run
    async def run(self, request: AssessRequest) -> RoundSummary:
        request = replace(request, round_id=request.round_id or workflow.info().workflow_id)
        start = await call(
            ActivityName.ASSESS_ROUND_START, request, result_type=RoundStart, queue=CENTRAL_QUEUE
        )
        if request.site_index == 0 and request.batch_index == 0:
            await call(ActivityName.ASSESS_FEEDS_REFRESH, request.round_id, result_type=FeedsRefreshed,
                       queue=CENTRAL_QUEUE)  # fmt: skip
        done = 0
        for index in range(request.site_index, len(start.sites)):
            site = start.sites[index]
            found = await call(ActivityName.ASSESS_TARGETS, SiteRound(request.round_id, site),
                               result_type=SiteTargets, queue=site_queue(site))  # fmt: skip
            batches = -(-found.targets // start.batch_size)
            first = request.batch_index if index == request.site_index else 0
            for group in range(first, batches, PARALLEL_BATCHES):
                if done >= start.batches_per_run:
                    workflow.continue_as_new(replace(request, site_index=index, batch_index=group))
                numbers = range(group, min(batches, group + PARALLEL_BATCHES))
                counts = await asyncio.gather(*(self._batch(request, site, n * start.batch_size,
                                                            start.batch_size) for n in numbers))  # fmt: skip
                done += len(counts)
                request = replace(request, assessed=request.assessed + sum(c.assessed for c in counts),
                                  failed=request.failed + sum(c.failed for c in counts))  # fmt: skip
        return await call(ActivityName.ASSESS_ROUND_FINISH, RoundEnd(request.round_id), result_type=RoundSummary,
                          queue=CENTRAL_QUEUE)  # fmt: skip

    async def _batch(self, request: AssessRequest, site: str, start: int, count: int) -> BatchCounts:
        batch = AssessBatch(request.round_id, site, start, count, request.refresh)
        return await call(
            ActivityName.VM_ASSESS_VULNS, batch, result_type=BatchCounts, queue=site_queue(site)
        )
