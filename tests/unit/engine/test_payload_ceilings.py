"""No payload grows with the fleet: every value the workflows exchange, built for plans of 10,000 and
50,000 VMs and measured with the SDK's own payload converter, stays under 512 KB — most under a few KB.

The plan is recorded in a real fact store (rows), and the payloads are what the activities build
from it: the plan's summary, a page of waves, a batch's slice of 500 steps, a page of hosts, the run's
summary, its progress with the VMs in flight, the continue-as-new carry. For contrast, the values
the workflows carried before (the whole ``Plan`` as ``plan_run``'s result, a site's whole
``Inventory`` as ``discover``'s) are measured too: over Temporal's 2 MB limit at these sizes.
Histories are asserted with real Temporal in tests/e2e/engine/test_scale.py and benchmarks/scale.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.converter import DataConverter

from orchestrator.engine.activities.plans import plan_summary
from orchestrator.engine.payloads import (
    BATCH_SIZE,
    SAMPLE,
    WAVE_PAGE,
    BatchProgress,
    BatchResult,
    BatchSlice,
    BatchTask,
    HostSlice,
    InventoryRef,
    NotifySetup,
    RunCarry,
    RunLimits,
    RunProgress,
    VmProgress,
    VmTask,
    WavePage,
)
from orchestrator.facts.store import FactStore
from orchestrator.model import (
    Blocker,
    FailureDomain,
    HostStep,
    Plan,
    RebootPolicy,
    RunSummary,
    StepStatus,
    VmOutcome,
    VmPolicy,
    VmStep,
    Wave,
    vm_step_id,
)
from providers.base import HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef

CEILING = 512 * 1024
TEMPORAL_LIMIT = 2 * 1024 * 1024
CONVERTER = DataConverter.default.payload_converter


def size(value: object) -> int:
    return CONVERTER.to_payloads([value])[0].ByteSize()


def vm(i: int) -> VmInfo:
    host = HostRef("dc1", f"host-{i % 400}", f"esx-{i % 400:03d}.example.org")
    ref = VmRef("dc1", str(uuid.UUID(int=i)), f"web-prod-{i:05d}")
    return VmInfo(ref=ref, power=PowerState.RUNNING, host=host, tags=("web", "patch-me"),
                  labels={"owner": "team-web", "env": "prod"}, guest_os="Debian GNU/Linux 12 (bookworm)",
                  ip_addresses=(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",), agent_ready=True)  # fmt: skip


def plan(n: int) -> Plan:
    steps = tuple(
        VmStep(step_id=vm_step_id(info.ref), vm=info.ref, group="default", ring="main", policy=VmPolicy(),
               est_duration_s=600, est_rollback_s=600, channel="ssh", owners=("team-web",))
        for info in (vm(i) for i in range(n))
    )  # fmt: skip
    hosts = tuple(
        HostStep(f"host:dc1:host-{h}", HostRef("dc1", f"host-{h}", f"esx-{h:03d}.example.org"), "cluster-a",
                 True, "platform", RebootPolicy.IF_REQUIRED, 1800)
        for h in range(400)
    )  # fmt: skip
    blocked = tuple(
        Blocker(f"dc1/off-{i}", "powered off: start it or exclude it", "powered_off") for i in range(n // 50)
    )
    return Plan(plan_id=f"p{n}", created_at="2026-11-26T20:00:00+00:00", sites=("dc1",),
                host_phase=(FailureDomain("dc1/cluster-a", hosts),),
                waves=(Wave("main:0", "main", 0, steps, concurrency=50),), blocked=blocked,
                failure_budget=n // 100)  # fmt: skip


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> FactStore:
    store = FactStore(Path(tmp_path_factory.mktemp("facts")) / "facts.db")
    for n in (10_000, 50_000):
        store.create_run(f"run-{n}", plan=plan(n), config_digest="d")
    yield store
    store.close()


@pytest.mark.parametrize("n", [10_000, 50_000])
def test_every_payload_of_a_run_stays_small_whatever_the_fleet(recorded: FactStore, n: int) -> None:
    run_id, facts = f"run-{n}", recorded
    summary = plan_summary(facts, run_id)
    assert (summary.vms, summary.hosts, summary.waves, summary.blocked) == (n, 400, 1, n // 50)
    [wave] = facts.plan_waves(run_id)
    steps = tuple(facts.wave_steps(run_id, 0, n - BATCH_SIZE, BATCH_SIZE))
    assert len(steps) == BATCH_SIZE == 128
    outcomes = tuple(VmOutcome(s.step_id, s.vm, StepStatus.FAILED, error="unhealthy after patching: " + "x" * 200)
                     for s in steps[:100])  # fmt: skip
    in_flight = tuple(VmProgress(s.vm.name, s.vm.site, s.ring, StepStatus.RUNNING) for s in steps[:50])
    counts = {"succeeded": n - 150, "failed": 100, "running": 50}
    progress = RunProgress(run_id, "guests", counts=counts, total=n, blocked=summary.blocked_sample,
                           batches=(f"{run_id}/vms/main:0/0",)).merged([BatchProgress("b", {"succeeded": 7}, in_flight)])  # fmt: skip
    payloads = {
        "discover -> InventoryRef": InventoryRef("dc1", 42, 400, n),
        "plan_run -> PlanSummary": summary,
        "plan_waves -> WavePage": WavePage(tuple(facts.plan_waves(run_id, 0, WAVE_PAGE))),
        "wave_batch -> BatchSlice (500 steps)": BatchSlice(steps, ("succeeded",) * len(steps)),
        "host_batch -> HostSlice (100 hosts)": HostSlice(tuple(facts.host_steps(run_id, 0, 100)), ()),
        "WaveBatch <- BatchTask": BatchTask(
            run_id,
            wave,
            0,
            500,
            summary.failure_budget,
            99,
            tuple(s.vm.name for s in steps[:SAMPLE]),
            NotifySetup(True, 3600),
        ),
        "WaveBatch -> BatchResult": BatchResult(
            counts, 100, tuple(s.vm.name for s in steps[:SAMPLE]), "x" * 300
        ),
        "VmPatch <- VmTask": VmTask(run_id, steps[0], "2026-11-29T20:00:00+00:00"),
        "PatchRun -> RunSummary": RunSummary(run_id, "failed", vms=outcomes, counts=counts),
        "progress -> RunProgress": progress,
        "continue-as-new RunCarry": RunCarry(
            summary,
            RunLimits(),
            NotifySetup(True, 0),
            0,
            5000,
            counts,
            100,
            tuple(s.vm.name for s in steps[:SAMPLE]),
            400,
        ),
    }
    sizes = {name: size(value) for name, value in payloads.items()}
    print(f"\n{n} VMs:", "; ".join(f"{name} {b / 1024:.1f} KB" for name, b in sizes.items()))
    assert max(sizes.values()) <= CEILING, sizes
    assert {k: v for k, v in sizes.items() if "500 steps" not in k and v > 64 * 1024} == {}
    assert len(progress.vms) == 50 and progress.count(StepStatus.PENDING) == 0


def test_what_the_workflows_carried_before_exceeds_temporals_limit() -> None:
    n = 10_000
    inventory = Inventory("dc1", tuple(HostInfo(HostRef("dc1", f"host-{h}", f"esx-{h}"), HostState.CONNECTED, "a")
                                       for h in range(400)), tuple(vm(i) for i in range(n)))  # fmt: skip
    whole_plan, whole_inventory = size(plan(n)), size(inventory)
    print(f"\nbefore, {n} VMs: plan_run -> Plan {whole_plan / 2**20:.2f} MB; discover -> Inventory "
          f"{whole_inventory / 2**20:.2f} MB")  # fmt: skip
    assert whole_plan > TEMPORAL_LIMIT and whole_inventory > TEMPORAL_LIMIT
