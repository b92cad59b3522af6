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

from temporalio import activity

from orchestrator.activity_support import heartbeating, translated
from orchestrator.context import Context
from orchestrator.guests.apt import Apt
from orchestrator.guests.channel import GuestChannel, LocalChannel
from orchestrator.guests.packages import UpdateSelection
from orchestrator.guests.patcher import Assessment, GuestPatcher
from orchestrator.messages import HostOutcomeRecord, HostPatchResult, HostTask
from providers.base import (
    Capability,
    Clock,
    HostPatchSpec,
    HostState,
    ProviderError,
    TransientProviderError,
)

MAINTENANCE_TIMEOUT_S = 3600.0
HOST_PATCH_TIMEOUT_S = 5400.0
HOST_REBOOT_TIMEOUT_S = 2400.0


class HostActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list:
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

    @activity.defn(name="host_enter_maintenance")
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

    @activity.defn(name="host_exit_maintenance")
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

    @activity.defn(name="host_patch")
    @translated
    def host_patch(self, task: HostTask) -> HostPatchResult:
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        info = self.ctx.provider(host.site).get_host(host)
        before = info.build
        if task.step.patch == "none":
            return self._report_only(task, info.address)
        self.ctx.facts.record_intent(
            run_id, step_id, "host_patch", target=str(host), detail={"build": before}
        )
        with heartbeating(f"patching {host}"):
            result = self._platform(task) if task.step.patch == "platform" else self._ssh(task)
        if not result.changed and not result.reboot_required:
            result = self._earlier_attempt(task, result)
        detail = {
            "changed": result.changed,
            "reboot_required": result.reboot_required,
            "build": result.build_after,
        }
        self.ctx.facts.record_result(run_id, step_id, "host_patch", ok=True, detail=detail)
        return HostPatchResult(
            changed=result.changed,
            reboot_required=result.reboot_required,
            build_before=result.build_before or before,
            build_after=result.build_after,
            detail=result.detail,
        )

    def _report_only(self, task: HostTask, address: str) -> HostPatchResult:
        """``patch = "none"``: list the host's pending updates read-only; never install anything.

        Only a host that is the machine we run on is assessed (through the local channel, with a
        package-manager query that changes nothing: apt's simulation without a refresh); any other
        host is reported as not assessed. An assessment failure is reported, it fails nothing.
        """
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        if not is_this_machine(address or host.name):
            note = f"report only: {address or host.name} is not this machine; pending updates not assessed"
            return HostPatchResult(build_before="", detail=note)
        try:
            with heartbeating(f"assessing {host} (read-only)"):
                assessment = host_assessment(LocalChannel(clock=self.ctx.clock), self.ctx.clock)
        except ProviderError as exc:
            self.ctx.log.warning("host_assessment_failed", run=run_id, host=str(host), error=str(exc))
            return HostPatchResult(detail=f"report only: pending updates could not be listed: {exc}")
        updates = [f"{u.name} {u.current}->{u.candidate}" for u in assessment.updates]
        detail = {
            "report_only": True,
            "pending": updates,
            "security": [u.name for u in assessment.security_updates],
            "reboot_required": assessment.reboot_required,
            "kernel": assessment.kernel,
        }
        self.ctx.facts.record_result(run_id, step_id, "host_assess", ok=True, detail=detail)
        note = (
            f"report only: {len(updates)} update(s) pending"
            + (f" ({len(detail['security'])} security)" if detail["security"] else "")
            + (", reboot pending" if assessment.reboot_required else "")
            + (f": {', '.join(updates[:5])}{' ...' if len(updates) > 5 else ''}" if updates else "")
        )
        self.ctx.log.info("host_assessed", run=run_id, host=str(host), pending=len(updates))
        return HostPatchResult(detail=note)

    def _earlier_attempt(self, task: HostTask, now: HostPatchResult) -> HostPatchResult:
        """A retry that finds nothing left to install may follow an attempt of this run that did
        install (its completion lost in a crash): the platform then lists the patch as installed,
        not pending, and its reboot would be skipped. Keep that attempt's reboot: from its recorded
        result, or — interrupted before its result was recorded — assume one is needed."""
        records = [r for r in self.ctx.facts.step_history(task.run_id, task.step.step_id)
                   if r.action == "host_patch"]  # fmt: skip
        earlier = records[: max(i for i, r in enumerate(records) if r.phase == "intent")]
        results = [r for r in earlier if r.phase == "result" and r.ok]
        if results:
            changed = bool(results[-1].detail.get("changed"))
            reboot = bool(results[-1].detail.get("reboot_required"))
        elif any(r.phase == "intent" for r in earlier):
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
        done = provider.patch_host(task.step.host, spec, timeout=HOST_PATCH_TIMEOUT_S)
        return HostPatchResult(
            done.changed, done.reboot_required, done.build_before, done.build_after, done.detail
        )

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
        changed = ", ".join(f"{c.name} {c.old}->{c.new}" for c in applied.changed)
        return HostPatchResult(bool(applied.changed), applied.reboot_required, detail=changed)

    @activity.defn(name="host_reboot")
    @translated
    def host_reboot(self, task: HostTask) -> None:
        host, run_id, step_id = task.step.host, task.run_id, task.step.step_id
        provider = self.ctx.require(host.site, Capability.HOST_REBOOT)
        boot_time = provider.get_host(host).boot_time
        for record in self.ctx.facts.step_history(run_id, step_id):
            if record.action == "host_reboot" and record.phase == "intent":
                earlier = str(record.detail.get("boot_time", ""))
                if earlier and boot_time and boot_time != earlier:
                    return  # rebooted by an earlier attempt
        self.ctx.facts.record_intent(
            run_id, step_id, "host_reboot", target=str(host), detail={"boot_time": boot_time}
        )
        with heartbeating(f"rebooting {host}"):
            provider.reboot_host(host, timeout=HOST_REBOOT_TIMEOUT_S)
        self.ctx.facts.record_result(run_id, step_id, "host_reboot", ok=True, detail={})

    @activity.defn(name="host_verify")
    @translated
    def host_verify(self, task: HostTask) -> HostPatchResult:
        info = self.ctx.provider(task.step.host.site).get_host(task.step.host)
        if info.state not in (HostState.CONNECTED, HostState.MAINTENANCE):
            raise TransientProviderError(f"host is {info.state.value}", target=str(task.step.host))
        return HostPatchResult(build_after=info.build)

    @activity.defn(name="host_record_outcome")
    @translated
    def host_record_outcome(self, record: HostOutcomeRecord) -> None:
        self.ctx.facts.set_outcome(record.run_id, record.outcome)
        self.ctx.log.info(
            "host_outcome",
            run=record.run_id,
            host=str(record.outcome.host),
            status=record.outcome.status.value,
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
