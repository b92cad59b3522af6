"""The backup tables (migration 6) through a real SQLite file: one row per (run, step) with its state
and latest verdict, and every verification attempt appended."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import FactStoreError
from orchestrator.facts.backups import BackupStore, probe_results
from orchestrator.facts.schema import LATEST_VERSION, MIGRATIONS
from orchestrator.facts.store import FactStore
from providers.backups import BackupInfo, ProbeResult, RestoreCheck
from providers.base import VmRef

VM = VmRef("pve", "qemu/100", "web-1")


def info(backup_id: str, created: str) -> BackupInfo:
    return BackupInfo(
        VM,
        backup_id,
        f"backup-nfs:backup/{backup_id}",
        "backup-nfs",
        created,
        1234,
        "sha256:ab",
        "patchwave-backup:{}",
    )


@pytest.fixture
def store(store_at) -> Iterator[BackupStore]:
    facts = FactStore(store_at())
    yield BackupStore(facts)
    facts.close()


def test_the_backup_tables_are_migration_6(tmp_path: Path) -> None:
    facts = FactStore(tmp_path / "facts.db")
    tables = {r[0] for r in facts._db().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"backups", "backup_verifications"} <= tables and LATEST_VERSION >= 6
    assert any(number == 6 and "CREATE TABLE backups" in " ".join(sql) for number, sql in MIGRATIONS)


def test_a_backup_goes_from_intent_to_created_and_the_intent_is_idempotent(store: BackupStore) -> None:
    first = store.register_intent("run-1", "backup:web-1", VM, "")
    again = store.register_intent("run-1", "backup:web-1", VM, "")
    assert first == again and first.state == "intent" and first.backup_id == ""
    created = store.register_created("run-1", "backup:web-1", info("v1", "2026-11-28T21:00:00+00:00"))
    assert (created.id, created.state, created.backup_id, created.size, created.checksum) == (
        first.id,
        "created",
        "v1",
        1234,
        "sha256:ab",
    )
    assert (created.location, created.target, created.created_at) == (
        "backup-nfs:backup/v1",
        "backup-nfs",
        "2026-11-28T21:00:00+00:00",
    )
    assert store.by_platform_id("pve", "v1") == created
    assert store.backups(vm=VM) == [created] and store.backups(state="intent") == []


def test_a_failed_backup_keeps_its_reason_and_a_deleted_one_its_history(store: BackupStore) -> None:
    store.register_intent("run-1", "b", VM, "")
    store.register_failed("run-1", "b", "vzdump failed: No space left on device")
    failed = store.backup("run-1", "b")
    assert failed is not None and (failed.state, failed.error) == (
        "failed",
        "vzdump failed: No space left on device",
    )
    store.register_intent("run-2", "b", VM, "")
    store.register_created("run-2", "b", info("v2", "2026-11-29T21:00:00+00:00"))
    store.mark_deleted("pve", "v2")
    assert store.backup("run-2", "b").state == "deleted"  # type: ignore[union-attr]


def test_verifications_are_appended_and_the_latest_verdict_is_on_the_backup(store: BackupStore) -> None:
    store.register_intent("run-1", "b", VM, "")
    backup = store.register_created("run-1", "b", info("v1", "2026-11-28T21:00:00+00:00"))
    first = store.start_verification(backup, "verify-1", "verify:web-1")
    store.set_copy(first, "qemu/105")
    check = RestoreCheck("qemu/105", True, "agent", 12.5, (ProbeResult("health", True, 0, "ok", 2),))
    done = store.finish_verification(first, result="ok", check=check)
    assert (done.result, done.how, done.boot_s, done.copy_id, done.ok) == (
        "ok",
        "agent",
        12.5,
        "qemu/105",
        True,
    )
    assert probe_results(done.probes) == check.probes
    verified = store.backup("run-1", "b")
    assert verified is not None and verified.verified and verified.verified_how == "agent"
    assert verified.verified_at == done.finished_at
    assert store.last_verified() == {("pve", "qemu/100"): verified}

    second = store.start_verification(verified, "verify-2", "verify:web-1")
    store.finish_verification(second, result="error", error="PVE unreachable")
    assert store.backup("run-1", "b").verify_result == "ok", "an error is no verdict"  # type: ignore[union-attr]
    third = store.start_verification(verified, "verify-3", "verify:web-1")
    store.finish_verification(third, result="failed", error="backup file vda.qcow2 changed since the backup")
    latest = store.backup("run-1", "b")
    assert latest is not None and (latest.verify_result, latest.verified_how) == ("failed", "restore")
    assert [v.result for v in store.verifications(latest)] == ["ok", "error", "failed"]
    assert store.last_verified() == {}
    with pytest.raises(FactStoreError):
        store.finish_verification(third, result="running")
