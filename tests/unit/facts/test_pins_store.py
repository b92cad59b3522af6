"""Pinned promotion's records (migration 12): the first ring's tested versions, the pin set frozen once
from its patched-and-healthy VMs only, and the held-back versions of later rings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.facts.pins import PinStore
from orchestrator.facts.store import FactStore
from orchestrator.model import Plan, StepStatus, VmOutcome, VmPolicy, VmStep, Wave, vm_step_id
from orchestrator.promotion.pins import HeldBack, PinEntry
from providers.base import VmRef
from tests.support.clock import FakeClock

RUN = "run-pins"
DEB12 = "debian:debian:12"


def step(name: str, ring: str) -> VmStep:
    ref = VmRef("dc1", f"id-{name}", name)
    return VmStep(vm_step_id(ref), ref, ring, ring, VmPolicy(), 60, 60, "ssh")


CANARIES = (step("c-1", "canary"), step("c-2", "canary"), step("c-3", "canary"))
MAIN = step("m-1", "main")
PLAN = Plan(
    plan_id="p", created_at="2026-12-04T00:00:00+00:00", sites=("dc1",), host_phase=(),
    waves=(Wave("canary:0", "canary", 0, CANARIES, 2), Wave("main:0", "main", 0, (MAIN,), 2)),
    blocked=(), failure_budget=1,
)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FactStore]:
    facts = FactStore(tmp_path / "facts.db", clock=FakeClock(datetime(2026, 12, 4, tzinfo=UTC)))
    facts.create_run(RUN, plan=PLAN, config_digest="d", requested_by="t")
    yield facts
    facts.close()


def finish(facts: FactStore, vm: VmStep, status: StepStatus) -> None:
    facts.set_outcome(RUN, VmOutcome(vm.step_id, vm.vm, status))


def test_the_rings_come_from_the_recorded_plan_in_order(store: FactStore) -> None:
    assert PinStore(store).rings(RUN) == ("canary", "main")
    assert PinStore(store).rings("no-such-run") == ()


def test_only_patched_and_healthy_first_ring_vms_contribute(store: FactStore) -> None:
    pins = PinStore(store)
    c1, c2, c3 = CANARIES
    pins.record_tested(RUN, c1.step_id, ring="canary", os_key=DEB12, packages={"demo-app": "1.1"})
    pins.record_tested(RUN, c2.step_id, ring="canary", os_key=DEB12, packages={"demo-app": "1.2"})
    pins.record_tested(RUN, c3.step_id, ring="canary", os_key="debian:debian:11", packages={})
    finish(store, c1, StepStatus.SUCCEEDED)
    finish(store, c2, StepStatus.ROLLED_BACK)  # its 1.2 broke it: never promoted
    finish(store, c3, StepStatus.SUCCEEDED)
    frozen = pins.freeze(RUN, "canary")
    assert frozen.pin_set_id == f"{RUN}/canary" and (frozen.contributors, frozen.excluded) == (2, 1)
    assert frozen.entries == (PinEntry(DEB12, "demo-app", "1.1", 1),)
    assert frozen.for_os(DEB12) == {"demo-app": "1.1"}
    assert frozen.for_os("debian:debian:11") == {}  # covered by a canary that had nothing to do
    assert frozen.for_os("rhel:rocky:9") is None  # no canary ran it


def test_the_pin_set_is_frozen_once_and_read_back_by_a_resumed_run(store: FactStore, tmp_path: Path) -> None:
    pins = PinStore(store)
    c1 = CANARIES[0]
    pins.record_tested(RUN, c1.step_id, ring="canary", os_key=DEB12, packages={"demo-app": "1.1"})
    finish(store, c1, StepStatus.SUCCEEDED)
    first = pins.freeze(RUN, "canary")
    # later facts change nothing: a canary re-recorded with a newer version after the freeze
    pins.record_tested(RUN, c1.step_id, ring="canary", os_key=DEB12, packages={"demo-app": "1.3"})
    again = FactStore(tmp_path / "facts.db")  # another process (a resumed run's worker)
    try:
        assert PinStore(again).freeze(RUN, "canary") == first == PinStore(again).pin_set(RUN)
    finally:
        again.close()


def test_held_back_versions_are_recorded_per_vm_and_replaced_on_a_retry(store: FactStore) -> None:
    pins = PinStore(store)
    held = HeldBack(
        "demo-app", "1.0", "1.3", "1.1", "1.3 is newer than the version ring 'canary' tested (1.1)"
    )
    pins.record_held(
        RUN, MAIN.step_id, vm="m-1", os_key=DEB12, held=[held, held.__class__("x", "1", "2", "", "r")]
    )
    pins.record_held(RUN, MAIN.step_id, vm="m-1", os_key=DEB12, held=[held])  # the retried attempt
    assert pins.held_count(RUN) == (1, 1)
    [record] = pins.held(RUN)
    assert (record.vm, record.os_key, record.held) == ("m-1", DEB12, held)
