"""A run's plan in bounded rows: recorded once, read back whole or in slices; outcomes counted and paged;
inventories recorded for the planner and kept for their run until it planned."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.errors import FactStoreError
from orchestrator.facts.inventory import InventoryStore
from orchestrator.facts.records import to_json
from orchestrator.facts.store import FactStore
from orchestrator.model import (
    Blocker,
    FailureDomain,
    HostOutcome,
    HostStep,
    Plan,
    RebootPolicy,
    StepStatus,
    VmOutcome,
    VmPolicy,
    VmStep,
    Wave,
    WaveInfo,
    vm_step_id,
)
from providers.base import HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef
from tests.support.clock import FakeClock


def step(i: int, ring: str = "main", group: str = "web") -> VmStep:
    ref = VmRef("dc1", f"vm-{i}", f"web-{i}")
    return VmStep(vm_step_id(ref), ref, group, ring, VmPolicy(), 600, 600, "ssh", owners=("team",))


HOST = HostStep(
    "host:dc1:h1", HostRef("dc1", "h1", "esx-1"), "rack-a", True, "platform", RebootPolicy.IF_REQUIRED, 900
)
PLAN = Plan(
    plan_id="p1", created_at="2026-11-26T20:00:00+00:00", sites=("dc1",),
    host_phase=(FailureDomain("dc1/rack-a", (HOST,)), FailureDomain("dc1/rack-b", ())),
    waves=(Wave("canary:0", "canary", 0, (step(0, "canary"),), 1, soak_s=3600, approval=True),
           Wave("main:0", "main", 0, tuple(step(i) for i in range(1, 8)), 3, window="night"),
           Wave("main:1", "main", 1, tuple(step(i) for i in range(8, 10)), 3)),
    blocked=(Blocker("dc1/off-1", "powered off", "powered_off"),),
    failure_budget=2,
    warnings=(Blocker("dc1/web-3", "downgraded: no memory", "capability"),),
)  # fmt: skip


@pytest.fixture
def store(store_at) -> FactStore:
    facts = FactStore(store_at(), clock=FakeClock(datetime(2026, 11, 26, 20, 0, tzinfo=UTC)))
    yield facts
    facts.close()


def test_the_plan_is_recorded_in_rows_and_read_back_whole(store: FactStore) -> None:
    store.create_run("r1", plan=PLAN, config_digest="d")
    store.create_run("r1", plan=PLAN, config_digest="d")  # idempotent
    assert store.run_plan("r1") == PLAN
    header = json.loads(store.get_run("r1").plan_json)
    assert header["waves"] == [] and header["blocked"] == [] and header["host_phase"][0]["hosts"] == []
    size = store.plan_size("r1")
    assert (size.vms, size.hosts, size.waves, size.blocked, size.warnings) == (10, 1, 3, 1, 1)
    assert store.run_plan("nope") is None and store.plan_header("nope") is None


def test_the_workflows_read_it_in_slices(store: FactStore) -> None:
    store.create_run("r1", plan=PLAN, config_digest="d")
    assert store.plan_waves("r1", 1, 1) == [WaveInfo(1, "main:0", "main", 7, 3, window="night")]
    assert store.plan_waves("r1")[0] == WaveInfo(0, "canary:0", "canary", 1, 1, soak_s=3600, approval=True)
    assert store.wave_steps("r1", 1, 2, 3) == [step(3), step(4), step(5)]
    assert store.wave_steps("r1", 1, 6, 500) == [step(7)]
    assert store.host_steps("r1", 0, 100) == [HOST]
    assert store.plan_notes("r1", "warning") == list(PLAN.warnings)
    assert store.plan_step("r1", step(4).step_id) == step(4)
    assert store.plan_vm_names("r1") == sorted(f"web-{i}" for i in range(10))
    assert store.plan_groups(["r1"])[step(0).step_id] == "web"


def test_a_plan_recorded_whole_by_an_older_patchwave_is_converted_on_first_read(store: FactStore) -> None:
    store.create_run("r1", plan=replace(PLAN, waves=()), config_digest="d")
    with store._tx() as db:  # what migration <= 5 wrote: the whole plan in plan_json, no rows
        for table in ("plan_waves", "plan_steps", "plan_hosts", "plan_notes"):
            db.execute(f"DELETE FROM {table}")
        db.execute("UPDATE runs SET plan_json = ? WHERE run_id = 'r1'", (to_json(PLAN),))
    assert store.wave_steps("r1", 2) == [step(8), step(9)]
    assert store.run_plan("r1") == PLAN
    assert json.loads(store.get_run("r1").plan_json)["waves"] == []


def test_outcomes_are_counted_paged_and_the_unattempted_skipped(store: FactStore) -> None:
    store.create_run("r1", plan=PLAN, config_digest="d")
    ok = [VmOutcome(step(i).step_id, step(i).vm, StepStatus.SUCCEEDED) for i in range(5)]
    store.set_outcomes("r1", [*ok, VmOutcome(step(5).step_id, step(5).vm, StepStatus.FAILED, error="boom")])
    store.set_outcome("r1", VmOutcome(step(6).step_id, step(6).vm, StepStatus.SKIPPED, error="window"))
    store.set_outcome("r1", HostOutcome(HOST.step_id, HOST.host, StepStatus.SUCCEEDED))
    assert store.latest_statuses("r1", [step(5).step_id, step(9).step_id]) == {
        step(5).step_id: StepStatus.FAILED
    }
    assert store.skip_unattempted("r1", "not attempted: halted") == 3  # web-7, web-8, web-9
    assert store.skip_unattempted("r1", "again") == 0
    assert store.outcome_counts("r1") == {"succeeded": 5, "failed": 1, "skipped": 4}
    assert store.outcome_counts("r1", "host") == {"succeeded": 1}
    first = store.outcomes_page("r1", limit=3)
    assert [(o.vm.name, o.status) for o in first] == [
        ("web-5", StepStatus.FAILED), ("web-6", StepStatus.SKIPPED), ("web-7", StepStatus.SKIPPED),
    ]  # fmt: skip
    assert store.outcome("r1", step(8).step_id).error == "not attempted: halted"
    assert len(store.outcomes_page("r1", offset=3, limit=50)) == 7


def inventory(site: str, n: int) -> Inventory:
    host = HostInfo(HostRef(site, "h1", "esx-1"), HostState.CONNECTED, "rack-a", build="1")
    vms = tuple(
        VmInfo(VmRef(site, f"vm-{i}", f"web-{i}"), PowerState.RUNNING, host.ref, tags=("web",),
               labels={"owner": "team"}, ip_addresses=("10.0.0.1",), agent_ready=True)
        for i in range(n)
    )  # fmt: skip
    return Inventory(site, (host,), vms)


def test_a_recorded_inventory_is_read_back_and_kept_for_its_run_until_it_planned(store_at) -> None:
    clock = FakeClock(datetime(2026, 11, 26, 20, 0, tzinfo=UTC))
    facts = FactStore(store_at(), clock=clock)
    store = InventoryStore(facts)
    pinned = store.record(inventory("dc1", 3), lambda vm: ("web", "main"), pin="run-1")
    newer = store.record(inventory("dc1", 4), lambda vm: ("web", "main"))
    assert store.load(pinned) == inventory("dc1", 3)  # a newer discovery did not take it away
    assert store.load(newer) == inventory("dc1", 4)
    store.unpin("run-1")
    store.record(inventory("dc1", 5), lambda vm: ("web", "main"))
    with pytest.raises(FactStoreError, match="no longer in the fact store"):
        store.load(pinned)
    lost = store.record(inventory("dc2", 1), lambda vm: ("web", "main"), pin="run-2")
    clock.advance_to(clock.now() + timedelta(days=2))  # its run never planned: the pin expires
    store.record(inventory("dc2", 2), lambda vm: ("web", "main"))
    with pytest.raises(FactStoreError):
        store.load(lost)
    facts.close()
