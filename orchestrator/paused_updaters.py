"""Automatic updaters a dead run left paused (``patchwave doctor``'s ``paused_updater`` finding).

A run pauses a VM's automatic updater before its snapshot and restores it at the end
(:mod:`orchestrator.engine.activities.autoupdates`, journal ``autoupdates_pause`` /
``autoupdates_restore``). A run that died in between leaves the marker on the guest: the updater
stays off. Here, from the journal alone: a step whose latest pause intent has no successful restore
after it. The fix restores *that run's* pause on the guest (:func:`orchestrator.autoupdates.restore`
with the dead run's id: a marker another run adopted since is that run's and is left alone) and
journals an ``autoupdates_restore`` result for the dead run's step, so the finding is gone.
"""

from __future__ import annotations

from orchestrator import autoupdates
from orchestrator.context import Context
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import AutoUpdatePauseDetail
from orchestrator.facts.store import FactStore
from providers.base import VmRef


def unrestored_pauses(facts: FactStore, run_id: str, step_id: str | None = None) -> list[tuple[str, str]]:
    """(step id, "site/name") of the run's steps (or of ``step_id``) whose updater may still be paused."""
    paused: dict[str, str] = {}
    records = [
        *facts.step_history(run_id, step_id, action=Action.AUTOUPDATES_PAUSE),
        *facts.step_history(run_id, step_id, action=Action.AUTOUPDATES_RESTORE),
    ]
    for record in sorted(records, key=lambda r: r.id):
        if record.action is Action.AUTOUPDATES_PAUSE and record.phase is Phase.INTENT:
            paused[record.step_id] = record.target
        elif record.action is Action.AUTOUPDATES_RESTORE and record.phase is Phase.RESULT and record.ok:
            paused.pop(record.step_id, None)
    return sorted(paused.items())


def vm_named(ctx: Context, target: str) -> VmRef | None:
    """The VM ``site/name`` as its site's inventory lists it now (None: gone, or the site is not configured)."""
    site, _, name = target.partition("/")
    if site not in ctx.settings.sites:
        return None
    return next((vm.ref for vm in ctx.inventory_of(site).vms if vm.ref.name == name), None)


def restore_dead_pause(ctx: Context, vm: VmRef, run_id: str, step_id: str) -> tuple[bool, str]:
    """Restore ``run_id``'s pause of ``vm``'s updater; journal it on (run, step). (done, note)."""
    channel = ctx.guest_channel(vm, ctx.provider(vm.site).get_vm(vm))
    try:
        done = autoupdates.restore(channel, run_id)
    except autoupdates.AutoUpdateError as exc:
        if exc.code == "paused_by_other_run":
            return False, f"{exc.message}; left alone"
        raise
    finally:
        channel.close()
    state = "restored" if done.restored else "nothing"
    ctx.facts.record_result(
        run_id, step_id, Action.AUTOUPDATES_RESTORE, ok=True, target=str(vm),
        detail=AutoUpdatePauseDetail(state, done.started, done.failed),
    )  # fmt: skip
    if not done.restored:
        return True, "nothing paused any more"
    return True, "restored" + (f" (started {', '.join(done.started)})" if done.started else "")
