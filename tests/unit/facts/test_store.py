"""The fact store: append-only step records, idempotent registries, 0600 file, safe from threads."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.errors import FactStoreError
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import PatchDetail, PatchIntent, RebootDetail
from orchestrator.facts.records import to_json
from orchestrator.facts.schema import LATEST_VERSION, MIGRATIONS
from orchestrator.facts.store import FactStore, scrub
from orchestrator.model import HostOutcome, PackageChange, Plan, StepStatus, VmOutcome, vm_step_id
from providers.base import HostRef, VmRef
from providers.settings import Secret
from tests.support.clock import FakeClock

T0 = datetime(2026, 5, 9, 20, 0, tzinfo=UTC)
VM = VmRef("lab", "uuid-1", "pw-lab-1")
HOST = HostRef("lab", "qemu:///system", "kvm1")
PLAN = Plan(
    plan_id="p1",
    created_at=T0.isoformat(),
    sites=("lab",),
    host_phase=(),
    waves=(),
    blocked=(),
    failure_budget=1,
)


@pytest.fixture
def store(store_at) -> FactStore:
    # One second per reading: every record gets its own, ordered time.
    facts = FactStore(store_at(), clock=FakeClock(T0, tick=1.0))
    yield facts
    facts.close()


def test_the_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "new-state" / "facts.db"
    FactStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_schema_version_is_recorded_and_reopening_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    FactStore(path).close()
    FactStore(path).close()
    with sqlite3.connect(path) as db:
        # one row per applied migration, each applied once
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(v,) for v, _ in MIGRATIONS]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_database_from_a_newer_patchwave_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    FactStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (LATEST_VERSION + 1,)
        )
    with pytest.raises(FactStoreError, match="upgrade patchwave"):
        FactStore(path)


def test_create_run_is_idempotent_and_refuses_another_plan(store: FactStore) -> None:
    store.create_run("r1", plan=PLAN, config_digest="d1", requested_by="alice")
    store.create_run("r1", plan=PLAN, config_digest="d1", requested_by="alice")
    assert [r.run_id for r in store.list_runs()] == ["r1"]
    run = store.get_run("r1")
    assert run is not None and (run.status, run.plan_id, run.config_digest) == ("planned", "p1", "d1")
    assert store.run_plan("r1") == PLAN
    with pytest.raises(FactStoreError, match="different|already exists"):
        store.create_run(
            "r1", plan=Plan(**{**PLAN.__dict__, "plan_id": "p2"}), config_digest="d1", requested_by=""
        )
    assert store.get_run("nope") is None


def test_run_status_changes_are_recorded_once(store: FactStore) -> None:
    store.create_run("r1", plan=PLAN, config_digest="d", requested_by="")
    store.set_run_status("r1", "running")
    store.set_run_status("r1", "running")
    store.set_run_status("r1", "halted", reason="budget")
    run = store.get_run("r1")
    assert run is not None and (run.status, run.reason) == ("halted", "budget")
    events = store._db().execute("SELECT status FROM run_events WHERE run_id = 'r1' ORDER BY id").fetchall()
    assert [e[0] for e in events] == ["planned", "running", "halted"]
    with pytest.raises(ValueError, match="unknown run status"):
        store.set_run_status("r1", "exploded")


def test_intent_and_result_records_are_appended_in_order(store: FactStore) -> None:
    step, change = vm_step_id(VM), PackageChange("demo-app", "1.0", "1.1")
    first = store.record_intent("r1", step, Action.PATCH, target=str(VM), detail=PatchIntent("all"))
    store.record_result("r1", step, Action.PATCH, ok=False, detail=PatchDetail(), error="apt failed")
    second = store.record_intent("r1", step, Action.PATCH, target=str(VM), detail=PatchIntent("all"))
    store.record_result("r1", step, Action.PATCH, ok=True, detail=PatchDetail({"demo-app": "1.1"}, (change,)))
    history = store.step_history("r1", step)
    assert [(r.phase, r.ok) for r in history] == [
        (Phase.INTENT, None),
        (Phase.RESULT, False),
        (Phase.INTENT, None),
        (Phase.RESULT, True),
    ]
    assert second > first
    assert history[1].error == "apt failed" and history[3].detail == PatchDetail(
        {"demo-app": "1.1"}, (change,)
    )
    assert store.attempts("r1", step, Action.PATCH) == 2
    assert store.attempts("r1", step, Action.SNAPSHOT) == 0
    assert store.step_history("r1", "vm:lab:other") == []
    assert store.step_history("r1", step, action=Action.SNAPSHOT) == []


def test_secret_like_keys_and_values_are_scrubbed_from_what_the_store_writes() -> None:
    detail = {"user": "root", "password": "hunter2", "nested": {"api_token": "tok-123", "ok": 1},
              "auth": Secret("s3cr3t"), "key_file": "/root/.ssh/id"}  # fmt: skip
    written = to_json(detail)
    assert json.loads(written) == {"user": "root", "nested": {"ok": 1}, "key_file": "/root/.ssh/id"}
    assert "hunter2" not in written and "tok-123" not in written and "s3cr3t" not in written


def test_scrub_makes_details_json_safe() -> None:
    assert scrub({"when": T0, "path": Path("/x"), "set": {"b", "a"}, "vm": VM, "Cookie": "c"}) == {
        "when": str(T0), "path": "/x", "set": ["a", "b"], "vm": {"site": "lab", "id": "uuid-1", "name": "pw-lab-1"},
    }  # fmt: skip


def test_outcomes_keep_the_latest_and_are_not_duplicated(store: FactStore) -> None:
    running = VmOutcome(step_id="vm:lab:uuid-1", vm=VM, status=StepStatus.RUNNING)
    done = VmOutcome(step_id="vm:lab:uuid-1", vm=VM, status=StepStatus.SUCCEEDED, snapshot_id="s1",
                     started_at="2026-05-09T20:00:00+00:00", finished_at="2026-05-09T20:07:30+00:00")  # fmt: skip
    for outcome in (running, done, done):
        store.set_outcome("r1", outcome)
    assert store.outcome("r1", "vm:lab:uuid-1") == done
    assert store._db().execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 2
    host = HostOutcome(step_id="host:lab:kvm1", host=HOST, status=StepStatus.FAILED, error="boom")
    store.set_outcome("r1", host)
    assert store.outcomes("r1") == [host, done]
    assert store.outcome("r1", "vm:lab:missing") is None


def test_durations_come_from_succeeded_outcomes_newest_first(store: FactStore) -> None:
    for run, minutes, status in (
        ("r1", 5, StepStatus.SUCCEEDED),
        ("r2", 9, StepStatus.FAILED),
        ("r3", 7, StepStatus.SUCCEEDED),
    ):
        store.set_outcome(run, VmOutcome(step_id="vm:lab:uuid-1", vm=VM, status=status,
                                         started_at="2026-05-09T20:00:00+00:00",
                                         finished_at=f"2026-05-09T20:0{minutes}:00+00:00"))  # fmt: skip
    assert store.durations("vm:lab:uuid-1") == [420.0, 300.0]
    assert store.history(["vm:lab:uuid-1", "vm:lab:none"]) == {"vm:lab:uuid-1": [420.0, 300.0]}


def test_the_snapshot_registry_records_intent_before_the_id(store: FactStore) -> None:
    expires = T0 + timedelta(hours=72)
    store.register_snapshot_intent("r1", "vm:lab:uuid-1", VM, "pw-r1-abc", expires_at=expires)
    store.register_snapshot_intent("r1", "vm:lab:uuid-1", VM, "pw-r1-abc", expires_at=expires)  # idempotent
    (snap,) = store.snapshots(run_id="r1")
    assert (snap.state, snap.snapshot_id, snap.vm) == ("intent", "", VM)
    store.register_snapshot_created("r1", "vm:lab:uuid-1", "snap-42")
    store.register_snapshot_created("r1", "vm:lab:uuid-1", "snap-42")
    assert store.snapshot("r1", "vm:lab:uuid-1").state == "created"  # type: ignore[union-attr]
    store.mark_snapshot("r1", "vm:lab:uuid-1", "kept")
    store.mark_snapshot("r1", "vm:lab:uuid-1", "kept")
    assert [s.state for s in store.snapshots(state="kept")] == ["kept"]
    with pytest.raises(FactStoreError, match="already registered"):
        store.register_snapshot_intent("r1", "vm:lab:uuid-1", VM, "another-name")
    with pytest.raises(FactStoreError, match="register_snapshot_intent"):
        store.mark_snapshot("r1", "vm:lab:never", "deleted")


def test_a_released_snapshot_is_registered_anew_when_its_step_is_taken_again(store: FactStore) -> None:
    """A VM prepared ahead and released (its snapshot deleted) is prepared again by a resumed run: the
    new snapshot is "created" and cleaned up like any other, not lost under the old "deleted" state."""
    store.register_snapshot_intent("r1", "vm:lab:uuid-1", VM, "pw-r1-abc", expires_at=T0)
    store.register_snapshot_created("r1", "vm:lab:uuid-1", "snap-1")
    store.mark_snapshot("r1", "vm:lab:uuid-1", "deleted")
    later = T0 + timedelta(hours=1)
    store.register_snapshot_intent("r1", "vm:lab:uuid-1", VM, "pw-r1-abc", expires_at=later)
    again = store.snapshot("r1", "vm:lab:uuid-1")
    assert again is not None and (again.state, again.snapshot_id) == ("intent", "")
    assert datetime.fromisoformat(again.expires_at) == later
    store.register_snapshot_created("r1", "vm:lab:uuid-1", "snap-2")
    assert [(s.snapshot_id, s.state) for s in store.snapshots(run_id="r1")] == [("snap-2", "created")]


def test_expired_snapshots_are_the_live_ones_past_their_ttl(store: FactStore) -> None:
    for step, hours, state in (("a", 1, "created"), ("b", 10, "kept"), ("c", 1, "deleted")):
        store.register_snapshot_intent("r1", step, VM, f"n-{step}", expires_at=T0 + timedelta(hours=hours))
        store.register_snapshot_created("r1", step, f"id-{step}")
        store.mark_snapshot("r1", step, state)
    assert [s.step_id for s in store.expired_snapshots(T0 + timedelta(hours=2))] == ["a"]
    assert [s.step_id for s in store.expired_snapshots(T0 + timedelta(hours=11))] == ["a", "b"]


def test_hosts_in_maintenance_follow_the_latest_record(store: FactStore) -> None:
    other = HostRef("lab", "qemu+ssh://kvm2/system", "kvm2")
    store.record_maintenance("r1", HOST, "entering")
    store.record_maintenance("r1", HOST, "in")
    store.record_maintenance("r1", HOST, "in")  # idempotent
    store.record_maintenance("r1", other, "entering")
    store.record_maintenance("r1", other, "exited")
    assert [(m.host, m.state) for m in store.hosts_in_maintenance()] == [(HOST, "in")]
    store.record_maintenance("r2", HOST, "exited")
    assert store.hosts_in_maintenance() == []
    assert store._db().execute("SELECT COUNT(*) FROM maintenance").fetchone()[0] == 5


def test_many_threads_write_without_losing_records(store: FactStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                store.record_intent(
                    "r1", f"vm:lab:{n}", Action.REBOOT, target="t", detail=RebootDetail(f"b{i}")
                )
                store.record_result(
                    "r1", f"vm:lab:{n}", Action.REBOOT, ok=True, detail=RebootDetail(f"b{i}", "k")
                )
            store.register_snapshot_intent("r1", "shared", VM, "same-name")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.step_history("r1")) == 8 * 25 * 2
    assert len(store.snapshots(run_id="r1")) == 1
