"""The guest's automatic updater paused around its patch: ``vm_pause_autoupdates`` before the
snapshot, ``vm_restore_autoupdates`` after health (or the revert).

Both are :mod:`orchestrator.autoupdates`' idempotent verbs through the VM's guest channel, journalled
in the step journal (``autoupdates_pause`` / ``autoupdates_restore``: intent before, result after):

* a pause repeated for the same run keeps its marker (``kept``); another run's marker left by a dead
  run is adopted (its recorded timer states are the originals); an update still running after
  ``policy.autoupdates_wait`` is :class:`~orchestrator.autoupdates.UpdaterBusy` (retryable: the
  pause stays in effect, the retry waits again);
* a restore first writes the run's **holds** (``coexist``; :mod:`orchestrator.autoupdates.holds`):
  the names of the pins the VM's patch installed (a later ring's pinned promotion, a baseline's
  approved set) and of the versions it held back, so the updater, once running again, leaves them
  to patchwave; a patch without pins releases the previous run's holds; no patch intent (the run
  never reached the patch) leaves them as they are. Then it starts exactly the timers the marker
  recorded as active and removes the marker;
  nothing paused = nothing to do; another run's marker is refused (``doctor`` restores a dead run's).
  The journal is asked first: a (run, step) with no pause intent, or with a successful restore after
  its latest one, was not left paused by this run, and the guest is not contacted.

The snapshot is taken *after* the pause, so a revert brings back a paused guest and the restore that
follows the revert finds the marker and restores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator import autoupdates
from orchestrator.autoupdates.holds import package_names
from orchestrator.autoupdates.policy import group_policy
from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import UpdaterPause, VmTask
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import AutoUpdatePauseDetail, PatchIntent
from orchestrator.facts.pins import PinStore
from orchestrator.guests.channel import GuestChannel
from orchestrator.paused_updaters import unrestored_pauses
from providers.errors import ProviderError


class AutoUpdateActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [self.vm_pause_autoupdates, self.vm_restore_autoupdates]

    @activity.defn(name=ActivityName.VM_PAUSE_AUTOUPDATES)
    @translated
    def vm_pause_autoupdates(self, task: VmTask) -> UpdaterPause:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        facts = self.ctx.facts
        channel = self.ctx.guest_channel(vm, self.ctx.provider(vm.site).get_vm(vm))
        facts.record_intent(
            run_id, step_id, Action.AUTOUPDATES_PAUSE, target=str(vm), detail=AutoUpdatePauseDetail()
        )
        try:
            with heartbeating(f"pausing the automatic updater of {vm}"):
                done = autoupdates.pause(channel, run_id, step_id, wait_s=task.step.policy.autoupdates_wait_s)
        except ProviderError as exc:
            detail = AutoUpdatePauseDetail(state="busy" if exc.retryable else "failed")
            facts.record_result(run_id, step_id, Action.AUTOUPDATES_PAUSE, ok=False, target=str(vm),
                                detail=detail, error=str(exc))  # fmt: skip
            raise
        finally:
            channel.close()
        detail = AutoUpdatePauseDetail(done.state, done.stopped, paused_by=",".join(done.marker.adopted_from))
        facts.record_result(run_id, step_id, Action.AUTOUPDATES_PAUSE, ok=True, target=str(vm), detail=detail)
        return UpdaterPause(done.state, done.stopped)

    @activity.defn(name=ActivityName.VM_RESTORE_AUTOUPDATES)
    @translated
    def vm_restore_autoupdates(self, task: VmTask) -> UpdaterPause:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        facts = self.ctx.facts
        if not unrestored_pauses(facts, run_id, step_id):
            return UpdaterPause("nothing")  # never paused by this (run, step), or restored already
        channel = self.ctx.guest_channel(vm, self.ctx.provider(vm.site).get_vm(vm))
        facts.record_intent(
            run_id, step_id, Action.AUTOUPDATES_RESTORE, target=str(vm), detail=AutoUpdatePauseDetail()
        )
        try:
            with heartbeating(f"restoring the automatic updater of {vm}"):
                held = self._hold(task, channel)
                done = autoupdates.restore(channel, run_id)
        except ProviderError as exc:
            facts.record_result(run_id, step_id, Action.AUTOUPDATES_RESTORE, ok=False, target=str(vm),
                                detail=AutoUpdatePauseDetail(state="failed"), error=str(exc))  # fmt: skip
            raise
        finally:
            channel.close()
        state = "restored" if done.restored else "nothing"
        detail = AutoUpdatePauseDetail(state, done.started, done.failed, holds=held)
        facts.record_result(
            run_id, step_id, Action.AUTOUPDATES_RESTORE, ok=True, target=str(vm), detail=detail
        )
        return UpdaterPause(state, done.started)

    def _hold(self, task: VmTask, channel: GuestChannel) -> tuple[str, ...] | None:
        """Write the run's holds on the guest before its updater runs again (None: left as they were)."""
        run_id, step_id = task.run_id, task.step.step_id
        policy = group_policy(self.ctx.settings, task.step.group, now=self.ctx.clock.now())
        if not policy.holds_pins:
            return None
        intents = [
            r.detail for r in self.ctx.facts.step_history(run_id, step_id, action=Action.PATCH)
            if r.phase is Phase.INTENT and isinstance(r.detail, PatchIntent)
        ]  # fmt: skip
        if not intents:
            return None  # the run never reached this VM's patch: the previous holds stay
        pinned = tuple(intents[-1].planned) if intents[-1].pins else ()
        names, odd = package_names([*pinned, *PinStore(self.ctx.facts).held_names(run_id, step_id)])
        if odd:
            self.ctx.log.warning(
                "autoupdates_hold_skipped", run=run_id, vm=str(task.step.vm), names=list(odd)
            )
        moment = self.ctx.clock.now().isoformat(timespec="seconds")
        try:
            autoupdates.hold(channel, policy, autoupdates.RunHolds(run_id, step_id, moment, names))
        except autoupdates.AutoUpdateError as exc:
            if exc.retryable:
                raise
            # never keep the updater paused over it: restored without the holds, and said so
            self.ctx.log.warning("autoupdates_hold_failed", run=run_id, vm=str(task.step.vm), error=str(exc))
            return None
        return names
