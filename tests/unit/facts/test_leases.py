"""The fact store's leases: all or nothing, re-entrant for their owner, renewed, expired, released."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.errors import LeaseHeld
from orchestrator.facts.leases import LEASE_TTL_S, LeaseTarget, plan_targets
from orchestrator.facts.store import FactStore
from orchestrator.model import FailureDomain, HostStep, Plan, RebootPolicy, VmPolicy, VmStep, Wave
from providers.base import HostRef, VmRef
from tests.support.clock import FakeClock

T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)
WEB = [LeaseTarget.vm(VmRef("lab", f"uuid-{i}", f"web-{i}")) for i in range(1, 4)]
HOST = LeaseTarget.host(HostRef("lab", "h-1", "kvm1"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(store_at, clock: FakeClock) -> FactStore:
    facts = FactStore(store_at(), clock=clock)
    yield facts
    facts.close()


def owners(store: FactStore) -> dict[str, str]:
    return {lease.target.name: lease.owner for lease in store.leases()}


def test_acquire_many_takes_all_or_nothing(store: FactStore) -> None:
    store.acquire_leases("run-a", WEB[:2], operation="run")
    with pytest.raises(LeaseHeld) as refused:
        store.acquire_leases("run-b", [WEB[1], WEB[2], HOST], operation="run")
    assert owners(store) == {"web-1": "run-a", "web-2": "run-a"}  # web-3 and kvm1 not taken either
    err = refused.value
    assert (err.holder, err.operation, err.targets, err.exit_code) == ("run-a", "run", ("web-2",), 2)
    assert str(err).startswith(
        f"lease: run run-a is active on these targets: web-2 (held since {T0.isoformat()}"
    )
    assert LeaseHeld.from_details(err.details).message == err.message


def test_the_owner_takes_its_own_leases_again_and_renews_them(store: FactStore, clock: FakeClock) -> None:
    assert store.acquire_leases("run-a", WEB[:2], operation="run") == 2
    clock.advance(600)
    assert store.acquire_leases("run-a", WEB, operation="run") == 1  # a resumed run: web-3 is new
    leases = {lease.target.name: lease for lease in store.leases(owner="run-a")}
    assert leases["web-1"].acquired_at == T0.isoformat(timespec="microseconds")
    assert leases["web-1"].renewed_at == leases["web-3"].acquired_at
    assert datetime.fromisoformat(leases["web-1"].expires_at) == T0 + timedelta(seconds=600 + LEASE_TTL_S)


def test_leases_expire_unless_renewed_and_stay_their_owners(store: FactStore, clock: FakeClock) -> None:
    store.acquire_leases("run-a", WEB[:1], operation="run", ttl_s=60)
    store.acquire_leases("cleanup-1", WEB[1:2], operation="cleanup", ttl_s=60)
    clock.advance(45)
    assert store.renew_leases("run-a", ttl_s=60) == 1
    clock.advance(30)
    assert [lease.owner for lease in store.expired_leases(clock.now())] == ["cleanup-1"]
    with pytest.raises(LeaseHeld) as refused:  # expired is not free: only the doctor releases it
        store.acquire_leases("run-b", WEB[1:2], operation="run")
    assert refused.value.expired and "expired at" in str(refused.value)
    assert "doctor --fix" in refused.value.fix


def test_release_drops_only_the_owners_leases(store: FactStore) -> None:
    store.acquire_leases("run-a", [*WEB[:2], HOST], operation="run")
    store.acquire_leases("rb-1", WEB[2:], operation="rollback")
    assert store.release_leases("run-b", WEB) == 0
    assert store.release_leases("run-a", [WEB[0]]) == 1
    assert owners(store) == {"web-2": "run-a", "kvm1": "run-a", "web-3": "rb-1"}
    assert store.release_leases("run-a") == 2
    assert owners(store) == {"web-3": "rb-1"}
    store.acquire_leases("run-b", WEB[:2], operation="run")  # free again


def test_a_conditional_release_keeps_a_lease_renewed_meanwhile(store: FactStore, clock: FakeClock) -> None:
    store.acquire_leases("run-a", WEB[:1], operation="run", ttl_s=60)
    seen = store.leases()[0]
    clock.advance(30)
    store.renew_leases("run-a", ttl_s=60)
    assert not store.release_lease_if(seen)
    assert store.release_lease_if(store.leases()[0])
    assert store.leases() == []


def test_racing_owners_never_share_a_target(store_at) -> None:
    """Many threads (own connections; on PostgreSQL each its own pool, as separate workers would be)
    take overlapping sets at once: each target has one owner and each owner got all of its set or
    none of it."""
    path = store_at()
    FactStore(path).close()
    sets = {f"run-{i}": [WEB[i % 3], WEB[(i + 1) % 3]] for i in range(12)}
    won: list[str] = []
    start = threading.Barrier(len(sets))

    def take(owner: str) -> None:
        store = FactStore(path)
        start.wait()
        try:
            store.acquire_leases(owner, sets[owner], operation="run")
            won.append(owner)
        except LeaseHeld:
            pass
        finally:
            store.close()

    threads = [threading.Thread(target=take, args=(owner,)) for owner in sets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = FactStore(path)
    held = owners(store)
    store.close()
    assert len(won) == 1 and {held[t.name] for t in sets[won[0]]} == {won[0]} and len(held) == 2


def test_fifty_thousand_targets_in_one_transaction(store: FactStore) -> None:
    fleet = [LeaseTarget.vm(VmRef("big", f"id-{i}", f"vm-{i}")) for i in range(50_000)]
    assert store.acquire_leases("run-big", fleet, operation="run") == 50_000
    with pytest.raises(LeaseHeld) as refused:
        store.acquire_leases("run-other", fleet[-3:], operation="schedule")
    assert len(refused.value.targets) == 3
    assert store.renew_leases("run-big") == 50_000
    assert store.release_leases("run-big", fleet[:20_000]) == 20_000
    assert store.release_leases("run-big") == 30_000


def test_a_plan_leases_its_vms_and_the_hosts_it_patches() -> None:
    policy = VmPolicy()
    vm_step = lambda i: VmStep(f"vm:lab:uuid-{i}", VmRef("lab", f"uuid-{i}", f"web-{i}"), "g", "main",
                               policy, 60, 60, "local")  # fmt: skip
    host_step = lambda name, patch: HostStep(f"host:lab:{name}", HostRef("lab", name, name), "d", False,
                                             patch, RebootPolicy.NEVER, 60)  # fmt: skip
    plan = Plan(
        plan_id="p", created_at=T0.isoformat(), sites=("lab",),
        host_phase=(FailureDomain("d", (host_step("kvm1", "ssh"), host_step("kvm2", "none"))),),
        waves=(Wave("main:0", "main", 0, (vm_step(1), vm_step(2)), 2),), blocked=(), failure_budget=0,
    )  # fmt: skip
    assert [t.label for t in plan_targets(plan)] == ["web-1", "web-2", "kvm1"]
    assert [t.label for t in plan_targets(plan, done={"vm:lab:uuid-1"})] == ["web-2", "kvm1"]
