"""The safeguards around a VM's patch, in a real ``PatchRun`` against the PVE simulator (real HTTPS, the
embedded Temporal dev server, the real fact store): the guest's automatic updater paused, a full
``vzdump`` backup before the snapshot (``[policy] backup``), the updater restored after health — and a
backup that fails (the simulator's ``storage_full`` fault) fails the VM without patching it.

Then ``patchwave backups list|verify`` (a real ``qmrestore`` into a network-less copy, probed through
the simulated agent, destroyed) and the compliance report's backup columns, through the CLI.

The guests are fake Debian chroots (patchwave_lab/fakeguest) reached with the ``local`` channel; their
fake ``systemctl`` keeps unattended-upgrades' timers (``apt-daily.timer``, ``apt-daily-upgrade.timer``)
as unit files, so the pause and the restore are observable: the timers' state and every start/stop.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from orchestrator import autoupdates, operations
from orchestrator.cli import main as cli_main
from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.actions import Action
from orchestrator.facts.backups import BackupStore
from orchestrator.facts.details import AutoUpdatePauseDetail
from orchestrator.facts.store import FactStore
from orchestrator.guests.channel import LocalChannel
from orchestrator.logs import SdkLineHandler
from orchestrator.model import Plan, RunRequest, RunSummary, StepStatus
from patchwave_lab.fakeguest import HEALTH_COMMAND, FakeGuest
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.simulators.pvesim.harness import FAST
from tests.support.loopback import unused_port
from tests.support.snapshot_disks import SnapshotDisks
from tests.support.testbed import INSTALLED, UPGRADES

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
VMS = {"web-1": 100, "db-1": 101}
TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
MARKER = "var/lib/patchwave/autoupdates.paused"


@dataclass
class Bed:
    sim: Simulator
    root: Path
    guests: dict[str, FakeGuest]

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"


@pytest.fixture
def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    monkeypatch.setenv(PASSWORD_ENV, ROOT_PASSWORD)  # for the CLI
    with Simulator(SimConfig(task_duration=0.02), ssh=False) as sim:
        sim.cluster.guests[100].tags.append("critical")  # web-1 is marked critical
        guests = {
            name: FakeGuest.create(
                tmp_path / "guests" / name, installed=INSTALLED, repo=UPGRADES, timers=TIMERS
            )
            for name in VMS
        }
        sim.cluster.listeners.append(SnapshotDisks(guests).pvesim_listener())
        bed = Bed(sim, tmp_path, guests)
        bed.config.write_text(config_text(bed))
        yield bed


def config_text(bed: Bed, *, health: str = "") -> str:
    sim, fast = bed.sim, "\n".join(f"{k} = {v}" for k, v in FAST.items())
    overrides = "".join(
        f'[guests.overrides."{name}"]\nlocal_root = "{guest.root}"\n' for name, guest in bed.guests.items()
    )
    health = health or f'[[health]]\nname = "demo-app"\nkind = "command"\ncommand = "{HEALTH_COMMAND}"\n'
    return f"""
[state]
dir = "{bed.root / "state"}"
[temporal]
mode = "embedded"
address = "127.0.0.1:{unused_port()}"
[logging]
format = "json"
[providers.pve]
kind = "proxmox"
host = "127.0.0.1"
port = {sim.port}
user = "root@pam"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{sim.ca_file}"
backup_storage = "backup-nfs"
{fast}
[targets]
names = {list(VMS)!r}
[policy]
concurrency = 2
failure_budget = 5
snapshot_ttl = "2h"
health_deadline = "3s"
patch_timeout = "2m"
default_vm_duration = "1m"
backup = "always"
[backup]
keep = 1
timeout = "1m"
verify_timeout = "1m"
[autoupdates]
mode = "coexist"
[hosts]
enabled = false
[guests]
channel = "local"
{overrides}
{health}timeout = "5s"
retries = 0
interval = "1s"
""".replace("'", '"')


@pytest.fixture(autouse=True)
def cli_logging() -> Iterator[None]:
    """The in-process CLI configures logging onto pytest's captured streams; undo it afterwards."""
    yield
    sdk = logging.getLogger("temporalio")
    for handler in [h for h in sdk.handlers if isinstance(h, SdkLineHandler)]:
        sdk.removeHandler(handler)
    structlog.reset_defaults()


@pytest.fixture
async def session(bed: Bed) -> AsyncIterator[Session]:
    async with Session(load_settings(bed.config)) as running:
        yield running


async def patch_run(running: Session, run_id: str) -> RunSummary:
    request = RunRequest(run_id=run_id, config_digest=running.settings.digest, requested_by="e2e")
    return await watch(await start_run(running.client, request), lambda _progress: None, interval_s=0.5)


def actions(running: Session, run_id: str, step_id: str) -> list[str]:
    return [f"{r.action}:{r.phase}" for r in running.facts.step_history(run_id, step_id)]


def assert_updater_restored(guest: FakeGuest) -> None:
    assert guest.units() == dict.fromkeys(TIMERS, "enabled active")
    assert not (guest.root / MARKER).exists()
    calls = guest.systemctl_calls()
    assert [c for c in calls if c.startswith("stop")] == [f"stop {t}" for t in TIMERS]
    assert [c for c in calls if c.startswith("start")] == [f"start {t}" for t in TIMERS]
    assert calls.index(f"stop {TIMERS[-1]}") < calls.index(f"start {TIMERS[0]}")


async def test_a_run_pauses_the_updater_backs_up_before_the_snapshot_and_restores(
    bed: Bed, session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = await patch_run(session, "run-safe")
    outcomes = {o.vm.name: o for o in summary.vms}
    assert {n: o.status for n, o in outcomes.items()} == dict.fromkeys(VMS, StepStatus.SUCCEEDED)
    backups = {r.vm.name: r for r in BackupStore(session.facts).backups()}
    for name, guest in bed.guests.items():
        step = outcomes[name].step_id
        journal = actions(session, "run-safe", step)
        order = [
            "autoupdates_pause:intent", "autoupdates_pause:result", "backup_create:intent",
            "backup_create:result", "snapshot:intent", "snapshot:result", "patch:intent",
            "verify_health:result", "autoupdates_restore:intent", "autoupdates_restore:result",
        ]  # fmt: skip
        positions = [journal.index(a) for a in order]
        assert positions == sorted(positions), (name, journal)
        assert guest.installed() == UPGRADES
        assert_updater_restored(guest)
        record = backups[name]
        assert (record.run_id, record.step_id, record.state) == ("run-safe", step, "created")
        assert record.backup_id.startswith(f"backup-nfs:backup/vzdump-qemu-{VMS[name]}-") and record.size > 0
    assert len(bed.sim.cluster.storages["backup-nfs"].volumes) == len(VMS)

    # A second run backs up again; retention (keep = 1) deletes the first run's backups, journalled.
    again = await patch_run(session, "run-safe-2")
    assert {o.status for o in again.vms} == {StepStatus.SUCCEEDED}
    store = BackupStore(session.facts)
    assert {(r.run_id, r.state) for r in store.backups()} == {
        ("run-safe", "deleted"),
        ("run-safe-2", "created"),
    }
    newest = {r.vm.name: r for r in store.backups(state="created")}
    volumes = bed.sim.cluster.storages["backup-nfs"].volumes
    assert sorted(volumes) == sorted(r.backup_id for r in newest.values())
    for outcome in again.vms:
        assert "backup_delete:result" in actions(session, "run-safe-2", outcome.step_id)
    await session.__aexit__(None, None, None)  # the CLI below opens the state directory itself

    base = ["-c", str(bed.config), "--log-format", "json"]
    assert cli_main([*base, "backups", "list", "--output", "json"]) == 0
    listed = capsys.readouterr().out
    assert all(backups[n].backup_id in listed and newest[n].backup_id in listed for n in VMS)
    # probes in the restored copy: a check its simulated agent can run (the copy is PVE's, not the chroot)
    bed.config.write_text(
        config_text(
            bed, health='[[health]]\nname = "os"\nkind = "command"\ncommand = "test -f /etc/os-release"\n'
        )
    )
    assert cli_main([*base, "backups", "verify", "--vm", "web-1"]) == 0
    facts = FactStore(bed.root / "state" / "facts.db")
    verdicts = {(r.vm.name, r.run_id): r.verify_result for r in BackupStore(facts).backups()}
    assert verdicts == {("web-1", "run-safe"): "", ("db-1", "run-safe"): "",
                        ("web-1", "run-safe-2"): "ok", ("db-1", "run-safe-2"): ""}  # fmt: skip
    assert not [g for g in bed.sim.cluster.guests.values() if g.name.startswith("pw-rv-")], "copy destroyed"
    assert cli_main([*base, "backups", "verify", "--vm", "nosuch"]) == 2
    capsys.readouterr()

    assert cli_main([*base, "report", "--format", "csv"]) == 0
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert (rows["web-1"]["critical"], rows["web-1"]["backup_missing"]) == ("true", "false")
    verified = {r.vm.name: r for r in BackupStore(facts).backups(state="created")}
    assert rows["web-1"]["backup_verified_at"] == verified["web-1"].verified_at != ""
    assert (rows["db-1"]["critical"], rows["db-1"]["backup_verified_at"]) == ("false", "")
    facts.close()


async def test_a_failed_backup_fails_the_vm_without_patching_it(bed: Bed, session: Session) -> None:
    bed.sim.inject("storage_full", storage="backup-nfs")
    summary = await patch_run(session, "run-full")
    for outcome in summary.vms:
        assert outcome.status is StepStatus.FAILED
        assert "not patched: the backup its policy requires failed" in outcome.error
        assert "No space left on device" in outcome.error
        journal = actions(session, "run-full", outcome.step_id)
        assert "snapshot:intent" not in journal and "patch:intent" not in journal
        assert journal[-2:] == ["autoupdates_restore:intent", "autoupdates_restore:result"]
        guest = bed.guests[outcome.vm.name]
        assert guest.installed() == INSTALLED and guest.upgrades() == 0
        assert_updater_restored(guest)
    assert summary.exit_code == 1
    assert {r.state for r in BackupStore(session.facts).backups()} == {"failed"}
    assert not session.facts.snapshots(run_id="run-full")


async def test_doctor_restores_the_updater_a_dead_run_left_paused(bed: Bed) -> None:
    """What a worker killed between the pause and the restore leaves: the run "running" in the fact
    store with no workflow, the pause journalled, the guest's marker and stopped timers."""
    settings = load_settings(bed.config)
    web = bed.guests["web-1"]
    step = "vm:pve:qemu/100"
    facts = FactStore(settings.state.facts_path)
    plan = Plan(plan_id="p-dead", created_at="2026-01-01T00:00:00+00:00", sites=("pve",), host_phase=(),
                waves=(), blocked=(), failure_budget=0)  # fmt: skip
    facts.create_run("run-dead", plan=plan, config_digest="", requested_by="e2e")
    facts.set_run_status("run-dead", "running")
    facts.record_intent(
        "run-dead", step, Action.AUTOUPDATES_PAUSE, target="pve/web-1", detail=AutoUpdatePauseDetail()
    )
    paused = autoupdates.pause(LocalChannel(root=web.root), "run-dead", step, wait_s=5)
    facts.record_result("run-dead", step, Action.AUTOUPDATES_PAUSE, ok=True, target="pve/web-1",
                        detail=AutoUpdatePauseDetail(paused.state, paused.stopped))  # fmt: skip
    facts.close()
    assert web.units() == dict.fromkeys(TIMERS, "enabled inactive") and (web.root / MARKER).exists()

    shown = await operations.doctor(settings)
    assert [(f.kind, f.target, f.run_id, f.step_id) for f in shown.findings] == [
        ("paused_updater", "pve/web-1", "run-dead", step)
    ]
    fixed = await operations.doctor(settings, confirm=lambda f: True)
    assert [(r.done, r.note) for r in fixed.fixed] == [(True, f"restored (started {', '.join(TIMERS)})")]
    assert_updater_restored(web)
    assert (await operations.doctor(settings)).findings == ()  # the restore is on record for the dead run
