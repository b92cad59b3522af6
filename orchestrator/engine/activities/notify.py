"""Notification activities (central queue): ``notify_setup`` and ``notify``.

``notify`` builds the message context from the run's recorded plan (fact store) plus what the
workflow passes (the outcome, the summary, window times), delivers through
:class:`~orchestrator.notify.Notifier` and returns counts. It never raises for a failed delivery
(that is logged and recorded), and it does not send a notice whose ``key`` the fact store already
records as delivered — delivery of activities is at least once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.assessment.cve_run import notice_context as cve_notice_context
from orchestrator.context import Context
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import Notice, NoticeResult, NotifySetup
from orchestrator.facts.records import utc
from orchestrator.notify.notifier import Notifier
from orchestrator.notify.templates import local_time, run_context, summary_context, vm_context


class NotifyActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.notifier = Notifier(ctx.settings.notifications, facts=ctx.facts)

    def all(self) -> list[Callable[..., Any]]:
        return [self.notify_setup, self.notify]

    @activity.defn(name=ActivityName.NOTIFY_SETUP)
    def notify_setup(self, run_id: str) -> NotifySetup:
        cfg = self.ctx.settings.notifications
        return NotifySetup(enabled=cfg.enabled, prenotice_s=cfg.prenotice_s)

    @activity.defn(name=ActivityName.NOTIFY)
    def notify(self, notice: Notice) -> NoticeResult:
        if not self.ctx.settings.notifications.enabled:
            return NoticeResult()
        key = notice.key or notice.event
        if self.notifier.delivered(notice.run_id, key):
            return NoticeResult(already=True)
        delivery = self.notifier.send(notice.event, self.context(notice), run_id=notice.run_id, key=key)
        return NoticeResult(sent=delivery.sent, failed=delivery.failed)

    def context(self, notice: Notice) -> dict[str, str]:
        facts = self.ctx.facts
        # a VM's event reads its step only; the run's events read the whole plan (owners, waves)
        plan = (
            facts.plan_header(notice.run_id) if notice.outcome is not None else facts.run_plan(notice.run_id)
        )
        zone = self._zone(notice.window or (plan.window.window if plan else ""))
        context: dict[str, str] = {"run_id": notice.run_id}
        if plan is not None and notice.outcome is None:
            context |= run_context(notice.run_id, plan, zone=zone)
        if notice.summary is not None:
            context |= summary_context(notice.summary, plan)
            context |= cve_notice_context(facts, notice.run_id)  # "" unless a `run --cve`
        if notice.outcome is not None:
            step = facts.plan_step(notice.run_id, notice.step_id or notice.outcome.step_id)
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
