"""Snapshot ownership (``SnapshotInfo.owned_by``) and :mod:`orchestrator.snapshots` on libvirt's test driver.

Every open of ``test:///default`` is a fresh in-memory hypervisor with one running domain ``test``
(as in tests/contract), so each test gets its own provider and real snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import snapshots
from orchestrator.facts.store import FactStore
from orchestrator.snapshots import Removal
from providers.base import SnapshotInfo, SnapshotOwnership, VmRef, snapshot_name
from providers.errors import PermanentProviderError, ProviderUnavailable
from providers.libvirt import provider as adapter

SITE = "td"
T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)


class Log:
    """Records the structured events it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    warning = info


@pytest.fixture
def provider() -> Iterator[adapter.LibvirtProvider]:
    provider = adapter.open_provider(adapter.parse_settings(SITE, {"uri": "test:///default"}))
    yield provider
    provider.close()


@pytest.fixture
def vm(provider: adapter.LibvirtProvider) -> VmRef:
    return next(v.ref for v in provider.inventory().vms if v.ref.name == "test")


@pytest.fixture
def facts(tmp_path: Path) -> Iterator[FactStore]:
    store = FactStore(tmp_path / "facts.db")
    yield store
    store.close()


def owned_snapshot(provider: adapter.LibvirtProvider, vm: VmRef, run_id: str, step_id: str) -> SnapshotInfo:
    ownership = SnapshotOwnership(run_id, step_id, T0.isoformat())
    return provider.create_snapshot(vm, snapshot_name(run_id, step_id), ownership.to_description())


def recorded(
    facts: FactStore, vm: VmRef, run_id: str, step_id: str, snapshot_id: str, *, hours: int = 1
) -> None:
    facts.register_snapshot_intent(
        run_id, step_id, vm, snapshot_name(run_id, step_id), expires_at=T0 + timedelta(hours=hours)
    )
    facts.register_snapshot_created(run_id, step_id, snapshot_id)


def ids(provider: adapter.LibvirtProvider, vm: VmRef) -> set[str]:
    return {s.id for s in provider.list_snapshots(vm)}


# ------------------------------------------------------------------------------------------
# ownership
# ------------------------------------------------------------------------------------------


def test_a_snapshot_is_owned_only_by_the_run_and_step_its_description_names(vm: VmRef) -> None:
    description = SnapshotOwnership("run-1", "vm:td:1", T0.isoformat()).to_description("note")
    snap = SnapshotInfo(vm, "id-1", snapshot_name("run-1", "vm:td:1"), description)
    assert snap.owned_by("run-1", "vm:td:1")
    assert not snap.owned_by("run-1", "vm:td:2") and not snap.owned_by("run-2", "vm:td:1")
    same_name = SnapshotInfo(vm, "id-2", snapshot_name("run-1", "vm:td:1"), "made by hand")
    assert not same_name.owned_by("run-1", "vm:td:1"), "a name is never ownership"
    assert not SnapshotInfo(vm, "id-3", "x").owned_by("", "")


def test_owned_finds_the_snapshot_only_for_its_owner(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "vm:td:1")
    assert snapshots.owned(provider, vm, snap.id, "run-1", "vm:td:1") == snap
    assert snapshots.owned(provider, vm, snap.id, "run-2", "vm:td:1") is None
    assert snapshots.owned(provider, vm, "no-such-snapshot", "run-1", "vm:td:1") is None
    gone_vm = VmRef(SITE, "11111111-2222-3333-4444-555555555555", "gone")
    assert snapshots.owned(provider, gone_vm, snap.id, "run-1", "vm:td:1") is None


# ------------------------------------------------------------------------------------------
# remove: list -> check ownership -> delete -> mark
# ------------------------------------------------------------------------------------------


def test_remove_deletes_an_owned_snapshot_and_marks_it(provider, vm, facts) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "s1")
    recorded(facts, vm, "run-1", "s1", snap.id)
    assert snapshots.remove(facts, provider, vm, snap.id, run_id="run-1", step_id="s1") is Removal.DELETED
    assert snap.id not in ids(provider, vm)
    assert facts.snapshot("run-1", "s1").state == "deleted"  # type: ignore[union-attr]
    again = snapshots.remove(facts, provider, vm, snap.id, run_id="run-1", step_id="s1")
    assert again is Removal.GONE, "idempotent: already gone is success"


def test_remove_refuses_a_snapshot_owned_by_another_step_and_marks_the_record_leaked(
    provider, vm, facts
) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "someone-else")
    recorded(facts, vm, "run-1", "s1", snap.id)
    assert snapshots.remove(facts, provider, vm, snap.id, run_id="run-1", step_id="s1") is Removal.REFUSED
    assert snap.id in ids(provider, vm)
    assert facts.snapshot("run-1", "s1").state == "leaked"  # type: ignore[union-attr]


def test_remove_keeps_what_the_caller_wants_kept(provider, vm, facts) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "s1")
    recorded(facts, vm, "run-1", "s1", snap.id)
    kept = snapshots.remove(facts, provider, vm, snap.id, run_id="run-1", step_id="s1", keep=lambda s: True)
    assert kept is Removal.KEPT and snap.id in ids(provider, vm)
    assert facts.snapshot("run-1", "s1").state == "created"  # type: ignore[union-attr]


def test_remove_marks_an_unrecorded_id_deleted_but_leaves_other_records_alone(provider, vm, facts) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "s1")
    facts.register_snapshot_intent("run-1", "s1", vm, snapshot_name("run-1", "s1"))  # create cut short: no id
    recorded(facts, vm, "run-1", "s2", "another-snapshot")
    assert snapshots.remove(facts, provider, vm, snap.id, run_id="run-1", step_id="s1") is Removal.DELETED
    assert facts.snapshot("run-1", "s1").state == "deleted"  # type: ignore[union-attr]
    assert snapshots.remove(facts, provider, vm, "not-it", run_id="run-1", step_id="s2") is Removal.GONE
    other = facts.snapshot("run-1", "s2")
    assert other is not None and other.state == "created", "the record names another snapshot"


# ------------------------------------------------------------------------------------------
# due + clean_up
# ------------------------------------------------------------------------------------------


def test_due_selects_expired_live_and_reverted_snapshots_of_the_site(vm: VmRef, facts: FactStore) -> None:
    for step, hours, state in (("a", 1, "created"), ("b", 1, "kept"), ("c", 1, "reverted"), ("d", 1, "deleted"),
                               ("e", 10, "kept")):  # fmt: skip
        recorded(facts, vm, "run-1", step, f"id-{step}", hours=hours)
        facts.mark_snapshot("run-1", step, state)
    recorded(facts, VmRef("other-site", vm.id, vm.name), "run-1", "f", "id-f")
    later = T0 + timedelta(hours=2)
    assert [r.step_id for r in snapshots.due(facts, SITE, later)] == ["a", "b", "c"]
    assert snapshots.due(facts, SITE, later, run_id="run-2") == []
    everything = snapshots.due(facts, SITE, T0, run_id="run-1", include_unexpired=True)
    assert [r.step_id for r in everything] == ["a", "b", "c", "e"]


def test_clean_up_deletes_ours_marks_the_gone_and_leaves_the_foreign(provider, vm, facts) -> None:
    ours = owned_snapshot(provider, vm, "run-1", "ours")
    foreign = owned_snapshot(provider, vm, "run-9", "theirs")
    recorded(facts, vm, "run-1", "ours", ours.id)
    recorded(facts, vm, "run-1", "swapped", foreign.id)
    recorded(facts, vm, "run-1", "gone", "vanished")
    log = Log()
    result = snapshots.clean_up(facts, provider, snapshots.due(facts, SITE, T0 + timedelta(hours=2)), log=log)
    assert result.deleted == (f"test/{ours.id}",)
    assert result.gone == ("test/vanished",)
    assert result.refused == (f"test/{foreign.id}",)
    assert ids(provider, vm) == {foreign.id}
    assert {s.step_id: s.state for s in facts.snapshots()} == {
        "ours": "deleted",
        "gone": "deleted",
        "swapped": "leaked",
    }
    assert log.events[-1] == ("snapshots_cleaned", {"deleted": 1, "gone": 1, "refused": 1})


class FailingDeletes:
    """The test driver's provider whose deletes fail with ``error``."""

    def __init__(self, provider: adapter.LibvirtProvider, error: Exception) -> None:
        self.provider, self.error = provider, error

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        return self.provider.list_snapshots(vm)

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        raise self.error


def test_a_permanent_delete_failure_is_logged_and_left_for_next_time(provider, vm, facts) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "s1")
    recorded(facts, vm, "run-1", "s1", snap.id)
    log = Log()
    failing = FailingDeletes(provider, PermanentProviderError("snapshot is locked"))
    due = snapshots.due(facts, SITE, T0 + timedelta(hours=2))
    result = snapshots.clean_up(facts, failing, due, log=log)  # type: ignore[arg-type]
    assert result.deleted == result.gone == result.refused == ()
    assert (
        "snapshot_delete_failed",
        {"vm": str(vm), "snapshot": snap.id, "error": "snapshot is locked"},
    ) in log.events
    assert facts.snapshot("run-1", "s1").state == "created"  # type: ignore[union-attr]


def test_a_transient_delete_failure_is_raised_for_a_retry(provider, vm, facts) -> None:
    snap = owned_snapshot(provider, vm, "run-1", "s1")
    recorded(facts, vm, "run-1", "s1", snap.id)
    failing = FailingDeletes(provider, ProviderUnavailable("libvirtd restarting"))
    with pytest.raises(ProviderUnavailable):
        due = snapshots.due(facts, SITE, T0 + timedelta(hours=2))
        snapshots.clean_up(facts, failing, due, log=Log())  # type: ignore[arg-type]
