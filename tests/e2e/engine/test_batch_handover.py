"""Batch handover (``PatchRun``'s ``batch-handover``): a wave's next ``WaveBatch`` starts once every VM
of the running one has had its concurrency slot, and takes each slot that batch frees — the wave's
concurrency stays used across a batch boundary instead of draining. Tested against what it meets at
the boundary — the concurrency limit, the failure budget, cancellation, ``prepare_ahead`` — on
Temporal's time-skipping test server with the real workflows and activities, libvirt's test driver
and fake Debian guests, batches of two VMs (``BATCH_SIZE``) and a concurrency of two.

The journal's record ids give the order of everything; a VM holds its slot from its patch intent to
its health verification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from orchestrator.engine import payloads
from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.actions import Action, Phase
from orchestrator.model import RunSummary, StepStatus
from tests.support.guest_disks import DiskBridge
from tests.support.histories import most_at_once
from tests.support.loopback import unused_port
from tests.support.rollouts import Rollout, made
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN_ID = "run-handover"
NAMES = ("pw-a", "pw-b", "pw-c", "pw-d")  # planned in this order: batches {a, b} and {c, d}


class HandoverRollout(Rollout):
    def __init__(self, env: WorkflowEnvironment, bed: DriverBed) -> None:
        bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
        super().__init__(env, bed, RUN_ID, bridge=bridge)
        self.bridge: DiskBridge = bridge

    def first(self, name: str, action: Action, phase: Phase) -> int | None:
        history = self.facts.step_history(RUN_ID, self.step_id(name))
        return next((r.id for r in history if r.action is action and r.phase is phase), None)

    def slot(self, name: str) -> tuple[int, int]:
        """Journal ids of the VM's patch intent and its health verification (or its revert)."""
        start = self.first(name, Action.PATCH, Phase.INTENT)
        end = self.first(name, Action.VERIFY_HEALTH, Phase.RESULT) or self.first(
            name, Action.REVERT, Phase.RESULT
        )
        assert start is not None and end is not None, name
        return start, end


@pytest.fixture
def rollout_factory(
    env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[DriverBed], HandoverRollout]]:
    monkeypatch.setattr(payloads, "BATCH_SIZE", 2)
    yield from made(lambda bed: HandoverRollout(env, bed))


def bed_of(
    tmp_path: Path,
    lingers: dict[str, float],
    *,
    policy: str = "",
    budget: int = 0,
    broken: tuple[str, ...] = (),
) -> DriverBed:
    """The four guests, each one's apt lingering its seconds; ``broken``: their upgrade breaks health."""
    specs = tuple(GuestSpec(n, broken_after_patch=n in broken) for n in NAMES)
    bed = build(tmp_path / "bed", specs, port=unused_port(), concurrency=2, policy=policy, budget=budget)
    for name, seconds in lingers.items():
        bed.guests[name].linger_after_apply(seconds)
    return bed


@pytest.mark.parametrize("policy", ["", "prepare_ahead = 1"], ids=["in-slot", "prepared-ahead"])
async def test_the_next_batch_takes_a_freed_slot_and_the_concurrency_holds_across_the_boundary(
    tmp_path: Path, rollout_factory, policy: str
) -> None:
    # pw-b (first batch) patches long; pw-a's slot frees early and pw-c (second batch) takes it while
    # pw-b still patches: two batches at once, never more than two VMs in slots.
    bed = bed_of(tmp_path, {"pw-a": 1, "pw-b": 8, "pw-c": 1, "pw-d": 1}, policy=policy)
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        summary: RunSummary = await (await start_run(rollout.env.client, rollout.request)).result()

    assert summary.status == "succeeded", summary
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1, 1, 1]
    order = sorted(NAMES, key=lambda n: rollout.slot(n)[0])
    assert set(order[:2]) == {"pw-a", "pw-b"}, f"the plan's order changed: {order}"
    assert rollout.slot("pw-c")[0] < rollout.slot("pw-b")[1]  # took pw-a's slot while pw-b patched
    assert most_at_once(rollout.slot(n) for n in NAMES) == 2


async def test_a_failure_in_the_batch_before_halts_the_next_one_at_the_boundary(
    tmp_path: Path, rollout_factory
) -> None:
    # Budget 0: pw-a's breaking patch is rolled back while pw-b (same batch) patches long. The second
    # batch, started and waiting for slots, learns the halt with the slot pw-a frees: pw-c and pw-d are
    # not attempted; pw-b, in flight, finishes.
    bed = bed_of(tmp_path, {"pw-a": 1, "pw-b": 12, "pw-c": 1, "pw-d": 1}, budget=0, broken=("pw-a",))
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        summary: RunSummary = await (await start_run(rollout.env.client, rollout.request)).result()

    outcomes = {o.vm.name: o for o in summary.vms}
    assert {n: o.status for n, o in outcomes.items()} == {
        "pw-a": StepStatus.ROLLED_BACK, "pw-b": StepStatus.SUCCEEDED,
        "pw-c": StepStatus.SKIPPED, "pw-d": StepStatus.SKIPPED,
    }, outcomes  # fmt: skip
    for name in ("pw-c", "pw-d"):
        assert "failure budget exhausted" in outcomes[name].error and "pw-a" in outcomes[name].error
        assert rollout.first(name, Action.PATCH, Phase.INTENT) is None and bed.guests[name].upgrades() == 0
    assert summary.status == "halted" and "failure budget exhausted" in summary.halted_reason


async def test_cancelling_the_run_reverts_the_vms_patching_in_both_batches(
    tmp_path: Path, rollout_factory
) -> None:
    bed = bed_of(tmp_path, {"pw-a": 1, "pw-b": 60, "pw-c": 60, "pw-d": 60})
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        handle: WorkflowHandle = await start_run(rollout.env.client, rollout.request)
        for _ in range(600):  # pw-b (first batch) and pw-c (second batch) patching at once
            if bed.guests["pw-b"].patches() and bed.guests["pw-c"].patches():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("pw-b and pw-c never patched at once")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)

    for name in ("pw-b", "pw-c"):
        reverted = rollout.facts.outcome(RUN_ID, rollout.step_id(name))
        assert reverted is not None, f"{name}: reverted, but its outcome was never recorded"
        assert reverted.status is StepStatus.ROLLED_BACK and "run cancelled while patching" in reverted.error
        assert bed.guests[name].installed() == {"demo-app": "1.0", "openssl": "3.0.11"}
    assert set(rollout.bridge.reverts) == {"pw-b", "pw-c"}
    assert rollout.first("pw-d", Action.PATCH, Phase.INTENT) is None and bed.guests["pw-d"].upgrades() == 0
    assert rollout.facts.get_run(RUN_ID).status == "cancelled"
