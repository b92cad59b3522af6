"""Per-host activities of the hypervisor phase; each checks the host's real state first.

* ``host_enter_maintenance``: a host already in maintenance *for this run* (fact store) is a no-op;
  one that someone else put into maintenance is used as is and never taken out by us. Otherwise
  the intent ("entering") is recorded before the call.
* ``host_exit_maintenance``: idempotent; exits only a host this run put into maintenance.
* ``host_patch``: ``platform`` (HOST_PATCH), ``ssh`` (the package manager over SSH) or ``none``
  (report only: the pending updates of a host that is this machine, listed read-only).
* ``host_reboot``: records the boot time before; a re-run whose host already rebooted only verifies.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from temporalio import activity

from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import HostBuild, HostOutcomeRecord, HostTask
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import HostAssessDetail, HostPatchDetail, HostPatchIntent, HostRebootDetail
from orchestrator.facts.leases import LeaseTarget
from orchestrator.guests.channel import GuestChannel, LocalChannel
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import UpdateSelection
from orchestrator.guests.patcher import Assessment, GuestPatcher
from orchestrator.model import PackageChange
from providers.base import Capability, HostPatchResult, HostPatchSpec, HostState
from providers.errors import ProviderError, TransientProviderError
from providers.timing import Clock

MAINTENANCE_TIMEOUT_S = 3600.0
HOST_PATCH_TIMEOUT_S = 5400.0
HOST_REBOOT_TIMEOUT_S = 2400.0


class HostActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.host_enter_maintenance,
            self.host_patch,
            self.host_reboot,
            self.host_verify,
            self.host_exit_maintenance,
            self.host_record_outcome,
        ]

    def _ours(self, task: HostTask) -> bool:
        """Did this run put the host into maintenance (and not take it out yet)?"""
        return any(
            rec.run_id == task.run_id and rec.host.id == task.step.host.id
            for rec in self.ctx.facts.hosts_in_maintenance()
        )

    @activity.defn(name=ActivityName.HOST_ENTER_MAINTENANCE)
    @translated
    def host_enter_maintenance(self, task: HostTask) -> None:
        host, run_id = task.step.host, task.run_id
        provider = self.ctx.require(host.site, Capability.HOST_MAINTENANCE)
        info = provider.get_host(host)
        if info.in_maintenance:
            if self._ours(task):
                if task.step.evacuate:
                    # A retry after a crash between "entering" and "in": on some platforms a host
                    # is in maintenance before its guests are gone (PVE HA maintenance moves only
                    # HA-managed guests; the provider moves the rest). Finish the evacuation:
                    # enter_maintenance on a host already in maintenance only does what is left.
                    with heartbeating(f"finishing the evacuation of {host}"):
                        provider.enter_maintenance(host, evacuate=True, timeout=MAINTENANCE_TIMEOUT_S)
                self.ctx.facts.record_maintenance(run_id, host, "in")
            else:
                self.ctx.log.warning("host_already_in_maintenance", run=run_id, host=str(host))
            return
        self.ctx.facts.record_maintenance(run_id, host, "entering")
        with heartbeating(f"entering maintenance on {host}"):
            provider.enter_maintenance(host, evacuate=task.step.evacuate, timeout=MAINTENANCE_TIMEOUT_S)
        self.ctx.facts.record_maintenance(run_id, host, "in")
        self.ctx.log.info("host_in_maintenance", run=run_id, host=str(host))

    @activity.defn(name=ActivityName.HOST_EXIT_MAINTENANCE)
    @translated
    def host_exit_maintenance(self, task: HostTask) -> None:
        host, run_id = task.step.host, task.run_id
        if not self._ours(task):
            return  # never entered by this run (or already exited): nothing to undo
        provider = self.ctx.require(host.site, Capability.HOST_MAINTENANCE)
        if provider.get_host(host).in_maintenance:
            with heartbeating(f"exiting maintenance on {host}"):
                provider.exit_maintenance(host, timeout=MAINTENANCE_TIMEOUT_S)
        self.ctx.facts.record_maintenance(run_id, host, "exited")
        self.ctx.log.info("host_exited_maintenance", run=run_id, host=str(host))

    @activity.defn(name=ActivityName.HOST_PATCH)
    @translated
    def host_patch(self, task: HostTask) -> HostPatchResult:
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        info = self.ctx.provider(host.site).get_host(host)
        before = info.build
        if task.step.patch == "none":
            return self._report_only(task, info.address)
        self.ctx.facts.record_intent(
            run_id, step_id, Action.HOST_PATCH, target=str(host), detail=HostPatchIntent(before)
        )
        with heartbeating(f"patching {host}"):
            result = self._platform(task) if task.step.patch == "platform" else self._ssh(task)
        if not result.changed and not result.reboot_required:
            result = self._earlier_attempt(task, result)
        detail = HostPatchDetail(result.changed, result.reboot_required, result.build_after)
        self.ctx.facts.record_result(run_id, step_id, Action.HOST_PATCH, ok=True, detail=detail)
        return replace(result, build_before=result.build_before or before)

    def _report_only(self, task: HostTask, address: str) -> HostPatchResult:
        """``patch = "none"``: list the host's pending updates read-only; never install anything.

        Only a host that is the machine we run on is assessed (through the local channel, with a
        package-manager query that changes nothing: apt's simulation without a refresh); any other
        host is reported as not assessed. An assessment failure is reported, it fails nothing.
        """
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        if not is_this_machine(address or host.name):
            note = f"report only: {address or host.name} is not this machine; pending updates not assessed"
            return HostPatchResult(changed=False, reboot_required=False, detail=note)
        try:
            with heartbeating(f"assessing {host} (read-only)"):
                assessment = host_assessment(LocalChannel(clock=self.ctx.clock), self.ctx.clock)
        except ProviderError as exc:
            self.ctx.log.warning("host_assessment_failed", run=run_id, host=str(host), error=str(exc))
            note = f"report only: pending updates could not be listed: {exc}"
            return HostPatchResult(changed=False, reboot_required=False, detail=note)
        found = HostAssessDetail(
            pending=tuple(PackageChange(u.name, u.current, u.candidate) for u in assessment.updates),
            security=tuple(u.name for u in assessment.security_updates),
            reboot_required=assessment.reboot_required,
            kernel=assessment.kernel,
        )
        self.ctx.facts.record_result(run_id, step_id, Action.HOST_ASSESS, ok=True, detail=found)
        self.ctx.log.info("host_assessed", run=run_id, host=str(host), pending=len(found.pending))
        return HostPatchResult(changed=False, reboot_required=False, detail=report_note(found))

    def _earlier_attempt(self, task: HostTask, now: HostPatchResult) -> HostPatchResult:
        """A retry that finds nothing left to install may follow an attempt of this run that did
        install (its completion lost in a crash): the platform then lists the patch as installed,
        not pending, and its reboot would be skipped. Keep that attempt's reboot: from its recorded
        result, or — interrupted before its result was recorded — assume one is needed."""
        records = self.ctx.facts.step_history(task.run_id, task.step.step_id, action=Action.HOST_PATCH)
        earlier = records[: max(i for i, r in enumerate(records) if r.phase is Phase.INTENT)]
        results = [r.detail for r in earlier if r.phase is Phase.RESULT and r.ok]
        if results and isinstance(results[-1], HostPatchDetail):
            changed, reboot = results[-1].changed, results[-1].reboot_required
        elif any(r.phase is Phase.INTENT for r in earlier):
            changed = reboot = True
        else:
            return now
        if not reboot:
            return now
        self.ctx.log.info(
            "host_patch_resumed", run=task.run_id, host=str(task.step.host), reboot_required=True
        )
        return HostPatchResult(changed, True, now.build_before, now.build_after,
                               "installed by an earlier attempt of this run; reboot still pending")  # fmt: skip

    def _platform(self, task: HostTask) -> HostPatchResult:
        provider = self.ctx.require(task.step.host.site, Capability.HOST_PATCH)
        spec = HostPatchSpec(depot_urls=self.ctx.settings.hosts.depot_urls)
        return provider.patch_host(task.step.host, spec, timeout=HOST_PATCH_TIMEOUT_S)

    def _ssh(self, task: HostTask) -> HostPatchResult:
        info = self.ctx.provider(task.step.host.site).get_host(task.step.host)
        channel = self.ctx.host_channel(task.step.host, info.address)
        try:
            patcher = GuestPatcher(channel, clock=self.ctx.clock)
            # Hypervisor hosts take full upgrades (Proxmox VE: `apt dist-upgrade`, never `apt upgrade`).
            if patcher.os_info().family == "debian":
                patcher = GuestPatcher(channel, clock=self.ctx.clock, package_manager=Apt(full_upgrade=True))
            pending = patcher.assess()  # refreshes the package lists first (apt-get update)
            if not pending.updates:
                return HostPatchResult(False, pending.reboot_required, detail="no updates pending")
            applied = patcher.apply(UpdateSelection(mode="all"), timeout=HOST_PATCH_TIMEOUT_S)
        finally:
            channel.close()
        changed = ", ".join(str(c) for c in applied.changed)
        return HostPatchResult(bool(applied.changed), applied.reboot_required, detail=changed)

    @activity.defn(name=ActivityName.HOST_REBOOT)
    @translated
    def host_reboot(self, task: HostTask) -> None:
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        provider = self.ctx.require(host.site, Capability.HOST_REBOOT)
        boot_time = provider.get_host(host).boot_time
        for record in self.ctx.facts.step_history(run_id, step_id, action=Action.HOST_REBOOT):
            if record.phase is Phase.INTENT and isinstance(record.detail, HostRebootDetail):
                earlier = record.detail.boot_time
                if earlier and boot_time and boot_time != earlier:
                    return  # rebooted by an earlier attempt
        self.ctx.facts.record_intent(
            run_id, step_id, Action.HOST_REBOOT, target=str(host), detail=HostRebootDetail(boot_time)
        )
        with heartbeating(f"rebooting {host}"):
            provider.reboot_host(host, timeout=HOST_REBOOT_TIMEOUT_S)
        self.ctx.facts.record_result(run_id, step_id, Action.HOST_REBOOT, ok=True, detail=HostRebootDetail())

    @activity.defn(name=ActivityName.HOST_VERIFY)
    @translated
    def host_verify(self, task: HostTask) -> HostBuild:
        info = self.ctx.provider(task.step.host.site).get_host(task.step.host)
        if info.state not in (HostState.CONNECTED, HostState.MAINTENANCE):
            raise TransientProviderError(f"host is {info.state.value}", target=str(task.step.host))
        return HostBuild(build=info.build)

    @activity.defn(name=ActivityName.HOST_RECORD_OUTCOME)
    @translated
    def host_record_outcome(self, record: HostOutcomeRecord) -> None:
        self.ctx.facts.set_outcome(record.run_id, record.outcome)
        # out of maintenance (exited before the outcome): the run is done with the host
        self.ctx.facts.release_leases(record.run_id, [LeaseTarget.host(record.outcome.host)])
        self.ctx.log.info(
            "host_outcome",
            run=record.run_id,
            host=str(record.outcome.host),
            status=record.outcome.status.value,
        )


def report_note(found: HostAssessDetail) -> str:
    """A report-only host's outcome detail: "report only: 3 update(s) pending (1 security): a 1->2, ..."."""
    pending = [str(c) for c in found.pending]
    return (
        f"report only: {len(pending)} update(s) pending"
        + (f" ({len(found.security)} security)" if found.security else "")
        + (", reboot pending" if found.reboot_required else "")
        + (f": {', '.join(pending[:5])}{' ...' if len(pending) > 5 else ''}" if pending else "")
    )


def is_this_machine(address: str) -> bool:
    """``address`` names the machine we run on (its hostname, FQDN or a loopback name)."""
    return address in {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"}


def host_assessment(channel: GuestChannel, clock: Clock) -> Assessment:
    """What ``channel``'s machine has pending, without refreshing or changing anything on it
    (apt: ``apt-get -s upgrade`` on the lists it already has)."""
    patcher = GuestPatcher(channel, clock=clock, lock_timeout=60)
    if patcher.os_info().family == "debian":
        patcher = GuestPatcher(channel, clock=clock, package_manager=Apt(lock_timeout=60, refresh=False))
    return patcher.assess()
