"""Notifications from inside ``PatchRun`` (workflow-side, deterministic).

Asks the ``notify`` activity (:mod:`orchestrator.engine.activities.notify`) to deliver; a failure there
is logged by the workflow and never changes the run. ``prenotice_wait`` sleeps until the pre-notice
moment before a window opens, sends ``window_prenotice`` once per window occurrence, and returns
(the caller then sleeps until the window opens).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.config.events import NotifyEvent
    from orchestrator.engine.failures import describe
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import CENTRAL_QUEUE, Notice, NoticeResult, NotifySetup
    from orchestrator.engine.workflows.calls import call


class RunNotices:
    def __init__(self) -> None:
        self.run_id = ""
        self.setup = NotifySetup(enabled=False, prenotice_s=0)
        self._sent: set[str] = set()  # keys asked for by this execution (concurrent VMs share one pre-notice)

    def configure(self, run_id: str, setup: NotifySetup, sent: tuple[str, ...] = ()) -> None:
        """Take a setup asked for before (a batch of the run, or its next execution)."""
        self.run_id, self.setup = run_id, setup
        self._sent.update(sent)

    async def start(self, run_id: str) -> None:
        self.run_id = run_id
        try:
            self.setup = await call(
                ActivityName.NOTIFY_SETUP, run_id, result_type=NotifySetup, queue=CENTRAL_QUEUE
            )
        except ActivityError as err:
            workflow.logger.warning("notifications disabled for this run: %s", describe(err))

    async def send(self, event: NotifyEvent, **fields: object) -> None:
        key = str(fields.get("key") or event)
        if not self.setup.enabled or key in self._sent:
            return
        self._sent.add(key)
        now = workflow.now().isoformat(timespec="seconds")
        notice = Notice(run_id=self.run_id, event=event, now=now, **fields)  # type: ignore[arg-type]  # fields: Notice's own, by name
        try:
            await call(ActivityName.NOTIFY, notice, result_type=NoticeResult, queue=CENTRAL_QUEUE)
        except ActivityError as err:  # never fails the run
            workflow.logger.warning("notification %s failed: %s", event, describe(err))

    async def prenotice_wait(self, window: str, start: datetime, end: datetime) -> None:
        """Before a window opens at ``start``: sleep until ``start - prenotice`` and send the pre-notice."""
        if not self.setup.enabled or self.setup.prenotice_s <= 0:
            return
        now = workflow.now()
        if now >= start:
            return
        notice_at = start - timedelta(seconds=self.setup.prenotice_s)
        if notice_at > now:
            await workflow.sleep(notice_at - now)
        start_iso, end_iso = start.isoformat(timespec="seconds"), end.isoformat(timespec="seconds")
        event = NotifyEvent.WINDOW_PRENOTICE
        key = f"{event}:{window}:{start_iso}"
        await self.send(event, key=key, window=window, window_start=start_iso, window_end=end_iso)
