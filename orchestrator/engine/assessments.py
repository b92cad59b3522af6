"""The fleet assessment's Temporal schedule: ``patchwave-assess`` starts ``AssessFleet`` every
``[assess] every`` (kept apart from the run schedules of :mod:`orchestrator.engine.schedules`, whose
``patchwave-sched-*`` ids it never uses).

* An interval schedule (``every``), overlap ``SKIP`` (a round still going is never joined by a second
  one), a catch-up window of one interval (a server that was down assesses once when it is back, not
  once per missed interval). Created with an immediate first round, so a new ``serve`` assesses now.
* A scheduled execution's workflow id is the schedule id plus the fire time
  (``patchwave-assess-2026-12-04T18:00:00Z``): that is the round id in the fact store.
* :func:`sync_assessment_schedule` (``serve`` at start) creates it, updates it when the interval changed
  (a fingerprint in the action's memo; an operator's pause is kept) and deletes it when ``every`` is 0.
  Schedules live in Temporal (the embedded server's SQLite file): they survive restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.config.settings import Settings
from orchestrator.engine.payloads import ASSESS_WORKFLOW, CENTRAL_QUEUE, AssessRequest

SCHEDULE_ID = "patchwave-assess"
MEMO_KEY = "patchwave_assess_schedule"


def desired(settings: Settings) -> tuple[Schedule, str] | None:
    """The schedule ``[assess] every`` asks for and its fingerprint; None when it asks for none."""
    every = settings.assess.every_s
    if not every:
        return None
    request = AssessRequest(requested_by=f"schedule:{SCHEDULE_ID}")
    return interval_schedule(
        ASSESS_WORKFLOW, request, SCHEDULE_ID, MEMO_KEY, every,
        fingerprinted={"request": asdict(request)},
        note=f"managed by patchwave ({settings.file}): [assess] every {every}s",
    )  # fmt: skip


def interval_schedule(
    workflow: str,
    arg: object,
    schedule_id: str,
    memo_key: str,
    every_s: int,
    *,
    fingerprinted: dict[str, object],
    note: str,
) -> tuple[Schedule, str]:
    """A central-queue schedule starting ``workflow(arg)`` every ``every_s`` (overlap skipped, a missed
    fire caught up within one interval) and its fingerprint over what decides it (kept in the memo)."""
    body = {"workflow": workflow, "queue": CENTRAL_QUEUE, **fingerprinted, "every_s": every_s}
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    action = ScheduleActionStartWorkflow(
        workflow, arg, id=schedule_id, task_queue=CENTRAL_QUEUE, memo={memo_key: fingerprint}
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=every_s))]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=max(60, every_s)),
            pause_on_failure=False,
        ),
        state=ScheduleState(note=note),
    )
    return schedule, fingerprint


async def sync_assessment_schedule(client: Client, settings: Settings) -> str:
    """Make ``patchwave-assess`` match ``[assess] every``: "created" | "updated" | "unchanged" |
    "deleted" | "none" (not asked for and not there)."""
    return await sync_interval_schedule(client, SCHEDULE_ID, MEMO_KEY, desired(settings))


async def sync_interval_schedule(
    client: Client, schedule_id: str, memo_key: str, wanted: tuple[Schedule, str] | None
) -> str:
    """Make schedule ``schedule_id`` match ``wanted`` (the schedule and its fingerprint, kept in the
    action's memo under ``memo_key``; None: delete it). Also used by the backups' restore tests."""
    handle = client.get_schedule_handle(schedule_id)
    if wanted is None:
        try:
            await handle.delete()
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
            return "none"
        return "deleted"
    schedule, fingerprint = wanted
    try:
        await client.create_schedule(schedule_id, schedule, trigger_immediately=True)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    current = await handle.describe()
    memo = getattr(current.schedule.action, "memo", None) or {}
    raw = memo.get(memo_key) if isinstance(memo, Mapping) else None
    if raw is not None and not isinstance(raw, str):
        [raw] = await client.data_converter.decode([raw], [str])
    if raw == fingerprint:
        return "unchanged"
    old = current.schedule.state

    def replace_with(_: ScheduleUpdateInput) -> ScheduleUpdate:
        if old.paused:  # an operator's pause (and its note) survive a re-sync
            schedule.state.paused, schedule.state.note = True, old.note
        return ScheduleUpdate(schedule=schedule)

    await handle.update(replace_with)
    return "updated"
