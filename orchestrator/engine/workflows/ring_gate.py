"""The ring gate of ``PatchRun`` (deterministic, no I/O): what keeps a ring from being promoted.

After each ring but the last, ``PatchRun`` checks the ring's VMs in ``HealthBatch`` children
(:func:`check_ring`): a recorded FAILED or ROLLED_BACK outcome, or a patched VM unhealthy now, refuses
promotion (:func:`refusal`) and the run halts with the reason and the one way past it
(:func:`with_fix`: ``patchwave approve RUN --ring X --force``, then ``patchwave resume RUN``). An
approval is accepted only while its ring's gate is open (:func:`early_approval` says why not).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import (
        CENTRAL_QUEUE,
        SAMPLE,
        HealthBatchResult,
        HealthBatchTask,
        PlanPage,
        WavePage,
    )
    from orchestrator.engine.workflows.batches import HealthBatch, batch_id
    from orchestrator.engine.workflows.calls import call

#: How ``PatchRun`` awaits a batch's child workflow (listed in its progress while it runs).
Track = Callable[[str, Awaitable[HealthBatchResult]], Awaitable[HealthBatchResult]]


def added(a: HealthBatchResult, b: HealthBatchResult) -> HealthBatchResult:
    """Two slices' results as one (samples capped)."""
    return HealthBatchResult(
        checked=a.checked + b.checked, sick=a.sick + b.sick, sick_sample=(a.sick_sample + b.sick_sample)[:SAMPLE],
        failed=a.failed + b.failed, rolled_back=a.rolled_back + b.rolled_back,
        bad_sample=(a.bad_sample + b.bad_sample)[:SAMPLE],
    )  # fmt: skip


async def check_ring(
    run_id: str,
    first: int,
    last: int,
    batch_size: int,
    track: Track,
    options: Callable[[str], dict[str, Any]],
) -> HealthBatchResult:
    """The waves ``first`` .. ``last`` of the plan (one ring) in ``HealthBatch`` children of at most
    ``batch_size`` VMs: their recorded FAILED / ROLLED_BACK outcomes and the health now of their
    SUCCEEDED VMs, summed."""
    size, total = max(1, batch_size), HealthBatchResult(checked=0, sick=0)
    page = PlanPage(run_id, first, last - first + 1)
    waves = await call(ActivityName.PLAN_WAVES, page, result_type=WavePage, queue=CENTRAL_QUEUE)
    for wave in waves.waves:
        for offset in range(0, wave.size, size):
            task = HealthBatchTask(run_id, wave, offset, min(size, wave.size - offset))
            child = batch_id(run_id, "health", wave.wave_id, offset)
            running = workflow.execute_child_workflow(HealthBatch.run, task, **options(child))
            total = added(total, await track(child, running))
    return total


def _listed(sample: tuple[str, ...], n: int) -> str:
    return "; ".join(sample) + (f" and {n - len(sample)} more" if n > len(sample) else "")


def refusal(ring: str, found: HealthBatchResult, *, soaked: bool, outcomes: bool = True) -> str:
    """Why ``ring`` may not be promoted ("" = it may). ``outcomes=False``: health only (a run
    started before the ring gate, whose health gate followed a soak only)."""
    parts = []
    bad = found.failed + found.rolled_back
    if outcomes and bad:
        parts.append(f"has {found.failed} failed and {found.rolled_back} rolled-back VM(s) "
                     f"({_listed(found.bad_sample, bad)})")  # fmt: skip
    if found.sick:
        when = "after its soak" if soaked else "now"
        parts.append(f"is unhealthy {when} ({_listed(found.sick_sample, found.sick)})")
    return f"ring {ring!r} " + " and ".join(parts) + "; not promoted" if parts else ""


def with_fix(reason: str, run_id: str, ring: str) -> str:
    """The halt reason: the refusal and the one way past it."""
    return (f"{reason} (to promote it anyway: `patchwave approve {run_id} --ring {ring} --force`, "
            f"then `patchwave resume {run_id}`)")  # fmt: skip


def early_approval(named: str, open_gate: str, *, halted: str, phase: str, ring: str) -> str:
    """Why an approval of ``named`` ("" = the open gate's ring) is refused now ("" = it is not)."""
    if open_gate and (named or open_gate) == open_gate:
        return ""
    where = (
        f"the run halted: {halted}"
        if halted
        else f"the run is in phase {phase!r}" + (f", ring {ring!r}" if ring else "")
    )
    what = f"ring {named!r} is not waiting for an approval" if named else "no ring is waiting for an approval"
    gate = f" (ring {open_gate!r} is)" if open_gate else ""
    return f"{what}{gate}: {where}; an approval is accepted only while its ring's gate is open"
