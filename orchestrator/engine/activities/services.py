"""``vm_restart_services``: restart the services a patch left running old libraries, instead of a reboot.

Called by VmPatch when ``[policy] restart_services = "needrestart"`` and the patch left services stale
(``restart_needed``) without a kernel to boot (see :mod:`orchestrator.engine.workflows.services`).
Check-then-act like every activity: the services stale *now* are asked for first (a retry after a
restart that completed finds none and does nothing); the intent (what is about to be restarted) is
recorded before, the result (what is still stale: services the tool keeps running) after. Debian
guests restart through needrestart itself (``needrestart -r a -l``: its own list of services it never
restarts applies), RHEL and SUSE guests with ``systemctl restart`` of the listed services except those
kept running (``orchestrator.guests.packages.base.KEEP_RUNNING``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import ServicesResult, VmTask
from orchestrator.facts.actions import Action
from orchestrator.facts.details import ServicesDetail
from orchestrator.guests.packages.base import KERNEL
from orchestrator.guests.patcher import GuestPatcher


class ServiceActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [self.vm_restart_services]

    @activity.defn(name=ActivityName.VM_RESTART_SERVICES)
    @translated
    def vm_restart_services(self, task: VmTask) -> ServicesResult:
        run_id, step_id, vm = task.run_id, task.step.step_id, task.step.vm
        info = self.ctx.provider(vm.site).get_vm(vm)
        channel = self.ctx.guest_channel(vm, info)
        try:
            patcher = GuestPatcher(channel, clock=self.ctx.clock)
            stale = tuple(s for s in patcher.needs_restart() if s != KERNEL)
            if not stale:
                return ServicesResult()  # nothing stale (now): nothing to do
            self.ctx.facts.record_intent(
                run_id, step_id, Action.RESTART_SERVICES, target=str(vm), detail=ServicesDetail(stale)
            )
            with heartbeating(f"restarting {len(stale)} service(s) on {vm}"):
                remaining = patcher.restart_services(stale)
        finally:
            channel.close()
        detail = ServicesDetail(stale, remaining)
        self.ctx.facts.record_result(run_id, step_id, Action.RESTART_SERVICES, ok=True, detail=detail)
        self.ctx.log.info(
            "guest_services_restarted", run=run_id, vm=str(vm), services=stale, remaining=remaining
        )
        return ServicesResult(restarted=tuple(s for s in stale if s not in remaining), remaining=remaining)
