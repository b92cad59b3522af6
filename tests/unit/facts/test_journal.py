"""The step journal: every Action's typed detail round-trips; records written before it still read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.events import NOTIFY_EVENTS
from orchestrator.errors import FactStoreError
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import (
    Abandoned,
    AutoUpdatePauseDetail,
    BackupDetail,
    Detail,
    DoctorDetail,
    HealthDetail,
    HostAssessDetail,
    HostPatchDetail,
    HostPatchIntent,
    HostRebootDetail,
    NotifyDetail,
    PatchDetail,
    PatchIntent,
    RebootDetail,
    ServicesDetail,
    SnapshotDetail,
    SnapshotIntent,
)
from orchestrator.facts.schema import LATEST_VERSION, MIGRATIONS
from orchestrator.facts.store import FactStore
from orchestrator.model import CheckResult, PackageChange

RUN, STEP = "r1", "vm:lab:uuid-1"
CHANGES = (PackageChange("demo-app", "1.0", "1.1"), PackageChange("new-lib", "", "2.0"))
HEALTH = HealthDetail(
    (CheckResult("demo-app", "command", True, "", 1), CheckResult("web", "http", False, "HTTP 503", 3))
)
DOCTOR = DoctorDetail("orphan_snapshot", "vm:lab:uuid-1", "snap-7")
BACKUP_INTENT = BackupDetail(target="backup-nfs", location="pw-bk-web-1-0123456789ab")
BACKUP = BackupDetail("vol-1", "backup-nfs", "backup-nfs:backup/vol-1", 1234, "sha256:ab")

#: One intent (None: the action records none) and one result example per action.
EXAMPLES: dict[Action, tuple[Detail | None, Detail]] = {
    Action.BASELINE_HEALTH: (None, HEALTH),
    Action.SNAPSHOT: (SnapshotIntent("pw-r1-abc"), SnapshotDetail("snap-7")),
    Action.PATCH: (PatchIntent("security"), PatchDetail({"demo-app": "1.1", "new-lib": "2.0"}, CHANGES, True)),
    Action.REBOOT: (RebootDetail("boot-a"), RebootDetail("boot-b", "6.1.0-18-amd64")),
    Action.RESTART_SERVICES: (ServicesDetail(("nginx.service", "dbus.service")),
                              ServicesDetail(("nginx.service", "dbus.service"), ("dbus.service",))),
    Action.VERIFY_HEALTH: (None, HEALTH),
    Action.REVERT: (SnapshotDetail("snap-7"), SnapshotDetail("snap-7")),
    Action.RELEASE_SNAPSHOT: (SnapshotDetail("snap-8"), SnapshotDetail("snap-8")),
    Action.HOST_PATCH: (HostPatchIntent("7.0.3-1"), HostPatchDetail(True, True, "7.0.3-2")),
    Action.HOST_ASSESS: (None, HostAssessDetail(CHANGES, ("demo-app",), True, "6.1.0")),
    Action.HOST_REBOOT: (HostRebootDetail("2026-05-09T20:00:00+00:00"), HostRebootDetail()),
    **{Action.notify(e): (None, NotifyDetail(e, f"{e}:key", sent=2, failed=1)) for e in NOTIFY_EVENTS},
    **{Action.doctor(k): (DOCTOR, DoctorDetail(k, "s", "id", note="deleted")) for k in (
        "orphan_snapshot", "maintenance_leftover", "stale_maintenance", "stale_intent", "expired_lease", "paused_updater")},
    Action.BACKUP_CREATE: (BACKUP_INTENT, BACKUP),
    Action.BACKUP_DELETE: (BACKUP, BACKUP),
    Action.BACKUP_COPY_RESTORE: (BACKUP, BackupDetail("vol-1", copy_id="qemu/105")),
    Action.BACKUP_COPY_DESTROY: (BackupDetail("vol-1", copy_id="qemu/105"), BackupDetail(code="not_ours")),
    Action.BACKUP_PROBE: (None, BackupDetail("vol-1", copy_id="qemu/105", how="agent", boot_s=12.5,
                                             probes={"demo-app": True, "marker": False})),
    Action.AUTOUPDATES_PAUSE: (AutoUpdatePauseDetail(), AutoUpdatePauseDetail(
        "adopted", ("apt-daily.timer",), paused_by="run-dead")),
    Action.AUTOUPDATES_RESTORE: (AutoUpdatePauseDetail(), AutoUpdatePauseDetail(
        "restored", ("apt-daily.timer",), ("apt-daily-upgrade.timer",))),
}  # fmt: skip


@pytest.fixture
def store(store_at) -> Iterator[FactStore]:
    facts = FactStore(store_at())
    yield facts
    facts.close()


def test_every_action_has_an_example() -> None:
    assert set(EXAMPLES) == set(Action)


@pytest.mark.parametrize("action", list(Action))
def test_every_action_round_trips_its_typed_details(store: FactStore, action: Action) -> None:
    intent, result = EXAMPLES[action]
    if intent is not None:
        store.record_intent(RUN, STEP, action, target="lab/pw-1", detail=intent)
    store.record_result(RUN, STEP, action, ok=True, detail=result)
    records = store.step_history(RUN, STEP)
    expected = [(Phase.INTENT, intent)] if intent is not None else []
    assert [(r.phase, r.detail) for r in records] == [*expected, (Phase.RESULT, result)]
    assert {r.action for r in records} == {action}
    assert action.detail_type(Phase.RESULT) is type(result)


def test_an_intent_for_an_action_that_records_none_is_refused(store: FactStore) -> None:
    with pytest.raises(TypeError, match="baseline_health records no intent"):
        store.record_intent(RUN, STEP, Action.BASELINE_HEALTH, detail=HEALTH)


def test_a_detail_of_another_action_is_refused_before_anything_is_written(store: FactStore) -> None:
    with pytest.raises(TypeError, match="a patch result takes PatchDetail, not RebootDetail"):
        store.record_result(RUN, STEP, Action.PATCH, ok=True, detail=RebootDetail("b"))
    with pytest.raises(TypeError, match="a snapshot intent takes SnapshotIntent"):
        store.record_intent(RUN, STEP, Action.SNAPSHOT, detail=SnapshotDetail("snap-7"))
    assert store.step_history(RUN) == []


def test_an_abandoned_attempt_is_a_result_of_its_own_action(store: FactStore) -> None:
    store.record_intent(RUN, STEP, Action.PATCH, detail=PatchIntent("all"))
    store.record_result(RUN, STEP, Action.PATCH, ok=False, detail=Abandoned(), error="abandoned")
    assert store.step_history(RUN, STEP, action=Action.PATCH)[-1].detail == Abandoned()
    with pytest.raises(TypeError):  # a notification has no attempt to abandon
        store.record_result(RUN, "notify", Action.NOTIFY_RUN_STARTED, ok=False, detail=Abandoned())


def test_notification_deliveries_are_on_record_by_key(store: FactStore) -> None:
    store.record_delivery(RUN, "run_started", key="run_started", ok=False, sent=0, failed=1, error="refused")
    assert not store.delivered(RUN, "run_started")
    store.record_delivery(RUN, "run_started", key="run_started", ok=True, sent=1, failed=0)
    assert store.delivered(RUN, "run_started") and not store.delivered(RUN, "run_finished")
    [_, record] = store.step_history(RUN, "notify")
    assert (record.action, record.detail) == (
        Action.NOTIFY_RUN_STARTED,
        NotifyDetail("run_started", "run_started", 1),
    )


def test_every_notification_event_and_doctor_finding_has_its_action() -> None:
    assert {Action.notify(e) for e in NOTIFY_EVENTS} == {a for a in Action if a.startswith("notify_")}
    with pytest.raises(ValueError):
        Action.notify("run_exploded")


# ------------------------------------------------------------------------------------------
# records written before the typed journal (journal version 1): today's keys, text changes
# ------------------------------------------------------------------------------------------

#: (action, phase, ok, the JSON the untyped journal wrote) -> the typed detail read back.
VERSION_1 = [
    ("snapshot", "intent", None, {"name": "pw-r1-abc"}, SnapshotIntent("pw-r1-abc")),
    ("snapshot", "result", 1, {"snapshot_id": "snap-7"}, SnapshotDetail("snap-7")),
    ("patch", "intent", None, {"mode": "all"}, PatchIntent("all")),
    ("patch", "result", 1, {"installed": {"demo-app": "1.1", "new-lib": "2.0"},
                            "changed": ["demo-app 1.0->1.1", "new-lib ->2.0"], "reboot_required": True},
     PatchDetail({"demo-app": "1.1", "new-lib": "2.0"}, CHANGES, reboot_required=True)),
    ("patch", "result", 1, {"installed": {}, "nothing": True}, PatchDetail(nothing_to_do=True)),
    ("reboot", "intent", None, {"boot_id": "boot-a"}, RebootDetail("boot-a")),
    ("reboot", "result", 1, {"boot_id": "boot-b", "kernel": "6.1"}, RebootDetail("boot-b", "6.1")),
    ("revert", "result", 1, {"snapshot_id": "snap-7"}, SnapshotDetail("snap-7")),
    ("verify_health", "result", 0, {"checks": [{"name": "web", "ok": False, "detail": "HTTP 503"}]},
     HealthDetail((CheckResult("web", "", False, "HTTP 503", 1),))),
    ("host_patch", "intent", None, {"build": "7.0.3-1"}, HostPatchIntent("7.0.3-1")),
    ("host_patch", "result", 1, {"changed": True, "reboot_required": True, "build": "7.0.3-1"},
     HostPatchDetail(True, True, "7.0.3-1")),
    ("host_assess", "result", 1, {"report_only": True, "pending": ["demo-app 1.0->1.1", "new-lib ->2.0"],
                                  "security": ["demo-app"], "reboot_required": False, "kernel": "6.1"},
     HostAssessDetail(CHANGES, ("demo-app",), False, "6.1")),
    ("host_reboot", "intent", None, {"boot_time": "t0"}, HostRebootDetail("t0")),
    ("host_reboot", "result", 1, {}, HostRebootDetail()),
    ("notify_run_halted", "result", 0, {"event": "run_halted", "sent": 0, "failed": 1},  # "key" was scrubbed
     NotifyDetail("run_halted", "", 0, 1)),
    ("doctor_stale_intent", "intent", None, {"kind": "stale_intent", "step": STEP, "snapshot_id": ""},
     DoctorDetail("stale_intent", STEP)),
    ("doctor_orphan_snapshot", "result", 1, {"kind": "orphan_snapshot", "step": STEP, "snapshot_id": "s",
                                             "note": "deleted"}, DoctorDetail("orphan_snapshot", STEP, "s", "deleted")),
    ("patch", "result", 0, {"abandoned": True}, Abandoned()),
]  # fmt: skip


def _insert_v1(path: Path, action: str, phase: str, ok: int | None, detail: dict) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO steps (run_id, step_id, action, phase, target, ok, detail, error, recorded_at,"
            " schema_version) VALUES (?, ?, ?, ?, 'lab/pw-1', ?, ?, '', '2026-05-09T20:00:00+00:00', 1)",
            (RUN, STEP, action, phase, ok, json.dumps(detail, sort_keys=True, separators=(",", ":"))),
        )


@pytest.mark.parametrize(("action", "phase", "ok", "stored", "expected"), VERSION_1)
def test_a_record_of_the_untyped_journal_reads_as_its_typed_detail(
    tmp_path: Path, action: str, phase: str, ok: int | None, stored: dict, expected: Detail
) -> None:
    path = tmp_path / "facts.db"
    FactStore(path).close()
    _insert_v1(path, action, phase, ok, stored)
    store = FactStore(path)
    try:
        [record] = store.step_history(RUN)
    finally:
        store.close()
    assert (record.action, record.phase, record.detail, record.schema_version) == (action, phase, expected, 1)


def test_new_records_keep_the_old_keys_and_carry_the_journal_version(store: FactStore) -> None:
    store.record_result(
        RUN, STEP, Action.PATCH, ok=True, detail=PatchDetail({"demo-app": "1.1"}, CHANGES[:1])
    )
    row = store._db().execute("SELECT detail, schema_version FROM steps").fetchone()
    assert json.loads(row["detail"]) == {
        "installed": {"demo-app": "1.1"},
        "changed": [{"name": "demo-app", "old": "1.0", "new": "1.1"}],
        "reboot_required": False,
        "nothing": False,
    }
    assert row["schema_version"] == 2


def test_a_record_with_an_unknown_action_names_the_record_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    FactStore(path).close()
    _insert_v1(path, "teleport", "intent", None, {})
    store = FactStore(path)
    try:
        with pytest.raises(FactStoreError, match="teleport intent of vm:lab:uuid-1") as raised:
            store.step_history(RUN)
    finally:
        store.close()
    assert "upgrade patchwave" in raised.value.render()


def test_a_fact_store_of_the_untyped_journal_is_migrated_and_its_records_read(tmp_path: Path) -> None:
    path = tmp_path / "facts.db"
    with sqlite3.connect(path) as db:  # the file as the previous patchwave left it: schema version 2
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        for number, statements in MIGRATIONS[:2]:
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 'then')", (number,))
    _insert_v1(
        path, "patch", "result", 1, {"installed": {"demo-app": "1.1"}, "changed": ["demo-app 1.0->1.1"]}
    )
    store = FactStore(path)
    try:
        [record] = store.step_history(RUN, STEP, action=Action.PATCH)
        assert record.detail == PatchDetail({"demo-app": "1.1"}, CHANGES[:1])
        versions = [r[0] for r in store._db().execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [number for number, _ in MIGRATIONS] and versions[-1] == LATEST_VERSION
    finally:
        store.close()


def test_action_durations_pair_each_intent_with_its_ok_result_across_runs(store_at) -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.facts.store import FactStore
    from tests.support.clock import FakeClock

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    store = FactStore(store_at(), clock=clock)
    try:
        for run, took, ok in (("r1", 40, True), ("r2", 70, False), ("r3", 20, True)):
            store.record_intent(run, "vm:a", Action.REBOOT, detail=RebootDetail("b0"))
            clock.sleep(took)
            store.record_result(run, "vm:a", Action.REBOOT, ok=ok, detail=RebootDetail("b1"))
            clock.sleep(timedelta(hours=1).total_seconds())
        assert store.action_durations("vm:a", Action.REBOOT) == [20.0, 40.0]  # newest first; r2 failed
        assert store.action_durations("vm:a", Action.REBOOT, limit=1) == [20.0]
        assert store.action_durations("vm:b", Action.REBOOT) == []
    finally:
        store.close()
