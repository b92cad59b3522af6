"""Temporal schedules from the configuration: one per rollout (``[[schedules]]``, or derived).

* Id ``patchwave-sched-<name>`` (stable) per :class:`~orchestrator.config.settings.ScheduleSettings`.
  Its action starts ``PatchRun`` with a :class:`~orchestrator.model.RunRequest` scoped to the
  schedule: its groups, its sites and its window (``RunRequest.window``: the planner binds the VMs of
  groups without a window of their own to it). One fire is one run with the full ring model — rings
  in order, soak, ring health gate, approval, one failure budget. ``run_id=""``: the run id is the
  workflow id, which Temporal derives from the schedule id plus the scheduled time, e.g.
  ``patchwave-sched-weekly-2026-11-28T21:00:00Z``. ``config_digest=""``: a scheduled run plans with
  the worker's current configuration.
* When it fires: at each start of the schedule's window (minus ``[notifications] prenotice``, so the
  run can publish its plan and the pre-notice and then wait for the window inside the workflow). The
  fire times are computed by :mod:`orchestrator.windows` — the same code the workflow admits VMs
  with, so DST, RRULEs, exdates and holidays mean exactly the same thing — and written as exact UTC
  calendar entries for the next :data:`HORIZON` (at most :data:`MAX_FIRES`). ``serve`` re-syncs
  periodically (:func:`keep_in_sync`), which rolls the list forward; if nothing syncs for longer
  than the horizon the schedule simply stops firing.
* Overlap ``SKIP``: a run of a schedule still going (e.g. waiting for an approval or the next
  window) is never joined by a second run of the same schedule. Catchup window = pre-notice + the
  window's usable time: a server that was down catches up while the window can still take work.
* :func:`sync_schedules` creates missing schedules, updates changed ones (a fingerprint in the
  action's memo; a manual pause is kept), and deletes ``patchwave-sched-*`` schedules the
  configuration no longer asks for — among them, on the first sync after the upgrade, the old
  per-(site, group) ones ``patchwave-sched-<site>-<group>`` (:func:`retired`). Schedules live in
  Temporal (the embedded server's SQLite file), so they survive restarts of patchwave and the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.config.settings import ScheduleSettings, Settings
from orchestrator.engine.payloads import CENTRAL_QUEUE
from orchestrator.model import RunRequest
from orchestrator.windows import WindowSpec, upcoming, usable
from providers.timing import SYSTEM_CLOCK, Clock

log = structlog.get_logger(__name__)
PREFIX = "patchwave-sched-"
WORKFLOW = "PatchRun"
HORIZON = timedelta(days=35)
MIN_FIRES = 3  # even a quarterly window gets its next few fire times
MAX_FIRES = 40
SYNC_INTERVAL_S = 3600.0
MEMO_KEY = "patchwave_schedule"  # in the action's memo: the fingerprint of what we wrote


@dataclass(frozen=True)
class ScheduledRollout:
    """One schedule: a ``[[schedules]]`` table (or a derived one) and its Temporal id."""

    schedule_id: str
    config: ScheduleSettings

    def request(self) -> RunRequest:
        c = self.config
        return RunRequest(run_id="", config_digest="", groups=c.groups, sites=c.sites, window=c.window,
                          requested_by=f"schedule:{self.schedule_id}")  # fmt: skip


@dataclass(frozen=True)
class SyncResult:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def schedule_id(name: str) -> str:
    return f"{PREFIX}{name}"


def rollouts(settings: Settings) -> tuple[ScheduledRollout, ...]:
    """Every schedule of the configuration, sorted by id."""
    found = [ScheduledRollout(schedule_id(s.name), s) for s in settings.schedules]
    return tuple(sorted(found, key=lambda r: r.schedule_id))


def retired(existing: Iterable[str], wanted: Iterable[str]) -> tuple[str, ...]:
    """The ``patchwave-sched-*`` ids in ``existing`` that are not ``wanted`` (sorted): schedules the
    configuration dropped, and the per-(site, group) schedules of earlier versions
    (``patchwave-sched-<site>-<group>``)."""
    keep = set(wanted)
    return tuple(sorted({i for i in existing if i.startswith(PREFIX) and i not in keep}))


def fire_times(spec: WindowSpec, now: datetime, *, prenotice_s: int = 0) -> tuple[datetime, ...]:
    """UTC times to start a run: window starts minus the pre-notice, after ``now``; those within
    :data:`HORIZON` but at least :data:`MIN_FIRES` and at most :data:`MAX_FIRES`."""
    lead = timedelta(seconds=prenotice_s)
    fires: list[datetime] = []
    for start, _ in upcoming(spec, now):
        fire = start - lead
        if (fire - now > HORIZON and len(fires) >= MIN_FIRES) or len(fires) >= MAX_FIRES:
            break
        if fire > now:
            fires.append(fire.replace(microsecond=0))
    return tuple(fires)


def _calendar(moment: datetime, comment: str) -> ScheduleCalendarSpec:
    m = moment.astimezone(UTC)
    one = ScheduleRange
    return ScheduleCalendarSpec(second=(one(m.second),), minute=(one(m.minute),), hour=(one(m.hour),),
                                day_of_month=(one(m.day),), month=(one(m.month),), year=(one(m.year),),
                                day_of_week=(one(0, 6),), comment=comment)  # fmt: skip


def desired(target: ScheduledRollout, settings: Settings, now: datetime) -> tuple[Schedule, str]:
    """The schedule for ``target`` and its fingerprint (what :func:`sync_schedules` compares)."""
    spec = settings.window(target.config.window)
    prenotice = settings.notifications.prenotice_s
    fires = fire_times(spec, now, prenotice_s=prenotice)
    request = target.request()
    catchup = max(timedelta(seconds=60), usable(spec) + timedelta(seconds=prenotice))
    note = (f"managed by patchwave ({settings.file}): {describe(target.config)}; window {spec.name!r} "
            f"({spec.recurrence}, {spec.timezone})")  # fmt: skip
    body = {
        "id": target.schedule_id,
        "note": note,
        "workflow": WORKFLOW,
        "queue": CENTRAL_QUEUE,
        "request": asdict(request),
        "fires": [f.isoformat() for f in fires],
        "catchup_s": int(catchup.total_seconds()),
        "overlap": "skip",
    }
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    action = ScheduleActionStartWorkflow(
        WORKFLOW, request, id=target.schedule_id, task_queue=CENTRAL_QUEUE, memo={MEMO_KEY: fingerprint}
    )
    calendars = [_calendar(f, f"window {spec.name} opens") for f in fires]
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(calendars=calendars, time_zone_name="UTC"),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=catchup, pause_on_failure=False
        ),
        state=ScheduleState(note=note),
    )
    return schedule, fingerprint


def describe(config: ScheduleSettings) -> str:
    """What a schedule covers, in words (the schedule's note)."""
    origin = "derived from the groups' windows" if config.derived else "[[schedules]]"
    return (f"rollout {config.name!r} ({origin}): groups {', '.join(config.groups)} on sites "
            f"{', '.join(config.sites)}")  # fmt: skip


async def _fingerprint_of(client: Client, description: ScheduleDescription) -> str:
    """The fingerprint we wrote into the action's memo ("" when absent: not ours, or an old one)."""
    action = description.schedule.action
    memo = getattr(action, "memo", None) or {}
    raw = memo.get(MEMO_KEY) if isinstance(memo, Mapping) else None
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    [value] = await client.data_converter.decode([raw], [str])
    return str(value)


async def ours(client: Client) -> list[str]:
    """Ids of the ``patchwave-sched-*`` schedules Temporal lists (visibility may lag a little)."""
    found = []
    async for listed in await client.list_schedules():
        if listed.id.startswith(PREFIX):
            found.append(listed.id)
    return sorted(found)


async def sync_schedules(client: Client, settings: Settings, now: datetime, *,
                         known: Sequence[str] | None = None) -> SyncResult:  # fmt: skip
    """Make Temporal's ``patchwave-sched-*`` schedules match the configuration at ``now``.

    ``known``: ids believed to exist (default: :func:`ours`); any of them not wanted is deleted.
    """
    created, updated, unchanged = [], [], []
    wanted = rollouts(settings)
    for target in wanted:
        schedule, fingerprint = desired(target, settings, now)
        handle = client.get_schedule_handle(target.schedule_id)
        try:
            await client.create_schedule(target.schedule_id, schedule)
            created.append(target.schedule_id)
            continue
        except ScheduleAlreadyRunningError:
            pass
        current = await handle.describe()
        if await _fingerprint_of(client, current) == fingerprint:
            unchanged.append(target.schedule_id)
            continue
        state = current.schedule.state

        def replace_with(
            _: ScheduleUpdateInput, new: Schedule = schedule, old: ScheduleState = state
        ) -> ScheduleUpdate:
            if old.paused:  # an operator's pause (and its note) survive a re-sync
                new.state.paused, new.state.note = True, old.note
            return ScheduleUpdate(schedule=new)

        await handle.update(replace_with)
        updated.append(target.schedule_id)
    ids = {t.schedule_id for t in wanted}
    deleted = []
    for stale in retired(await ours(client) if known is None else known, ids):
        try:
            await client.get_schedule_handle(stale).delete()
            deleted.append(stale)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise
    return SyncResult(tuple(created), tuple(updated), tuple(deleted), tuple(unchanged))


async def keep_in_sync(client: Client, settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                       interval_s: float = SYNC_INTERVAL_S, stop: asyncio.Event | None = None,
                       on_sync: Callable[[SyncResult], None] | None = None) -> None:  # fmt: skip
    """``serve``: sync now, then every ``interval_s`` until ``stop`` is set (rolls fire times forward)."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            result = await sync_schedules(client, settings, clock.now())
        except RPCError as err:  # e.g. the server is restarting: the next round tries again
            log.warning("schedule_sync_failed", error=str(err), retry_in_s=interval_s)
        else:
            log.info("schedules_synced", created=len(result.created), updated=len(result.updated),
                     deleted=len(result.deleted), unchanged=len(result.unchanged))  # fmt: skip
            if on_sync is not None:
                on_sync(result)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            continue
