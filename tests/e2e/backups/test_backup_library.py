"""The backup library (orchestrator.backups) over the Proxmox adapter and the PVE simulator (real HTTPS,
real SQLite fact store): what the engine's activities will call, and what ends up on record.

The restore-verify of a real guest (libvirt, a real boot) is tests/e2e/lab/test_backups.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backups import BackupDeps, prune, sweep_copies, take, verify
from orchestrator.facts.backups import BackupStore
from orchestrator.facts.store import FactStore
from providers.backups import BackupOwnership, RestoreProbe
from providers.base import VmRef
from providers.errors import OperationRefused, ProviderUnavailable
from providers.proxmox.provider import ProxmoxProvider, open_provider
from providers.timing import utc_now_iso
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for

pytestmark = pytest.mark.e2e

WEB = VmRef("pve", "qemu/100", "web-1")
MARKER = "/var/tmp/pw-backup-marker"
HEALTHY = RestoreProbe("marker", ("/bin/sh", "-c", f"test -f {MARKER}"), interval=0.05)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02), ssh=False) as sim:
        yield sim


@pytest.fixture
def provider(sim: Simulator) -> Iterator[ProxmoxProvider]:
    provider = open_provider(settings_for(sim, backup_storage="backup-nfs"))
    yield provider
    provider.close()


@pytest.fixture
def deps(provider: ProxmoxProvider, tmp_path: Path) -> Iterator[BackupDeps]:
    facts = FactStore(tmp_path / "facts.db")
    yield BackupDeps(provider, facts)
    facts.close()


def journal(deps: BackupDeps, run_id: str) -> list[tuple[str, str, bool | None]]:
    return [(r.action, r.phase, r.ok) for r in deps.facts.step_history(run_id)]


def copies(sim: Simulator) -> list[int]:
    return [g.vmid for g in sim.cluster.guests.values() if g.name.startswith("pw-rv-")]


# ------------------------------------------------------------------------------------ take


def test_take_records_the_backup_and_a_retry_takes_no_second_one(deps: BackupDeps, sim: Simulator) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    assert record.state == "created" and record.backup_id.startswith("backup-nfs:backup/vzdump-qemu-100-")
    assert (record.location, record.target, record.size > 0) == (record.backup_id, "backup-nfs", True)
    again = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    assert again.backup_id == record.backup_id and again.id == record.id
    assert len(sim.cluster.storages["backup-nfs"].volumes) == 1, "a delivered-twice activity makes one backup"
    assert (
        journal(deps, "run-1") == [("backup_create", "intent", None), ("backup_create", "result", True)] * 2
    )


def test_a_failed_backup_is_on_record_with_the_platforms_reason(deps: BackupDeps, sim: Simulator) -> None:
    sim.inject("storage_full", storage="backup-nfs")
    with pytest.raises(OperationRefused) as caught:
        take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    assert caught.value.code == "backup_failed" and "No space left on device" in caught.value.message
    record = BackupStore(deps.facts).backup("run-1", "backup:web-1")
    assert record is not None and record.state == "failed" and "No space left on device" in record.error
    assert journal(deps, "run-1") == [("backup_create", "intent", None), ("backup_create", "result", False)]
    assert sim.cluster.guests[100].lock is None, "the guest is not left locked"


def test_a_vzdump_task_that_fails_inside_is_a_failed_backup(deps: BackupDeps, sim: Simulator) -> None:
    sim.inject("task_fail", task_type="vzdump", vmid=100, message="job errors")
    with pytest.raises(OperationRefused, match="job errors"):
        take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    assert BackupStore(deps.facts).backup("run-1", "backup:web-1").state == "failed"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------ verify


def test_verify_restores_an_isolated_copy_probes_it_and_destroys_it(deps: BackupDeps, sim: Simulator) -> None:
    sim.cluster.guests[100].files[MARKER] = "before\n"
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    del sim.cluster.guests[100].files[MARKER]  # changed after the backup: the copy must have it
    result = verify(deps, record, run_id="verify-1", step_id="verify:web-1", probes=[HEALTHY], timeout=10)
    assert (result.result, result.how, result.copy_id.startswith("qemu/")) == ("ok", "agent", True)
    assert [p["name"] for p in result.probes] == ["marker"] and result.probes[0]["ok"]
    assert copies(sim) == [], "the copy is destroyed"
    restored = [e for e in sim.cluster.events if e[1] == "restored"]
    assert len(restored) == 1
    backup = BackupStore(deps.facts).backup("run-1", "backup:web-1")
    assert backup is not None and (backup.verify_result, backup.verified_how) == ("ok", "agent")
    assert journal(deps, "verify-1") == [
        ("backup_copy_restore", "intent", None),
        ("backup_copy_restore", "result", True),
        ("backup_probe", "result", True),
        ("backup_copy_destroy", "intent", None),
        ("backup_copy_destroy", "result", True),
    ]


def test_a_copy_that_fails_its_probe_is_a_failed_verification(deps: BackupDeps, sim: Simulator) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    result = verify(deps, record, run_id="verify-1", step_id="verify:web-1", probes=[HEALTHY], timeout=1)
    assert result.result == "failed" and not result.probes[0]["ok"] and result.probes[0]["attempts"] > 1
    assert copies(sim) == []
    assert BackupStore(deps.facts).backup("run-1", "backup:web-1").verify_result == "failed"  # type: ignore[union-attr]


def test_a_restore_the_platform_fails_is_a_failed_verification_and_leaves_nothing(
    deps: BackupDeps, sim: Simulator
) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    sim.inject("task_fail", task_type="qmrestore", message="unable to restore VM - archive is corrupt")
    result = verify(deps, record, run_id="verify-1", step_id="verify:web-1", timeout=10)
    assert result.result == "failed" and "archive is corrupt" in result.error
    assert copies(sim) == [] and all(g.name for g in sim.cluster.guests.values()), "no half-restored VM left"


def test_a_transient_error_is_no_verdict_and_the_retry_verifies(deps: BackupDeps, sim: Simulator) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    sim.inject("http_error", status=503, message="proxy down", method="POST", path=r"^/nodes/[^/]+/qemu$")
    with pytest.raises(ProviderUnavailable):
        verify(deps, record, run_id="verify-1", step_id="verify:web-1", timeout=10)
    store = BackupStore(deps.facts)
    assert [v.result for v in store.verifications(record)] == ["error"]
    assert store.backup("run-1", "backup:web-1").verify_result == ""  # type: ignore[union-attr]
    assert verify(deps, record, run_id="verify-1", step_id="verify:web-1", timeout=10).result == "ok"


def test_a_copy_left_by_a_crashed_attempt_is_destroyed_before_the_next(
    deps: BackupDeps, provider: ProxmoxProvider, sim: Simulator
) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    (info,) = provider.list_backups(WEB)
    owner = BackupOwnership("verify-1", "verify:web-1", WEB.id, utc_now_iso(), "restore", info.id)
    leftover = provider.restore_copy(info, ownership=owner, timeout=10)  # the crashed attempt's copy
    assert verify(deps, record, run_id="verify-1", step_id="verify:web-1", timeout=10).result == "ok"
    assert copies(sim) == []
    history = journal(deps, "verify-1")
    assert history[:2] == [("backup_copy_destroy", "intent", None), ("backup_copy_destroy", "result", True)]
    destroyed = [
        r.detail.copy_id for r in deps.facts.step_history("verify-1") if r.action == "backup_copy_destroy"
    ]
    assert destroyed[0] == leftover.id


def test_a_backup_that_is_gone_fails_verification_without_a_restore(
    deps: BackupDeps, provider: ProxmoxProvider, sim: Simulator
) -> None:
    record = take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    provider.delete_backup(provider.list_backups(WEB)[0], timeout=10)
    result = verify(deps, record, run_id="verify-1", step_id="verify:web-1", timeout=10)
    assert result.result == "failed" and "no longer" in result.error
    assert not [e for e in sim.cluster.events if e[1] == "restored"]


def test_sweep_removes_copies_nobody_will_come_back_for(deps: BackupDeps, provider: ProxmoxProvider) -> None:
    take(deps, WEB, run_id="run-1", step_id="backup:web-1", timeout=10)
    (info,) = provider.list_backups(WEB)
    owner = BackupOwnership(
        "crashed", "verify:web-1", WEB.id, "2020-01-01T00:00:00+00:00", "restore", info.id
    )
    provider.restore_copy(info, ownership=owner, timeout=10)
    young = BackupOwnership("running", "verify:web-1", WEB.id, utc_now_iso(), "restore", info.id)
    provider.restore_copy(info, ownership=young, timeout=10)
    swept = sweep_copies(deps, run_id="sweep-1", step_id="sweep", timeout=10)
    assert [c.ownership.run_id for c in swept if c.ownership] == ["crashed"]
    assert [c.ownership.run_id for c in provider.list_restored_copies() if c.ownership] == ["running"]


# ------------------------------------------------------------------------------------ prune


def test_prune_keeps_the_newest_and_the_newest_verified_and_never_touches_others(
    deps: BackupDeps, provider: ProxmoxProvider, sim: Simulator
) -> None:
    foreign = provider._session.post("nodes/pve1/vzdump", vmid=100, storage="backup-nfs", remove=0)
    provider._tasks.wait(foreign, timeout=10)  # someone's own vzdump: no patchwave notes
    records = [take(deps, WEB, run_id=f"run-{i}", step_id="backup:web-1", timeout=10) for i in range(4)]
    assert verify(deps, records[0], run_id="verify-0", step_id="verify:web-1", timeout=10).result == "ok"
    deleted = prune(deps, WEB, keep=2, run_id="prune-1", step_id="prune:web-1", timeout=10)
    assert [b.id for b in deleted] == [records[1].backup_id]
    left = {b.id for b in provider.list_backups(WEB)}
    assert left == {records[0].backup_id, records[2].backup_id, records[3].backup_id} | {
        b.id for b in provider.list_backups(WEB) if b.ownership is None
    }
    assert len([b for b in provider.list_backups(WEB) if b.ownership is None]) == 1, "not ours: kept"
    store = BackupStore(deps.facts)
    assert [r.state for r in store.backups(vm=WEB)] == ["created", "deleted", "created", "created"]
    assert journal(deps, "prune-1") == [("backup_delete", "intent", None), ("backup_delete", "result", True)]
    assert prune(deps, WEB, keep=2, run_id="prune-2", step_id="prune:web-1", timeout=10) == []
    with pytest.raises(ValueError):
        prune(deps, WEB, keep=0, run_id="prune-3", step_id="prune:web-1", timeout=10)
