"""A run's admission: its leases before any side effect; a scheduled run plans around a holder;
a resumed run takes its own leases again; a snapshot of an unfinished run is nobody's to delete."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import snapshots
from orchestrator.engine.activities.leases import admit, readmit
from orchestrator.errors import LeaseHeld
from orchestrator.facts.leases import LeaseTarget
from orchestrator.facts.store import FactStore
from orchestrator.model import Plan, RunRequest, VmPolicy, VmStep, Wave
from providers.base import VmRef

T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)
VMS = [VmRef("lab", f"uuid-{i}", f"web-{i}") for i in (1, 2, 3)]


def step(vm: VmRef) -> VmStep:
    return VmStep(f"vm:lab:{vm.id}", vm, "g", "main", VmPolicy(), 60, 60, "local")


PLAN = Plan(
    plan_id="p", created_at=T0.isoformat(), sites=("lab",), host_phase=(), blocked=(), failure_budget=0,
    waves=(Wave("main:0", "main", 0, tuple(step(vm) for vm in VMS[:2]), 2),
           Wave("main:1", "main", 1, (step(VMS[2]),), 2)),
)  # fmt: skip


@pytest.fixture
def facts(tmp_path: Path) -> Iterator[FactStore]:
    store = FactStore(tmp_path / "facts.db")
    yield store
    store.close()


def owners(facts: FactStore) -> dict[str, str]:
    return {lease.target.name: lease.owner for lease in facts.leases()}


def test_an_ad_hoc_run_is_refused_as_a_whole_naming_the_holder(facts: FactStore) -> None:
    facts.acquire_leases("run-a", [LeaseTarget.vm(VMS[2])], operation="run")
    with pytest.raises(LeaseHeld) as refused:
        admit(facts, RunRequest("run-b", "digest"), PLAN)
    assert (refused.value.holder, refused.value.targets) == ("run-a", ("web-3",))
    assert owners(facts) == {"web-3": "run-a"}


def test_a_scheduled_run_plans_the_held_targets_as_blocked_and_runs_the_rest(facts: FactStore) -> None:
    facts.acquire_leases("run-a", [LeaseTarget.vm(VMS[2])], operation="run")
    request = RunRequest("patchwave-sched-lab-web-2026", "", requested_by="schedule:patchwave-sched-lab-web")

    plan = admit(facts, request, PLAN)

    assert [s.vm.name for s in plan.vm_steps] == ["web-1", "web-2"]
    assert [w.wave_id for w in plan.waves] == ["main:0"]  # the emptied wave is gone
    [blocked] = plan.blocked
    assert (blocked.target, blocked.code) == (
        "lab/web-3",
        "lease_held",
    ) and "run run-a is active" in blocked.reason
    assert plan.plan_id != PLAN.plan_id
    assert owners(facts) == {"web-1": request.run_id, "web-2": request.run_id, "web-3": "run-a"}
    assert {lease.operation for lease in facts.leases(owner=request.run_id)} == {"schedule"}


def test_a_resumed_run_takes_its_own_leases_again_for_what_is_left(facts: FactStore) -> None:
    admit(facts, RunRequest("run-a", "digest"), PLAN)
    facts.release_leases("run-a")  # finished or halted, then resumed
    readmit(facts, RunRequest("run-a", "digest"), PLAN, done=[step(VMS[0]).step_id])
    assert owners(facts) == {"web-2": "run-a", "web-3": "run-a"}
    facts.acquire_leases("run-b", [LeaseTarget.vm(VMS[0])], operation="run")
    with pytest.raises(LeaseHeld):  # someone else took a VM it still has to patch
        readmit(facts, RunRequest("run-a", "digest"), PLAN, done=())


def test_the_snapshot_of_a_run_that_is_not_finished_is_in_use(facts: FactStore) -> None:
    facts.create_run("run-a", plan=PLAN, config_digest="d")
    facts.set_run_status("run-a", "running")
    assert snapshots.in_use(facts, "run-a", VMS[0]) == "run run-a is running"
    assert snapshots.in_use(facts, "run-a", VMS[0], caller="run-a") == ""  # its own cleanup at its end
    assert snapshots.in_use(facts, "run-unknown", VMS[0]) == ""
    facts.set_run_status("run-a", "halted")
    assert snapshots.in_use(facts, "run-a", VMS[0]) == ""
    facts.acquire_leases("run-a", [LeaseTarget.vm(VMS[0])], operation="run")  # resumed meanwhile
    assert snapshots.in_use(facts, "run-a", VMS[0]) == "run run-a still holds web-1"
