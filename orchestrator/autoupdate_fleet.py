"""``patchwave autoupdates plan|apply|status`` across the fleet (everything the CLI does, callable).

For every targeted VM (``[targets]``, or ``--vm`` names; the same selection as ``patchwave plan``):
its group (``[[groups]]`` match), that group's ``[autoupdates]`` settings, maintenance window and
pinned packages (``[groups.policy] updates = "pinned"``) make its
:class:`~orchestrator.autoupdates.AutoUpdatePolicy`; its guest channel (``[guests]``) tells its OS.

* ``plan`` — what ``apply`` would write and switch (asks each guest only for ``/etc/os-release``);
* ``apply`` — journals the intent per VM (files by hash, units, holds), changes the guest, journals
  the result (``orchestrator.facts.autoupdates``);
* ``status`` — reads each guest's updater state, journals it (the compliance report's source).

A few guests are asked at a time; one guest's failure is that guest's row, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator import autoupdates
from orchestrator.autoupdates import AutoUpdateChange, AutoUpdatePolicy, AutoUpdateStatus
from orchestrator.autoupdates.change import ApplyReport
from orchestrator.autoupdates.policy import group_policy
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.facts.assessments import os_name
from orchestrator.facts.autoupdates import AutoUpdateJournal
from orchestrator.facts.store import open_store
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.osinfo import OsInfo, detect_os
from orchestrator.planning.planner import group_of
from orchestrator.planning.selection import select_targets
from providers.base import VmInfo, VmRef
from providers.errors import ProviderError

PARALLEL = 4


@dataclass(frozen=True)
class VmAutoUpdate:
    """One VM's row: its policy, and the change / report / status, or why there is none."""

    vm: VmRef
    group: str
    mode: str
    os: str = ""
    change: AutoUpdateChange | None = None
    report: ApplyReport | None = None
    status: AutoUpdateStatus | None = None
    error: str = ""
    error_code: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


Work = Callable[[Context, VmInfo, GuestChannel, OsInfo, AutoUpdatePolicy], VmAutoUpdate]


def plan_autoupdates(
    settings: Settings, *, selection: Sequence[str] = (), now: datetime | None = None
) -> tuple[VmAutoUpdate, ...]:
    return _each_vm(settings, selection, now or datetime.now(UTC), _planned)


def apply_autoupdates(
    settings: Settings, *, selection: Sequence[str] = (), now: datetime | None = None
) -> tuple[VmAutoUpdate, ...]:
    moment = now or datetime.now(UTC)
    operation = f"autoupdates-apply-{moment.strftime('%Y%m%dT%H%M%SZ')}"

    def applied(
        ctx: Context, vm: VmInfo, channel: GuestChannel, os_info: OsInfo, policy: AutoUpdatePolicy
    ) -> VmAutoUpdate:
        row = _planned(ctx, vm, channel, os_info, policy)
        if row.change is None or row.change.empty:
            return row
        journal = AutoUpdateJournal(ctx.facts)
        journal.record(operation, vm.ref, "intent", mode=policy.mode, detail=row.change.summary())
        try:
            report = autoupdates.apply(channel, row.change)
        except ProviderError as exc:
            journal.record(operation, vm.ref, "failed", mode=policy.mode, ok=False,
                           detail={"error": str(exc), "code": exc.code})  # fmt: skip
            raise
        journal.record(operation, vm.ref, "applied", mode=policy.mode, ok=True, detail=_report_detail(report))
        return VmAutoUpdate(vm.ref, row.group, row.mode, row.os, change=row.change, report=report)

    return _each_vm(settings, selection, moment, applied)


def autoupdate_status(
    settings: Settings, *, selection: Sequence[str] = (), now: datetime | None = None
) -> tuple[VmAutoUpdate, ...]:
    moment = now or datetime.now(UTC)
    operation = f"autoupdates-status-{moment.strftime('%Y%m%dT%H%M%SZ')}"

    def read(
        ctx: Context, vm: VmInfo, channel: GuestChannel, os_info: OsInfo, policy: AutoUpdatePolicy
    ) -> VmAutoUpdate:
        found = autoupdates.status(channel, policy, os_info=os_info, now=moment)
        AutoUpdateJournal(ctx.facts).record(
            operation, vm.ref, "status", mode=policy.mode, ok=found.compliant, detail=status_detail(found)
        )
        return VmAutoUpdate(vm.ref, policy.group, policy.mode, os_name(os_info), status=found)

    return _each_vm(settings, selection, moment, read)


def status_detail(found: AutoUpdateStatus) -> dict[str, object]:
    """What the journal keeps of a status (and the compliance report shows)."""
    return {
        "updater": found.updater,
        "installed": found.installed,
        "version": found.version,
        "enabled": found.enabled,
        "active": found.active,
        "drift": [str(d) for d in found.drift],
        "last_run": {"started_at": found.last_run.started_at, "result": found.last_run.result,
                     "packages": list(found.last_run.packages), "error": found.last_run.error},
        "paused_by": found.paused.run_id if found.paused else "",
    }  # fmt: skip


def _report_detail(report: ApplyReport) -> dict[str, object]:
    return {"installed": report.installed, "changed": list(report.changed), "removed": list(report.removed),
            "kept": list(report.kept), "units": list(report.units)}  # fmt: skip


def _planned(
    ctx: Context, vm: VmInfo, channel: GuestChannel, os_info: OsInfo, policy: AutoUpdatePolicy
) -> VmAutoUpdate:
    held = autoupdates.run_holds(channel) if os_info.family == "rhel" and policy.holds_pins else None
    change = autoupdates.plan(os_info, policy, run_holds=held.packages if held is not None else ())
    return VmAutoUpdate(vm.ref, policy.group, policy.mode, os_name(os_info), change=change)


def _each_vm(
    settings: Settings, selection: Sequence[str], now: datetime, work: Work
) -> tuple[VmAutoUpdate, ...]:
    facts = open_store(settings)
    ctx = Context(settings, facts)
    try:
        vms = select_targets(ctx.discover(), settings, selection).vms
        if not vms:
            return ()
        with ThreadPoolExecutor(
            max_workers=min(PARALLEL, len(vms)), thread_name_prefix="autoupdates"
        ) as pool:
            return tuple(pool.map(lambda vm: _one(ctx, vm, now, work), vms))
    finally:
        ctx.close()
        facts.close()


def _one(ctx: Context, vm: VmInfo, now: datetime, work: Work) -> VmAutoUpdate:
    group = group_of(vm, ctx.settings)
    settings = ctx.settings.autoupdates.for_group(group.name)
    channel: GuestChannel | None = None
    try:
        policy = group_policy(ctx.settings, group.name, now=now)
        channel = ctx.guest_channel(vm.ref, vm)
        return work(ctx, vm, channel, detect_os(channel), policy)
    except ProviderError as exc:
        ctx.log.warning("autoupdates_vm_failed", vm=str(vm.ref), error=str(exc), code=exc.code)
        return VmAutoUpdate(vm.ref, group.name, settings.mode, error=str(exc), error_code=exc.code or "error")
    finally:
        if channel is not None:
            channel.close()
