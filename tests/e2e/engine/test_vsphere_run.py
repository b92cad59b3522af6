"""A full ``PatchRun`` against our vCenter simulator (tests/simulators/vcsim), on the embedded Temporal dev server.

A 4-host cluster and four VMs: the hosts are patched through the platform (HostPatchManager, depot
URLs) one at a time, then every guest is snapshotted in vSphere, patched through the real ``local``
channel into its fake Debian guest (patchwave_lab/fakeguest, one ``[guests.overrides]`` per VM), health-checked,
and the one whose new demo-app breaks its health check is rolled back: its vSphere snapshot is reverted
(the launcher's snapshot hook restores the fake guest's "disk", tests/support/snapshot_disks.py) and it
is healthy again on the old versions.

The witnesses are the simulator's own records (maintenance transitions, host builds, SOAP calls, the
vCenter task list read with pyVmomi), the fake guests' logs and the fact store — not our progress notes.

With ``[policy] backup = "always"`` (and the guests' unattended-upgrades in ``coexist`` mode: paused
before the backup, restored after health) every guest is first backed up by a full clone into the site's
``backup_folder`` (the vSphere backup mechanism, providers/vsphere/backups.py), recorded in the fact
store before its snapshot; a clone that fails fails its VM without touching it.

Fault runs: a CreateSnapshot_Task that fails leaves its VM FAILED with nothing installed; an
InstallHostPatchV2_Task that fails takes its host out of maintenance and halts the run before any
guest is touched.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.backups import BackupStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from patchwave_lab.fakeguest import FakeGuest
from providers.base import VmRef
from tests.simulators.vcsim.launcher import Vcsim, start_or_skip
from tests.support.loopback import unused_port
from tests.support.snapshot_disks import SnapshotDisks
from tests.support.testbed import INSTALLED, UPGRADES, fake_guest_tables

pytestmark = pytest.mark.e2e

OLD, NEW = "21930508", "23307199"
DEPOT = "https://depot.example/VMware-ESXi-7.0U3-sim-depot.zip"
PASSWORD_ENV = "PW_TEST_VCSIM_PASSWORD"
HOSTS = [f"DC0_C0_H{i}" for i in range(4)]
VMS = [f"DC0_C0_RP0_VM{i}" for i in range(4)]
TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
BROKEN = "DC0_C0_RP0_VM2"  # its demo-app 1.1 fails the health check: rolled back


@dataclass
class Bed:
    sim: Vcsim
    root: Path
    guests: dict[str, FakeGuest]
    disks: SnapshotDisks

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"


@pytest.fixture
def sim() -> Iterator[Vcsim]:
    sim = start_or_skip(
        "-host", "4", "-vm", "4", "-balance", "-host-reboot-ms", "300", "-esx-build", OLD, "-patch-to", f"7.0.3:{NEW}"
    )  # fmt: skip
    yield sim
    sim.stop()


@pytest.fixture
def bed(tmp_path: Path, sim: Vcsim) -> Iterator[Bed]:
    guests = {
        name: FakeGuest.create(
            tmp_path / "guests" / name,
            installed=INSTALLED,
            repo=UPGRADES,
            broken={"demo-app": UPGRADES["demo-app"]} if name == BROKEN else {},
            timers=TIMERS,  # unattended-upgrades' timers (the fake systemctl's): paused in coexist mode
        )
        for name in VMS
    }
    disks = SnapshotDisks(guests)
    bed = Bed(sim, tmp_path, guests, disks)
    write_config(bed)
    with disks.vcsim_hook() as url:
        sim.set_hook(url)
        yield bed
        sim.set_hook("")


def write_config(bed: Bed, *, backups: bool = False) -> None:
    """The run's config; ``backups``: hosts off, a full clone of every VM before its snapshot."""
    table = bed.sim.provider_table()
    guest_tables = fake_guest_tables({name: guest.root for name, guest in bed.guests.items()})
    bed.config.write_text(
        f"""
[state]
dir = "{bed.root / "state"}"
[temporal]
mode = "embedded"
address = "127.0.0.1:{unused_port()}"
retention = "3d"
[logging]
format = "json"
level = "info"
[providers.vc]
kind = "vsphere"
host = "{table["host"]}"
port = {table["port"]}
user = "{table["user"]}"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{table["ca_file"]}"
task_timeout = "2m"
{'backup_folder = "patchwave-backups"' if backups else ""}
[targets]
names = {VMS!r}
[policy]
concurrency = 2
failure_budget = 2  # a failed and a rolled-back VM (count_rolled_back) stay within it
snapshot_ttl = "2h"
health_deadline = "3s"
patch_timeout = "2m"
default_vm_duration = "1m"
{'backup = "always"' if backups else ""}
[backup]
keep = 1
timeout = "2m"
[autoupdates]
mode = "{"coexist" if backups else "unmanaged"}"
[hosts]
enabled = {"false" if backups else "true"}
scope = "all"
patch = "platform"
reboot = "if-required"
evacuate = true
depot_urls = ["{DEPOT}"]
default_duration = "5m"
{guest_tables}""".replace("'", '"')
    )


@pytest.fixture
async def session(bed: Bed) -> AsyncIterator[Session]:
    settings = load_settings(bed.config, environ={PASSWORD_ENV: bed.sim.password})
    async with Session(settings) as running:
        assert running.engine.embedded_server is not None and running.engine.embedded_server.owned
        yield running


async def patch_run(running: Session, run_id: str) -> RunSummary:
    request = RunRequest(run_id=run_id, config_digest=running.settings.digest, requested_by="e2e")
    return await watch(await start_run(running.client, request), lambda _progress: None, interval_s=0.5)


def vcenter_tasks(sim: Vcsim) -> list[tuple[str, str, str]]:
    """(task name, entity moref, state) of vCenter's recent tasks, read with plain pyVmomi."""
    from pyVim.connect import Disconnect, SmartConnect

    context = ssl.create_default_context(cafile=str(sim.cert_file))
    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password, sslContext=context)
    try:
        return [
            (str(t.info.descriptionId), getattr(t.info.entity, "_moId", ""), str(t.info.state))
            for t in si.content.taskManager.recentTask
        ]
    finally:
        Disconnect(si)


def vm_moref(running: Session, name: str) -> str:
    return next(v.ref.id for v in running.context.provider("vc").inventory().vms if v.ref.name == name)


async def test_hosts_one_at_a_time_then_guests_with_one_rollback(bed: Bed, session: Session) -> None:
    running, sim = session, bed.sim
    summary = await patch_run(running, "run-vc")

    # Hosts: every one patched and rebooted onto the new build, never two in maintenance at once.
    assert [(h.host.name, h.status, h.build_after, h.rebooted) for h in summary.hosts] == [
        (name, StepStatus.SUCCEEDED, NEW, True) for name in HOSTS
    ]
    record = sim.maintenance()
    assert record["max_concurrent"] == {"DC0_C0": 1}
    assert [(e["event"], e["host"]) for e in record["events"]] == [
        (event, name) for name in HOSTS for event in ("enter", "exit")
    ]
    assert record["in_maintenance"] == [] and running.facts.hosts_in_maintenance() == []
    assert {h["name"]: h["build"] for h in sim.hosts()} == dict.fromkeys(HOSTS, NEW)

    # Guests: three patched and kept, the broken one reverted to its snapshot and healthy again.
    outcomes = {o.vm.name: o for o in summary.vms}
    assert {n: o.status for n, o in outcomes.items()} == {
        n: StepStatus.ROLLED_BACK if n == BROKEN else StepStatus.SUCCEEDED for n in VMS
    }
    assert "unhealthy after patching" in outcomes[BROKEN].error
    assert "demo-app 1.1 is broken" in outcomes[BROKEN].error
    assert summary.status == "failed" and summary.exit_code == 1  # a rollback is reported, not hidden
    for name, guest in bed.guests.items():
        assert guest.upgrades() == 1, name  # each guest patched exactly once
        want = INSTALLED if name == BROKEN else UPGRADES
        assert guest.installed() == want, name

    # vSphere: one run snapshot per VM; exactly one revert, of the broken VM, to its recorded snapshot.
    provider = running.context.provider("vc")
    morefs = {name: vm_moref(running, name) for name in VMS}
    for name in VMS:
        snaps = provider.list_snapshots(VmRef("vc", morefs[name], name))
        assert [(s.id, s.ownership.run_id) for s in snaps] == [(outcomes[name].snapshot_id, "run-vc")]
    reverts = [(entity, state) for task, entity, state in vcenter_tasks(sim) if "revert" in task.lower()]
    assert reverts == [(morefs[BROKEN], "success")]
    assert sim.stats().get("RevertToSnapshot_Task") == 1
    assert bed.disks.reverts == [(BROKEN, outcomes[BROKEN].snapshot_id)]
    assert sorted(bed.disks.created) == sorted((n, outcomes[n].snapshot_id) for n in VMS)
    assert provider.get_vm(VmRef("vc", morefs[BROKEN], BROKEN)).power.value == "running"  # powered on again

    # The fact store: snapshots kept/reverted; every host step finished before the first guest snapshot.
    facts = running.facts
    records = {r.vm.name: r.state for r in facts.snapshots(run_id="run-vc")}
    assert records == {n: "reverted" if n == BROKEN else "kept" for n in VMS}
    history = facts.step_history("run-vc")
    host_steps = {h.step_id for h in summary.hosts}
    last_host = max(r.id for r in history if r.step_id in host_steps)
    first_snapshot = min(r.id for r in history if r.action == "snapshot")
    assert last_host < first_snapshot
    assert facts.get_run("run-vc").status == "failed"


async def test_a_failed_snapshot_stops_that_vm_before_anything_is_installed(
    bed: Bed, session: Session
) -> None:
    victim = "DC0_C0_RP0_VM1"
    bed.sim.add_fault(
        f"method=CreateSnapshot_Task,target={victim},fault=InsufficientResourcesFault,"
        "msg=datastore1 has no room for the snapshot delta"
    )
    summary = await patch_run(session, "run-snapfail")

    outcomes = {o.vm.name: o for o in summary.vms}
    failed = outcomes[victim]
    assert failed.status is StepStatus.FAILED and failed.snapshot_id == ""
    assert "snapshot failed" in failed.error and "no room for the snapshot delta" in failed.error
    assert bed.guests[victim].upgrades() == 0 and bed.guests[victim].patches() == []
    assert bed.guests[victim].installed() == INSTALLED
    assert [
        a for a in bed.guests[victim].logs.joinpath("log").read_text().splitlines() if "upgrade" in a
    ] == []
    history = session.facts.step_history("run-snapfail", failed.step_id)
    assert "patch" not in {r.action for r in history}  # not even an intent to patch
    assert session.facts.snapshots(run_id="run-snapfail") and all(
        r.snapshot_id == "" for r in session.facts.snapshots(run_id="run-snapfail") if r.vm.name == victim
    )
    # The others went on: the failure and the rollback are within the budget (failure_budget = 2).
    assert {n: o.status for n, o in outcomes.items() if n != victim} == {
        n: StepStatus.ROLLED_BACK if n == BROKEN else StepStatus.SUCCEEDED for n in VMS if n != victim
    }
    assert summary.status == "failed" and not summary.halted_reason


async def test_a_failed_host_install_leaves_maintenance_and_halts_before_any_guest(
    bed: Bed, session: Session
) -> None:
    bed.sim.add_fault(
        "method=InstallHostPatchV2_Task,target=DC0_C0_H1,fault=PatchInstallFailed,msg=VIB checksum mismatch"
    )
    summary = await patch_run(session, "run-hostfail")

    hosts = {h.host.name: h for h in summary.hosts}
    assert summary.status == "halted" and "DC0_C0_H1" in summary.halted_reason
    assert summary.exit_code == 3
    assert hosts["DC0_C0_H0"].status is StepStatus.SUCCEEDED and hosts["DC0_C0_H0"].build_after == NEW
    assert (
        hosts["DC0_C0_H1"].status is StepStatus.FAILED and "VIB checksum mismatch" in hosts["DC0_C0_H1"].error
    )
    assert set(hosts) == {"DC0_C0_H0", "DC0_C0_H1"}  # H2 and H3 never touched
    record = bed.sim.maintenance()
    assert [(e["event"], e["host"]) for e in record["events"]] == [
        ("enter", "DC0_C0_H0"), ("exit", "DC0_C0_H0"), ("enter", "DC0_C0_H1"), ("exit", "DC0_C0_H1"),
    ]  # fmt: skip
    assert record["in_maintenance"] == [] and session.facts.hosts_in_maintenance() == []
    builds = {h["name"]: h["build"] for h in bed.sim.hosts()}
    assert builds == {"DC0_C0_H0": NEW, "DC0_C0_H1": OLD, "DC0_C0_H2": OLD, "DC0_C0_H3": OLD}

    # No guest was touched: every VM skipped with the halt reason, no snapshot, nothing installed.
    assert {o.vm.name: o.status for o in summary.vms} == dict.fromkeys(VMS, StepStatus.SKIPPED)
    assert all("not attempted" in o.error for o in summary.vms)
    assert bed.sim.stats().get("CreateSnapshot_Task", 0) == 0 and bed.disks.created == []
    assert session.facts.snapshots(run_id="run-hostfail") == []
    assert all(g.upgrades() == 0 and g.installed() == INSTALLED for g in bed.guests.values())
    assert session.facts.get_run("run-hostfail").status == "halted"


async def test_every_vm_is_backed_up_by_a_full_clone_before_its_snapshot_and_a_failed_clone_stops_it(
    bed: Bed,
) -> None:
    write_config(bed, backups=True)
    victim = "DC0_C0_RP0_VM3"
    bed.sim.add_fault(
        f"method=CloneVM_Task,target={victim},fault=InsufficientResourcesFault,msg=backup datastore full"
    )
    settings = load_settings(bed.config, environ={PASSWORD_ENV: bed.sim.password})
    async with Session(settings) as running:
        summary = await patch_run(running, "run-vc-backup")
        outcomes = {o.vm.name: o for o in summary.vms}
        assert {n: o.status for n, o in outcomes.items()} == {
            n: StepStatus.FAILED
            if n == victim
            else StepStatus.ROLLED_BACK
            if n == BROKEN
            else StepStatus.SUCCEEDED
            for n in VMS
        }, [(o.vm.name, o.error) for o in summary.vms]
        failed = outcomes[victim]
        assert failed.error.startswith("not patched: the backup its policy requires failed"), failed.error
        assert "backup datastore full" in failed.error and failed.snapshot_id == ""
        assert bed.guests[victim].upgrades() == 0 and bed.guests[victim].installed() == INSTALLED

        backups = {r.vm.name: r for r in BackupStore(running.facts).backups(state="created")}
        assert set(backups) == set(VMS) - {victim}
        assert bed.sim.stats().get("CloneVM_Task") == len(
            VMS
        )  # one full clone each; the failed one not retried
        for name, record in backups.items():
            assert record.location.startswith("patchwave-backups/"), record
            history = [r.action for r in running.facts.step_history("run-vc-backup", outcomes[name].step_id)]
            assert (
                history.index("autoupdates_pause") < history.index("backup_create") < history.index("snapshot")
                < history.index("patch") < history.index("autoupdates_restore")
            ), history  # fmt: skip
        # every updater is running again, the failed VM's too (paused before its backup failed)
        for name, guest in bed.guests.items():
            assert guest.units() == dict.fromkeys(TIMERS, "enabled active"), name
            assert not (guest.root / "var/lib/patchwave/autoupdates.paused").exists(), name
        # the clones are not patch targets: the site's inventory leaves the backup folder out
        assert {v.ref.name for v in running.context.provider("vc").inventory().vms} == set(VMS)
