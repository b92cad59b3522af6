"""Notification activities (central queue): ``notify_setup`` and ``notify``.

``notify`` builds the message context from the run's recorded plan (fact store) plus what the
workflow passes (the outcome, the summary, window times), delivers through
:class:`~orchestrator.notify.Notifier` and returns counts. It never raises for a failed delivery
(that is logged and recorded), and it does not send a notice whose ``key`` the fact store already
records as delivered — delivery of activities is at least once.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

from orchestrator.context import Context
from orchestrator.fact_records import utc
from orchestrator.model import Plan, RunSummary, VmOutcome
from orchestrator.notify import Notifier
from orchestrator.notify_messages import local_time, run_context, summary_context, vm_context


@dataclass(frozen=True)
class NotifySetup:
    enabled: bool  # any URL configured
    prenotice_s: int  # window_prenotice this long before a window opens (0 = none)


@dataclass(frozen=True)
class Notice:
    """One notification a run asks for (plain values: it is an activity input)."""

    run_id: str
    event: str
    key: str = ""  # unique within the run ("" = the event): e.g. "vm_rolled_back:vm:lab:42"
    step_id: str = ""  # vm_rolled_back: the VM's step
    outcome: VmOutcome | None = None  # vm_rolled_back
    summary: RunSummary | None = None  # run_finished / run_halted
    window: str = ""  # window_prenotice: the window and its occurrence (ISO UTC)
    window_start: str = ""
    window_end: str = ""
    requested_by: str = ""
    now: str = ""  # ISO UTC: the workflow's time when it asked (for "opens in N h")


@dataclass(frozen=True)
class NoticeResult:
    sent: int = 0
    failed: int = 0
    already: bool = False  # delivered before (a retried activity or a resumed run)


class NotifyActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.notifier = Notifier(ctx.settings.notifications, facts=ctx.facts)

    def all(self) -> list:
        return [self.notify_setup, self.notify]

    @activity.defn(name="notify_setup")
    def notify_setup(self, run_id: str) -> NotifySetup:
        cfg = self.ctx.settings.notifications
        return NotifySetup(enabled=cfg.enabled, prenotice_s=cfg.prenotice_s)

    @activity.defn(name="notify")
    def notify(self, notice: Notice) -> NoticeResult:
        if not self.ctx.settings.notifications.enabled:
            return NoticeResult()
        key = notice.key or notice.event
        if self.notifier.delivered(notice.run_id, key):
            return NoticeResult(already=True)
        delivery = self.notifier.send(notice.event, self.context(notice), run_id=notice.run_id, key=key)
        return NoticeResult(sent=delivery.sent, failed=delivery.failed)

    def context(self, notice: Notice) -> dict[str, str]:
        record = self.ctx.facts.get_run(notice.run_id)
        plan = record.plan() if record is not None else None
        zone = self._zone(notice.window or (plan.window.window if plan else ""))
        context: dict[str, str] = {"run_id": notice.run_id}
        if plan is not None:
            context |= run_context(notice.run_id, plan, zone=zone)
        if notice.summary is not None:
            context |= summary_context(notice.summary, plan)
        if notice.outcome is not None:
            step = _step(plan, notice.step_id or notice.outcome.step_id)
            if step is not None:
                context |= vm_context(notice.run_id, step, notice.outcome)
        if notice.window:
            context |= {"window": notice.window, "window_start": local_time(notice.window_start, zone),
                        "window_end": local_time(notice.window_end, zone)}  # fmt: skip
        if notice.requested_by:
            context["requested_by"] = notice.requested_by
        if notice.window_start:
            asked = utc(notice.now) if notice.now else self.ctx.clock.now()
            hours = max(0.0, (utc(notice.window_start) - asked).total_seconds() / 3600)
            context["hours"] = f"{hours:.0f}" if hours >= 1 else f"{hours:.1f}"
        return context

    def _zone(self, window: str) -> str:
        try:
            return self.ctx.settings.window(window).timezone if window else "UTC"
        except KeyError:
            return "UTC"


def _step(plan: Plan | None, step_id: str):  # -> VmStep | None
    if plan is None:
        return None
    return next((s for s in plan.vm_steps if s.step_id == step_id), None)
