"""What a run command checks before it starts anything: bad input is refused before an engine runs.

Each check reads the fact store only (never creating one that is not there) and raises the
operator error that names the fix: a run id used twice (:class:`~orchestrator.errors.RunExists`),
a rollback of VMs the run has no snapshot of (:class:`~orchestrator.errors.NothingToRollBack`), a name
the run did not plan (:class:`~orchestrator.errors.SelectionError`), an approval of a finished run
(:class:`~orchestrator.errors.ApprovalRefused`, :class:`~orchestrator.errors.RunNotRunning`).
"""

from __future__ import annotations

import difflib
from typing import NoReturn

from orchestrator.config.settings import Settings
from orchestrator.errors import ApprovalRefused, NothingToRollBack, RunExists, RunNotRunning, SelectionError
from orchestrator.facts.store import FactStore, GateRecord, RunRecord, open_store
from orchestrator.run_ids import check_run_id

#: Run statuses after which a run no longer waits for anything (an approval included).
FINISHED = ("succeeded", "halted", "failed", "cancelled")


def check_new_run(settings: Settings, run_id: str) -> None:
    """``run_id`` is a valid id no run of this state directory has (a run id is used once)."""
    known = recorded_run(settings, check_run_id(run_id))
    if known is not None:
        raise RunExists(run_id, known.status)


def recorded_run(settings: Settings, run_id: str) -> RunRecord | None:
    """The fact store's record of ``run_id`` (``None`` without creating a fact store that is not there)."""
    if not settings.facts.url and not settings.state.facts_path.exists():
        return None
    facts = open_store(settings)
    try:
        return facts.get_run(run_id)
    finally:
        facts.close()


def check_revertible(facts: FactStore, record: RunRecord, vm_names: tuple[str, ...]) -> None:
    """The VMs named (all, without names) have a snapshot ``rollback_targets`` will revert."""
    plan = facts.run_plan(record.run_id)
    steps = {step.vm.name: step for step in plan.vm_steps} if plan is not None else {}
    for name in vm_names:  # an unknown name is bad input, not an empty (successful) rollback
        if name not in steps:
            known = sorted(steps)
            raise SelectionError(name, difflib.get_close_matches(name, known, n=3) or known[:5])
    snapshots = {s.step_id: s for s in facts.snapshots(run_id=record.run_id) if s.snapshot_id}
    revertible = {n for n, step in steps.items() if step.step_id in snapshots
                  and snapshots[step.step_id].state != "deleted"}  # fmt: skip
    missing = [n for n in vm_names if n not in revertible]
    if missing or not revertible:
        step = steps[missing[0]] if missing else None
        recorded = snapshots.get(step.step_id) if step else None
        outcome = facts.outcome(record.run_id, step.step_id) if step else None
        why = ("its snapshot was deleted" if recorded is not None else
               f"it was not snapshotted: {outcome.status.value}" if outcome is not None else
               "it was not snapshotted" if step else "the run recorded no snapshot")  # fmt: skip
        raise NothingToRollBack(record.run_id, missing, why)


def refused_gate(settings: Settings, record: RunRecord) -> GateRecord | None:
    """The ring gate refusal that halted ``record`` (None: it did not halt at a ring gate)."""
    if record.status != "halted" or not settings.state.facts_path.exists():
        return None
    facts = FactStore(settings.state.facts_path)
    try:
        gates = facts.gate_records(record.run_id)
    finally:
        facts.close()
    return gates[-1] if gates and gates[-1].decision == "refused" else None


def refuse_finished(settings: Settings, record: RunRecord) -> NoReturn:
    """An approval (without --force) of a finished run: why not, and what to do instead."""
    refused = refused_gate(settings, record)
    if refused is not None:
        raise ApprovalRefused(
            record.run_id, f"the run halted: {record.reason}",
            fix=f"`patchwave approve {record.run_id} --ring {refused.ring} --force` is the only way past a gate "
            f"that refused, then `patchwave resume {record.run_id}`",
        )  # fmt: skip
    raise RunNotRunning(record.run_id, record.status)


def check_forcible(settings: Settings, record: RunRecord, ring: str) -> GateRecord:
    """``approve --force`` of a finished run passes only the gate that halted it: that refusal."""
    refused = refused_gate(settings, record)
    if refused is None:
        why = f"it halted: {record.reason}" if record.status == "halted" else f"it {record.status}"
        raise ApprovalRefused(
            record.run_id, f"no ring gate refused this run ({why}); --force only passes a gate that refused",
            fix=f"`patchwave status {record.run_id}` shows why it stopped; `patchwave resume {record.run_id}` "
            "continues a halted run",
        )  # fmt: skip
    if (ring or refused.ring) != refused.ring:
        raise ApprovalRefused(
            record.run_id, f"ring {ring!r} did not refuse promotion; ring {refused.ring!r} did",
            fix=f"`patchwave approve {record.run_id} --ring {refused.ring} --force`",
        )  # fmt: skip
    return refused
