"""The read-only fact reader of a dry run: it answers like the store and never writes a byte."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import FactStoreError
from orchestrator.facts.reader import open_reader
from orchestrator.facts.store import FactStore
from orchestrator.model import Plan, StepStatus, VmOutcome
from providers.base import VmRef
from tests.support.clock import FakeClock

T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)
PLAN = Plan(plan_id="p1", created_at=T0.isoformat(), sites=("lab",), host_phase=(), waves=(), blocked=(),
            failure_budget=1)  # fmt: skip


def vm(n: int) -> VmRef:
    return VmRef("lab", f"uuid-{n}", f"pw-lab-{n}")


def fill(store: FactStore) -> None:
    """Two successful patches of vm 1, snapshots in every state, some expired at T0 + 2h."""
    store.create_run("r1", plan=PLAN, config_digest="d")
    for minutes in (3, 5):
        started, finished = T0, T0 + timedelta(minutes=minutes)
        store.set_outcome("r1", VmOutcome("vm:lab:uuid-1", vm(1), StepStatus.SUCCEEDED,
                                          started_at=started.isoformat(), finished_at=finished.isoformat()))  # fmt: skip
        store.set_outcome("r1", VmOutcome("vm:lab:uuid-1", vm(1), StepStatus.RUNNING))
    for n, state, ttl in (
        (1, "kept", 1),
        (2, "reverted", 1),
        (3, "kept", 5),
        (4, "deleted", 1),
        (5, "created", 1),
    ):
        step = f"vm:lab:uuid-{n}"
        store.register_snapshot_intent("r1", step, vm(n), f"pw-r1-{n}", expires_at=T0 + timedelta(hours=ttl))
        store.register_snapshot_created("r1", step, f"snap-{n}")
        if state != "created":
            store.mark_snapshot("r1", step, state)


def fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in directory.iterdir()
    }


def test_no_fact_store_means_no_reader_and_nothing_created(tmp_path: Path) -> None:
    assert open_reader(tmp_path / "state" / "facts.db") is None
    assert not (tmp_path / "state").exists()


def test_a_closed_store_is_read_without_writing_a_byte_or_creating_a_file(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    store = FactStore(path, clock=FakeClock(T0))
    fill(store)
    expected = store.history(["vm:lab:uuid-1", "vm:lab:uuid-2"])
    store.close()
    before = fingerprint(tmp_path)
    assert set(before) == {"facts.db"}

    reader = open_reader(path)
    assert reader is not None
    try:
        assert (
            reader.history(["vm:lab:uuid-1", "vm:lab:uuid-2"])
            == expected
            == {"vm:lab:uuid-1": [300.0, 180.0]}
        )
        expired = reader.expired_snapshots(T0 + timedelta(hours=2))
    finally:
        reader.close()
    assert [(s.vm.name, s.state) for s in expired] == [("pw-lab-1", "kept"), ("pw-lab-2", "reverted"),
                                                       ("pw-lab-5", "created")]  # fmt: skip
    assert fingerprint(tmp_path) == before


def test_a_store_open_in_another_connection_is_read_through_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    store = FactStore(path, clock=FakeClock(T0))
    try:
        fill(store)  # committed, still in the write-ahead log of the open store
        main_file = fingerprint(tmp_path)["facts.db"]
        reader = open_reader(path)
        assert reader is not None
        try:
            assert reader.history(["vm:lab:uuid-1"]) == {"vm:lab:uuid-1": [300.0, 180.0]}
        finally:
            reader.close()
        assert fingerprint(tmp_path)["facts.db"] == main_file
    finally:
        store.close()


def test_a_file_that_is_no_fact_store_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    path.write_bytes(b"not a database at all, just some bytes" * 100)
    reader = open_reader(path)
    assert reader is not None
    with pytest.raises(FactStoreError, match=str(path)):
        reader.history(["vm:lab:uuid-1"])
    reader.close()
