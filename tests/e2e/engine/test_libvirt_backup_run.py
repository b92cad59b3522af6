"""A run with ``[policy] backup = "always"`` on libvirt: every VM gets a full backup through libvirt's
backup job (``virDomainBackupBegin``, push mode, one qcow2 per disk in ``backup_dir``) before its
snapshot, recorded in the fact store; retention keeps one; a backup that cannot be written fails its
VM without touching it.

Two disposable TCG domains on the real ``qemu:///system`` (tests/support/tcg_domains.py; the test
driver has no backup job) with fake Debian guests reached through the ``local`` channel, and the
embedded Temporal dev server. The lab (tests/e2e/lab/test_backups.py) verifies backups of a real
Debian guest by booting them; here it is the run's wiring on the real libvirt API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.backups import BackupStore
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from providers.libvirt.backup_files import read_manifest, sha256_of
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.tcg_domains import URI, disposable_domains
from tests.support.testbed import INSTALLED, UPGRADES, DriverBed, GuestSpec, build

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[DriverBed]:
    with disposable_domains(tmp_path / "disks", "pw-backup") as domains:
        specs = tuple(GuestSpec(name) for name in sorted(domains))
        made = build(tmp_path / "bed", specs, port=unused_port(), uri=URI, uuids=domains, ttl="2h", budget=2)
        text = made.config.read_text()
        text = text.replace(f'uri = "{URI}"\n', f'uri = "{URI}"\nbackup_dir = "{tmp_path / "backups"}"\n', 1)
        text = text.replace("[policy]\n", '[policy]\nbackup = "always"\n', 1)
        made.config.write_text(text + '\n[backup]\nkeep = 1\ntimeout = "2m"\n')
        yield made


async def _run(bed: DriverBed, run_id: str) -> RunSummary:
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        request = RunRequest(run_id=run_id, config_digest=settings.digest, requested_by="e2e")
        return await watch(await start_run(running.client, request), lambda _p: None, interval_s=0.3)


async def test_each_vm_is_backed_up_by_libvirts_backup_job_before_its_snapshot(bed: DriverBed) -> None:
    summary = await _run(bed, "run-lv-backup")
    assert {o.vm.name: o.status for o in summary.vms} == dict.fromkeys(bed.guests, StepStatus.SUCCEEDED), [
        (o.vm.name, o.error) for o in summary.vms
    ]
    assert all(g.installed() == UPGRADES for g in bed.guests.values())
    facts = FactStore(load_settings(bed.config).state.facts_path)
    try:
        records = {r.vm.name: r for r in BackupStore(facts).backups(state="created")}
        assert set(records) == set(bed.guests)
        for outcome in summary.vms:
            record = records[outcome.vm.name]
            directory = Path(record.location)
            manifest = read_manifest(directory)
            assert manifest is not None and manifest.vm_name == outcome.vm.name, record
            [disk] = manifest.disks
            assert disk.target == "vda" and sha256_of(directory / disk.file) == disk.sha256
            assert record.size > 0 and record.checksum
            actions = [r.action for r in facts.step_history("run-lv-backup", outcome.step_id)]
            assert actions.index("backup_create") < actions.index("snapshot") < actions.index("patch")
    finally:
        facts.close()


async def test_a_backup_that_cannot_be_written_fails_the_vm_without_touching_it(bed: DriverBed) -> None:
    backups = bed.root.parent / "backups"
    backups.parent.mkdir(parents=True, exist_ok=True)
    backups.write_text("a file where the backup directory should be\n")
    summary = await _run(bed, "run-lv-nobackup")
    for outcome in summary.vms:
        assert outcome.status is StepStatus.FAILED, (outcome.vm.name, outcome.status, outcome.error)
        assert outcome.error.startswith("not patched: the backup its policy requires failed"), outcome.error
        assert outcome.snapshot_id == ""
    assert all(g.upgrades() == 0 and g.installed() == INSTALLED for g in bed.guests.values())
