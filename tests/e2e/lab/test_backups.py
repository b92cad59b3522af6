"""Backups verified by restore on the real Debian guest lab (libvirt/QEMU TCG), through the backup
library the engine will call: a running guest is backed up with libvirt's backup job, the backup is
verified by booting a *transient copy with no network interface* and running demo-app's health
check through qemu-guest-agent, retention prunes, and a corrupted backup fails verification clearly.

One lab guest (pw-lab-1) for the module; backups go to a pytest temp dir. The lab is shared: run
this file only under ``flock /tmp/patchwave-lab.lock``. Timings are printed (run with ``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backups import BackupDeps, prune, take, verify
from orchestrator.facts.backups import BackupRecord, BackupStore
from orchestrator.facts.store import FactStore
from patchwave_lab import control as lab
from patchwave_lab import domain
from patchwave_lab.state import LabState
from providers.backups import RestoreProbe
from providers.base import VmRef
from providers.libvirt import provider as adapter
from providers.libvirt.backup_files import read_manifest, sha256_of

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.slow]

MARKER = "/var/tmp/pw-backup-marker"
SHELL = ("/bin/sh", "-c")
#: demo-app's health check as patchwave_lab/configs/lab.toml runs it (wget is busybox's applet; the
#: agent's PATH has no /usr/local/bin, where the lab image links it)
HEALTH = RestoreProbe(
    "demo-app", (*SHELL, "busybox wget -q -O- http://127.0.0.1:8080/health"), timeout=10, interval=2
)
NO_NETWORK = RestoreProbe("no-network", (*SHELL, 'test "$(ls /sys/class/net)" = lo'), timeout=10)
MARKER_PROBE = RestoreProbe("backup-time-files", (*SHELL, f"test -f {MARKER}"), timeout=10)
TIMEOUT = 600.0  # a backup, a restore; TCG under load boots in 10-60 s
PROBE_TIMEOUT = 240.0  # boot to agent plus the retries of the probes


def _timing(what: str, started: float) -> float:
    seconds = time.monotonic() - started
    print(f"\n[lab timing] {what}: {seconds:.1f}s")
    return seconds


@pytest.fixture(scope="module")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state_dir = tmp_path_factory.mktemp("lab-backups")
    started = time.monotonic()
    state = lab.up(state_dir, guests=1)
    _timing("lab up (1 guest)", started)
    yield state
    lab.down(state_dir)


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backups")


@pytest.fixture(scope="module")
def provider(lab_state: LabState, backup_dir: Path) -> Iterator[adapter.LibvirtProvider]:
    settings = adapter.parse_settings("lab", {"uri": lab_state.uri, "backup_dir": str(backup_dir)})
    provider = adapter.open_provider(settings)
    yield provider
    leftovers = [c.name for c in provider.list_restored_copies()]
    provider.close()
    assert leftovers == [], "restored copies were left behind"


@pytest.fixture(scope="module")
def deps(provider: adapter.LibvirtProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupDeps]:
    facts = FactStore(tmp_path_factory.mktemp("facts") / "facts.db")
    yield BackupDeps(provider, facts)
    facts.close()


@pytest.fixture(scope="module")
def guest(provider: adapter.LibvirtProvider) -> VmRef:
    return next(v.ref for v in provider.inventory().vms if v.ref.name == "pw-lab-1")


@pytest.fixture(scope="module")
def verified(
    deps: BackupDeps, provider: adapter.LibvirtProvider, guest: VmRef, backup_dir: Path
) -> BackupRecord:
    """The first backup, taken of the running guest and verified by restore (timed)."""
    assert provider.guest_exec(guest, [*SHELL, f"echo before > {MARKER}; sync"], timeout=60).ok
    started = time.monotonic()
    record = take(deps, guest, run_id="run-1", step_id="backup:pw-lab-1", timeout=TIMEOUT)
    _timing(f"backup of the running guest ({record.size / 2**20:.0f} MiB)", started)
    assert provider.guest_exec(guest, [*SHELL, f"rm -f {MARKER}; sync"], timeout=60).ok
    started = time.monotonic()
    result = verify(
        deps, record, run_id="verify-1", step_id="verify:pw-lab-1",
        probes=[HEALTH, NO_NETWORK, MARKER_PROBE], timeout=TIMEOUT, probe_timeout=PROBE_TIMEOUT,
    )  # fmt: skip
    _timing(f"restore-verify (copy booted to agent in {result.boot_s}s)", started)
    assert result.result == "ok", result
    return BackupStore(deps.facts).backup("run-1", "backup:pw-lab-1")  # type: ignore[return-value]


def test_a_running_guest_is_backed_up_and_verified_by_a_networkless_copy(
    verified: BackupRecord,
    deps: BackupDeps,
    provider: adapter.LibvirtProvider,
    backup_dir: Path,
    lab_state: LabState,
) -> None:
    assert (verified.state, verified.verify_result, verified.verified_how) == ("created", "ok", "agent")
    directory = backup_dir / verified.backup_id
    manifest = read_manifest(directory)
    assert (
        manifest is not None
        and verified.checksum == manifest.checksum
        and verified.checksum.startswith("sha256:")
    )
    (disk,) = manifest.disks
    assert disk.target == "vda" and sha256_of(directory / disk.file) == disk.sha256, (
        "the restore did not write the backup"
    )
    (attempt,) = BackupStore(deps.facts).verifications(verified)
    assert [(p["name"], p["ok"]) for p in attempt.probes] == [
        ("demo-app", True),
        ("no-network", True),
        ("backup-time-files", True),
    ]
    assert attempt.probes[0]["output"] == "ok", "demo-app answered /health in the copy"
    assert list((backup_dir / ".copies").iterdir()) == [], "the copy's overlay is gone with it"
    conn = domain.connect(lab_state.uri)
    try:
        assert [d.name() for d in conn.listAllDomains(0) if d.name().startswith("pw-rv-")] == []
    finally:
        conn.close()
    assert lab.health_ok(lab_state.guests[0]), "the guest itself is untouched and healthy"


def test_retention_prunes_old_backups_but_keeps_the_newest_verified(
    verified: BackupRecord,
    deps: BackupDeps,
    provider: adapter.LibvirtProvider,
    guest: VmRef,
    backup_dir: Path,
) -> None:
    started = time.monotonic()
    newer = [take(deps, guest, run_id=f"run-{i}", step_id="backup:pw-lab-1", timeout=TIMEOUT) for i in (2, 3)]
    _timing("two more backups", started)
    deleted = prune(deps, guest, keep=1, run_id="prune-1", step_id="prune:pw-lab-1", timeout=TIMEOUT)
    assert [b.id for b in deleted] == [newer[0].backup_id]
    assert sorted(b.id for b in provider.list_backups(guest)) == sorted(
        [verified.backup_id, newer[1].backup_id]
    )
    assert not (backup_dir / newer[0].backup_id).exists()
    states = {r.backup_id: r.state for r in BackupStore(deps.facts).backups(vm=guest)}
    assert states == {
        verified.backup_id: "created",
        newer[0].backup_id: "deleted",
        newer[1].backup_id: "created",
    }


def test_a_corrupted_backup_fails_verification_clearly_before_anything_boots(
    verified: BackupRecord,
    deps: BackupDeps,
    provider: adapter.LibvirtProvider,
    guest: VmRef,
    backup_dir: Path,
) -> None:
    record = take(deps, guest, run_id="run-4", step_id="backup:pw-lab-1", timeout=TIMEOUT)
    disk = backup_dir / record.backup_id / "vda.qcow2"
    with open(disk, "r+b") as fh:  # one flipped byte in the middle of the data
        fh.seek(disk.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    started = time.monotonic()
    result = verify(
        deps,
        record,
        run_id="verify-4",
        step_id="verify:pw-lab-1",
        probes=[HEALTH],
        timeout=TIMEOUT,
        probe_timeout=PROBE_TIMEOUT,
    )
    _timing("verification of a corrupted backup", started)
    assert result.result == "failed" and result.copy_id == ""
    assert "vda.qcow2 changed since the backup" in result.error
    stored = BackupStore(deps.facts).backup("run-4", "backup:pw-lab-1")
    assert stored is not None and stored.verify_result == "failed"
    history = [(r.action, r.phase, r.ok) for r in deps.facts.step_history("verify-4")]
    assert history == [("backup_copy_restore", "intent", None), ("backup_copy_restore", "result", False)]
