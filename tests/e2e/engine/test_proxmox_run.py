"""A full ``PatchRun`` against the PVE simulator (tests/simulators/pvesim), on the embedded Temporal dev server.

Three nodes: each enters HA maintenance (``ha-manager crm-command node-maintenance`` over the
simulator's real SSH), is patched with ``[hosts] patch = "ssh"`` (apt over SSH to *that* node: each
simulated node has its own SSH port, so the config carries per-host ``[hosts.overrides]``), rebooted
through the API because a newer kernel was installed, verified and taken out of maintenance — one
node at a time. Then the guests are snapshotted in PVE, patched through the real ``local`` channel into
their fake Debian guests (patchwave_lab/fakeguest), health-checked, and the one whose new demo-app is broken
is rolled back to its PVE snapshot (the simulator's rollback restores the fake guest's "disk", see
tests/support/snapshot_disks.py).

The witnesses are the simulator's event log (maintenance, reboots, apt runs, snapshots), its task list
read over its API, the fake guests' logs and the fact store.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.model import RunRequest, RunSummary, StepStatus
from patchwave_lab.fakeguest import FakeGuest
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.simulators.pvesim.harness import FAST
from tests.support.loopback import unused_port
from tests.support.snapshot_disks import SnapshotDisks
from tests.support.testbed import INSTALLED, UPGRADES, fake_guest_tables

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
NODES = ["pve1", "pve2", "pve3"]
VMS = {"web-1": 100, "db-1": 101, "app-1": 103}  # qemu guests of the simulator (db-1 is HA-managed)
BROKEN = "app-1"
OLD_KERNEL, NEW_KERNEL = "6.14.8-2-pve", "6.14.11-1-pve"
RUN = "run-pve"


@dataclass
class Bed:
    sim: Simulator
    root: Path
    guests: dict[str, FakeGuest]
    disks: SnapshotDisks

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.sim.state()["events"] if e["kind"] in kinds]


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    config = SimConfig(task_duration=0.02, migrate_duration=0.05, ha_delay=0.05, reboot_offline=0.2)
    with Simulator(config) as sim:
        guests = {
            name: FakeGuest.create(
                tmp_path / "guests" / name,
                installed=INSTALLED,
                repo=UPGRADES,
                broken={"demo-app": UPGRADES["demo-app"]} if name == BROKEN else {},
            )
            for name in VMS
        }
        disks = SnapshotDisks(guests)
        sim.cluster.listeners.append(disks.pvesim_listener())
        bed = Bed(sim, tmp_path, guests, disks)
        write_config(bed)
        yield bed


def write_config(bed: Bed) -> None:
    sim = bed.sim
    key = sim.client_key(bed.root / "id_ed25519")
    known = sim.write_known_hosts(bed.root / "known_hosts")
    fast = "\n".join(f"{k} = {v}" for k, v in FAST.items())
    first = sim.ssh_servers["pve1"].port
    host_overrides = "".join(
        f'[hosts.overrides."{node}"]\nssh = {{ port = {sim.ssh_servers[node].port} }}\n' for node in NODES
    )
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
[providers.pve]
kind = "proxmox"
host = "127.0.0.1"
port = {sim.port}
user = "root@pam"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{sim.ca_file}"
maintenance = "ha"
{fast}
ssh = {{ user = "root", host = "127.0.0.1", port = {first}, key_file = "{key}", known_hosts = "{known}" }}
[targets]
names = {list(VMS)!r}
[policy]
concurrency = 2
failure_budget = 1
snapshot_ttl = "2h"
health_deadline = "3s"
patch_timeout = "2m"
default_vm_duration = "1m"
[hosts]
enabled = true
scope = "all"
patch = "ssh"
reboot = "if-required"
evacuate = true
default_duration = "5m"
ssh = {{ user = "root", host = "127.0.0.1", key_file = "{key}", known_hosts = "{known}" }}
{host_overrides}
{guest_tables}""".replace("'", '"')
    )


@pytest.fixture
async def session(bed: Bed) -> AsyncIterator[Session]:
    settings = load_settings(bed.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    async with Session(settings) as running:
        assert running.engine.embedded_server is not None and running.engine.embedded_server.owned
        yield running


async def patch_run(running: Session, run_id: str) -> RunSummary:
    request = RunRequest(run_id=run_id, config_digest=running.settings.digest, requested_by="e2e")
    return await watch(await start_run(running.client, request), lambda _progress: None, interval_s=0.5)


def apt_verbs(command: str) -> list[str]:
    """The apt-get operations in one shell command line ("update", "-s dist-upgrade", ...)."""
    found = re.findall(r"apt-get (?:-q )?(?:-o \S+ )*(-s |-y )?(update|upgrade|dist-upgrade)\b", command)
    return [("-s " if flag == "-s " else "") + verb for flag, verb in found]


def pve_api(sim: Simulator) -> Any:
    """The simulator's API through plain proxmoxer (not patchwave's adapter)."""
    from proxmoxer import ProxmoxAPI

    return ProxmoxAPI(
        "127.0.0.1", port=sim.port, user="root@pam", password=ROOT_PASSWORD, verify_ssl=str(sim.ca_file)
    )


async def test_nodes_one_at_a_time_then_guests_with_one_rollback(bed: Bed, session: Session) -> None:
    running, sim = session, bed.sim
    summary = await patch_run(running, RUN)

    # Nodes: each patched over its own SSH port, rebooted onto the new kernel, in name order.
    assert [(h.host.name, h.status, h.build_after, h.rebooted) for h in summary.hosts] == [
        (node, StepStatus.SUCCEEDED, NEW_KERNEL, True) for node in NODES
    ]
    state = sim.state()["nodes"]
    assert {n: (s["kernel"], s["boot_count"], s["ha_maintenance"]) for n, s in state.items()} == {
        n: (NEW_KERNEL, 1, False) for n in NODES
    }
    upgrades = bed.events("apt_upgrade")
    assert [(e["subject"], e["changed"] > 0) for e in upgrades] == [(n, True) for n in NODES]  # once each
    assert all(v[0] == v[1] for n in NODES for v in sim.cluster.nodes[n].packages.values())
    for node in NODES:  # over the node's own SSH server: refresh the lists, then a full upgrade (PVE's rule)
        apt = [c for e in bed.events("ssh_command") if e["subject"] == node for c in apt_verbs(e["command"])]
        assert apt == ["update", "-s dist-upgrade", "dist-upgrade"], (node, apt)

    # The event log: maintenance strictly one node at a time; no reboot while another is in maintenance.
    in_maintenance: set[str] = set()
    order = []
    for event in bed.events("maintenance_enabled", "maintenance_disabled", "node_reboot"):
        node = event["subject"]
        if event["kind"] == "maintenance_enabled":
            assert not in_maintenance, f"{node} entered maintenance while {in_maintenance} still were"
            in_maintenance.add(node)
            order.append(node)
        elif event["kind"] == "maintenance_disabled":
            in_maintenance.discard(node)
        else:
            assert event["maintenance"] == [node], event  # only the rebooting node is in maintenance
            assert event["running_guests"] == [], event  # evacuated first
    assert order == NODES and not in_maintenance
    assert [e["subject"] for e in bed.events("node_reboot")] == NODES
    assert running.facts.hosts_in_maintenance() == []

    # Guests: two patched and kept, the broken one rolled back to its PVE snapshot and healthy again.
    outcomes = {o.vm.name: o for o in summary.vms}
    assert {n: o.status for n, o in outcomes.items()} == {
        n: StepStatus.ROLLED_BACK if n == BROKEN else StepStatus.SUCCEEDED for n in VMS
    }
    assert "demo-app 1.1 is broken" in outcomes[BROKEN].error
    assert summary.status == "failed" and summary.exit_code == 1
    for name, guest in bed.guests.items():
        assert guest.upgrades() == 1, name
        assert guest.installed() == (INSTALLED if name == BROKEN else UPGRADES), name

    # PVE, read over its API: one run snapshot per guest; exactly one rollback task, of the broken
    # guest, that ended OK; the guest runs again.
    api = pve_api(sim)
    resources = {r["name"]: r for r in api.cluster.resources.get(type="vm")}
    for name, vmid in VMS.items():
        node = resources[name]["node"]
        snaps = [s["name"] for s in api.nodes(node).qemu(vmid).snapshot.get() if s["name"] != "current"]
        assert snaps == [outcomes[name].snapshot_id], name
    rollbacks = [t for t in api.cluster.tasks.get() if t["type"] == "qmrollback"]
    assert [(t["id"], t["status"]) for t in rollbacks] == [(str(VMS[BROKEN]), "OK")]
    assert resources[BROKEN]["status"] == "running"
    assert bed.disks.reverts == [(BROKEN, outcomes[BROKEN].snapshot_id)]

    # The fact store: snapshots kept/reverted; every node step finished before the first snapshot.
    facts = running.facts
    assert {r.vm.name: r.state for r in facts.snapshots(run_id=RUN)} == {
        n: "reverted" if n == BROKEN else "kept" for n in VMS
    }
    history = facts.step_history(RUN)
    host_steps = {h.step_id for h in summary.hosts}
    assert max(r.id for r in history if r.step_id in host_steps) < min(
        r.id for r in history if r.action == "snapshot"
    )
