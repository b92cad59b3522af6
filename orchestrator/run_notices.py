"""Notifications from inside ``PatchRun`` (workflow-side, deterministic).

Asks the ``notify`` activity (:mod:`orchestrator.notify_activities`) to deliver; a failure there
is logged by the workflow and never changes the run. ``prenotice_wait`` sleeps until the pre-notice
moment before a window opens, sends ``window_prenotice`` once per window occurrence, and returns
(the caller then sleeps until the window opens).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call, describe
    from orchestrator.messages import CENTRAL_QUEUE
    from orchestrator.notify_activities import Notice, NoticeResult, NotifySetup


class RunNotices:
    def __init__(self) -> None:
        self.run_id = ""
        self.setup = NotifySetup(enabled=False, prenotice_s=0)
        self._sent: set[str] = set()  # keys asked for by this execution (concurrent VMs share one pre-notice)

    async def start(self, run_id: str) -> None:
        self.run_id = run_id
        try:
            self.setup = await call("notify_setup", run_id, result_type=NotifySetup, queue=CENTRAL_QUEUE)
        except ActivityError as err:
            workflow.logger.warning("notifications disabled for this run: %s", describe(err))

    async def send(self, event: str, **fields: object) -> None:
        key = str(fields.get("key") or event)
        if not self.setup.enabled or key in self._sent:
            return
        self._sent.add(key)
        now = workflow.now().isoformat(timespec="seconds")
        notice = Notice(run_id=self.run_id, event=event, now=now, **fields)  # type: ignore[arg-type]
        try:
            await call("notify", notice, result_type=NoticeResult, queue=CENTRAL_QUEUE)
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
        await self.send("window_prenotice", key=f"window_prenotice:{window}:{start_iso}", window=window,
                        window_start=start_iso, window_end=end_iso)  # fmt: skip
