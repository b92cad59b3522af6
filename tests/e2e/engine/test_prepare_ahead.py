"""``[policy] prepare_ahead``: VMs prepared (baseline, snapshot) ahead of the wave's concurrency slots,
against the features a prepared VM meets before its turn — the failure budget, the maintenance
window, cancellation — on Temporal's time-skipping test server with the real workflows and activities,
libvirt's test driver and fake Debian guests (as in test_workflow_timeskip.py).

A VM prepared ahead holds a snapshot but was never changed: when it is not patched after all, its
snapshot is *deleted* (journaled ``release_snapshot``), never reverted — a revert would throw away
what the guest wrote since — and the journal's record ids show the order of everything.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.activities import Activities
from orchestrator.engine.payloads import VmTask
from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import PatchIntent
from orchestrator.facts.records import StepRecord
from orchestrator.facts.store import FactStore
from orchestrator.model import RunSummary, StepStatus, VmPolicy, VmStep, vm_step_id
from providers.base import VmRef
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.rollouts import Rollout, made
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN_ID = "run-ahead"
AHEAD = "prepare_ahead = 1"  # the bed's health_deadline is 3 s: worst-case rollback 6 s


class AheadRollout(Rollout):
    """A rollout whose reverts bring the fake guests' "disks" back, with its journal at hand."""

    def __init__(self, env: WorkflowEnvironment, bed: DriverBed) -> None:
        bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
        super().__init__(env, bed, RUN_ID, bridge=bridge)
        self.bridge: DiskBridge = bridge

    def journal(self, name: str) -> list[StepRecord]:
        return self.facts.step_history(RUN_ID, self.step_id(name))

    def actions(self, name: str) -> list[tuple[str, str]]:
        return [
            (r.action.value, r.phase.value)
            for r in self.journal(name)
            if r.action is not Action.BASELINE_HEALTH
        ]

    def released(self) -> list[str]:
        return [
            n for n in self.bed.guests if any(r.action is Action.RELEASE_SNAPSHOT for r in self.journal(n))
        ]

    def first(self, name: str, action: Action, phase: Phase) -> int:
        return next(r.id for r in self.journal(name) if r.action is action and r.phase is phase)


@pytest.fixture
def rollout_factory(env: WorkflowEnvironment) -> Iterator[Callable[[DriverBed], AheadRollout]]:
    yield from made(lambda bed: AheadRollout(env, bed))


async def until(check, what: str, *, seconds: float = 60.0) -> None:
    for _ in range(int(seconds * 10)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen within {seconds:.0f} s: {what}")


def prepared(rollout: AheadRollout, name: str) -> bool:
    """``name`` has its snapshot and no patch yet: prepared, waiting for a slot."""
    actions = rollout.actions(name)
    return ("snapshot", "result") in actions and ("patch", "intent") not in actions


async def test_a_wave_prepared_ahead_patches_one_vm_at_a_time_while_the_next_one_is_prepared(
    tmp_path: Path, rollout_factory
) -> None:
    specs = tuple(GuestSpec(f"pw-{n}") for n in ("a", "b", "c"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), concurrency=1, policy=AHEAD)
    for guest in bed.guests.values():
        guest.linger_after_apply(2)
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        summary: RunSummary = await (await start_run(rollout.env.client, rollout.request)).result()

    assert summary.status == "succeeded", summary
    assert {o.vm.name: o.status for o in summary.vms} == dict.fromkeys(bed.guests, StepStatus.SUCCEEDED)
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1, 1]
    # Concurrency 1: no two patches overlap (each VM's patch intent comes after the previous result)...
    patches = sorted(
        (rollout.first(n, Action.PATCH, Phase.INTENT), rollout.first(n, Action.PATCH, Phase.RESULT))
        for n in bed.guests
    )
    assert all(result < next_intent for (_, result), (next_intent, _) in itertools.pairwise(patches))
    # ...and every later VM's snapshot was taken while an earlier VM patched: prepared ahead.
    later = sorted(bed.guests, key=lambda n: rollout.first(n, Action.PATCH, Phase.INTENT))[1:]
    for (_, previous_done), name in zip(patches, later, strict=False):
        assert rollout.first(name, Action.SNAPSHOT, Phase.RESULT) < previous_done, name
    for name in bed.guests:  # one snapshot each, kept until its TTL; nothing released
        assert len(rollout.snapshots(name)) == 1
        assert rollout.facts.snapshot(RUN_ID, rollout.step_id(name)).state == "kept"
    assert rollout.released() == []


async def test_an_exhausted_failure_budget_releases_the_vm_prepared_ahead_untouched(
    tmp_path: Path, rollout_factory
) -> None:
    # Every new demo-app breaks its guest; the budget is 0: the first VM patched is rolled back and
    # halts the run. The VM prepared meanwhile is released: its snapshot deleted, not reverted, not
    # patched. The third was never prepared.
    specs = tuple(GuestSpec(f"pw-{n}", broken_after_patch=True) for n in ("a", "b", "c"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), concurrency=1, budget=0, policy=AHEAD)
    for guest in bed.guests.values():
        guest.linger_after_apply(3)  # the first patch outlasts the next VM's preparation
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        summary: RunSummary = await (await start_run(rollout.env.client, rollout.request)).result()

    outcomes = {o.vm.name: o for o in summary.vms}
    statuses = sorted(o.status.value for o in outcomes.values())
    assert statuses == ["rolled_back", "skipped", "skipped"], outcomes
    (patched,) = [n for n, o in outcomes.items() if o.status is StepStatus.ROLLED_BACK]
    (released,) = rollout.released()
    (untouched,) = set(bed.guests) - {patched, released}
    assert "failure budget exhausted" in outcomes[released].error and "released" in outcomes[released].error

    assert rollout.actions(released) == [
        ("snapshot", "intent"), ("snapshot", "result"), ("release_snapshot", "intent"), ("release_snapshot", "result"),
    ]  # fmt: skip
    assert rollout.snapshots(released) == [] and bed.guests[released].upgrades() == 0
    assert set(rollout.bridge.reverts) == {patched}  # the released VM was never reverted
    assert rollout.facts.snapshot(RUN_ID, rollout.step_id(released)).state == "deleted"
    assert (
        rollout.actions(untouched) == []
        and rollout.facts.snapshot(RUN_ID, rollout.step_id(untouched)) is None
    )
    assert "failure budget exhausted" in outcomes[untouched].error
    assert ("revert", "result") in rollout.actions(patched) and len(rollout.snapshots(patched)) == 1


async def test_cancelling_the_run_reverts_the_vm_patching_and_releases_the_vm_prepared_ahead(
    tmp_path: Path, rollout_factory
) -> None:
    specs = (GuestSpec("pw-a"), GuestSpec("pw-b"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), concurrency=1, policy=AHEAD)
    for guest in bed.guests.values():
        guest.linger_after_apply(30)
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        handle: WorkflowHandle = await start_run(rollout.env.client, rollout.request)
        await until(
            lambda: (
                any(g.patches() for g in bed.guests.values())
                and any(prepared(rollout, n) for n in bed.guests)
            ),
            "one VM patching, the other prepared",
        )
        (waiting,) = [n for n in bed.guests if prepared(rollout, n)]
        (patching,) = set(bed.guests) - {waiting}
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)

    assert_reverted_on_cancel(rollout, patching)
    skipped = rollout.facts.outcome(RUN_ID, rollout.step_id(waiting))
    assert skipped.status is StepStatus.SKIPPED and skipped.error.startswith("not attempted: run cancelled")
    assert "released" in skipped.error and skipped.snapshot_id == ""
    assert ("revert", "intent") not in rollout.actions(waiting)
    assert ("release_snapshot", "result") in rollout.actions(waiting)
    assert rollout.snapshots(waiting) == [] and bed.guests[waiting].upgrades() == 0
    assert set(rollout.bridge.reverts) == {patching}
    assert rollout.facts.get_run(RUN_ID).status == "cancelled"


async def test_cancelling_the_run_reverts_the_vm_patching_while_others_wait_for_a_slot(
    tmp_path: Path, rollout_factory
) -> None:
    # Without prepare_ahead: the VMs waiting for the slot end at once on the cancellation; the batch
    # still waits for the VM patching to be reverted and recorded (it once ended with the first VM
    # cancelled, and the revert's outcome was never recorded).
    specs = (GuestSpec("pw-a"), GuestSpec("pw-b"), GuestSpec("pw-c"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), concurrency=1)
    for guest in bed.guests.values():
        guest.linger_after_apply(30)
    rollout = rollout_factory(bed)
    async with workers(rollout.env.client, rollout.ctx):
        handle: WorkflowHandle = await start_run(rollout.env.client, rollout.request)
        await until(lambda: any(g.patches() for g in bed.guests.values()), "one VM patching")
        (patching,) = [n for n, g in bed.guests.items() if g.patches()]
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)

    assert_reverted_on_cancel(rollout, patching)
    for name in set(bed.guests) - {patching}:  # never reached: nothing done, nothing recorded
        assert rollout.actions(name) == [] and bed.guests[name].upgrades() == 0
    assert rollout.facts.get_run(RUN_ID).status == "cancelled"


def assert_reverted_on_cancel(rollout: AheadRollout, name: str) -> None:
    reverted = rollout.facts.outcome(RUN_ID, rollout.step_id(name))
    assert reverted is not None, f"{name}: reverted, but its outcome was never recorded"
    assert reverted.status is StepStatus.ROLLED_BACK and "run cancelled while patching" in reverted.error
    assert rollout.facts.snapshot(RUN_ID, rollout.step_id(name)).state == "reverted"
    assert rollout.bed.guests[name].installed() == {"demo-app": "1.0", "openssl": "3.0.11"}


async def test_a_vm_prepared_while_its_window_closed_is_released_and_patched_in_the_next_one(
    env: WorkflowEnvironment, tmp_path: Path, rollout_factory
) -> None:
    # The daily window (UTC) leaves room to start a VM (estimate 1 min + 6 s worst-case rollback) for
    # MARGIN more seconds. Both VMs are admitted and prepared at once; the first patches longer than
    # that (its apt lingers until the room is gone); when the second takes the slot its window no
    # longer admits it: released, and the run waits for tomorrow's window, where it is prepared again.
    margin = 20
    now = await env.get_current_time()
    opened = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
    need = 60 + 6
    length = int((now - opened).total_seconds()) + need + margin
    window = f'cron = "{opened.minute} {opened.hour} * * *"\nduration = "{length}s"\ntimezone = "UTC"\ncutoff = "0s"'
    bed = build(
        tmp_path / "bed", (GuestSpec("pw-a"), GuestSpec("pw-b")), port=unused_port(), concurrency=1,
        policy=AHEAD, windows={"w": window}, group_windows={"main": "w"},
    )  # fmt: skip
    for guest in bed.guests.values():
        guest.linger_after_apply(300)
    rollout = rollout_factory(bed)
    last_start = opened + timedelta(seconds=length - need)
    async with workers(rollout.env.client, rollout.ctx):
        handle: WorkflowHandle = await start_run(rollout.env.client, rollout.request)
        await until(
            lambda: any(g.patches() for g in bed.guests.values()) and any(prepared(rollout, n) for n in bed.guests),
            "one VM patching, the other prepared", seconds=margin,
        )  # fmt: skip
        while await env.get_current_time() <= last_start + timedelta(seconds=1):
            await asyncio.sleep(0.2)
        for guest in bed.guests.values():
            guest.stop_lingering()
        summary: RunSummary = await handle.result()  # the server skips to tomorrow's window

    assert summary.status == "succeeded", summary
    outcomes = {o.vm.name: o for o in summary.vms}
    assert [o.status for o in outcomes.values()] == [StepStatus.SUCCEEDED] * 2
    (released,) = rollout.released()
    (first,) = set(bed.guests) - {released}
    tomorrow = opened + timedelta(days=1)
    assert datetime.fromisoformat(outcomes[first].started_at) < last_start
    assert (
        tomorrow
        <= datetime.fromisoformat(outcomes[released].started_at)
        <= tomorrow + timedelta(seconds=length - need)
    )
    assert rollout.actions(released) == [
        ("snapshot", "intent"), ("snapshot", "result"), ("release_snapshot", "intent"), ("release_snapshot", "result"),
        ("snapshot", "intent"), ("snapshot", "result"), ("patch", "intent"), ("patch", "result"),
        ("verify_health", "result"),
    ]  # fmt: skip
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1]
    # The snapshot taken tomorrow is the one on record (kept until its TTL), and the only one there.
    record = rollout.facts.snapshot(RUN_ID, rollout.step_id(released))
    assert record.state == "kept" and [s.id for s in rollout.snapshots(released)] == [record.snapshot_id]
    assert outcomes[released].snapshot_id == record.snapshot_id
    events = [e.status for e in rollout.facts.run_events(RUN_ID)]
    assert "paused" in events and events[-1] == "succeeded"


def test_release_deletes_only_an_unpatched_vms_snapshot_and_is_idempotent(tmp_path: Path) -> None:
    """``vm_release_snapshot`` on its own: the snapshot of (run, step) deleted and journaled, a second
    call changes nothing; a VM with a patch on record keeps its snapshot (its rollback point)."""
    bed = build(tmp_path / "bed", (GuestSpec("pw-a"), GuestSpec("pw-b")), port=unused_port(), policy=AHEAD)
    settings = load_settings(bed.config)
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        acts = Activities(ctx)
        tasks = {}
        for name in bed.guests:
            vm = VmRef("td", bed.uuids[name], name)
            step = VmStep(vm_step_id(vm), vm, "default", "main", VmPolicy(), 60, 6, "local")
            tasks[name] = VmTask(RUN_ID, step, "2030-01-01T00:00:00+00:00")
            acts.vms.vm_snapshot(tasks[name])
        provider = ctx.provider("td")

        released = acts.vms.vm_release_snapshot(tasks["pw-a"])
        assert len(released.snapshot_ids) == 1
        assert provider.list_snapshots(tasks["pw-a"].step.vm) == []
        assert facts.snapshot(RUN_ID, tasks["pw-a"].step.step_id).state == "deleted"
        assert acts.vms.vm_release_snapshot(tasks["pw-a"]).snapshot_ids == released.snapshot_ids  # gone: done
        assert provider.list_snapshots(tasks["pw-a"].step.vm) == []

        b = tasks["pw-b"].step
        facts.record_intent(RUN_ID, b.step_id, Action.PATCH, target=str(b.vm), detail=PatchIntent("all"))
        with pytest.raises(ApplicationError, match="rollback point") as refused:
            acts.vms.vm_release_snapshot(tasks["pw-b"])
        assert refused.value.non_retryable
        assert (
            len(provider.list_snapshots(b.vm)) == 1 and facts.snapshot(RUN_ID, b.step_id).state == "created"
        )
    finally:
        ctx.close()
        facts.close()
