"""`patchwave doctor`: leftovers of dead runs are found, shown, and cleaned only after confirmation.

* libvirt ``test:///default`` (one driver state per process, shared by every connection, so the
  test, the run's worker and the doctor see the same snapshots): a live run waits at its canary
  approval gate holding a recorded, in-TTL snapshot — left alone; a snapshot carrying our ownership
  description that no run recorded — found, kept when the confirmation is declined, deleted when it
  is given. After the run, its kept snapshots are left alone within the TTL and are orphans past it.
* our vcsim launcher: a host a dead run left in maintenance (the state a killed worker leaves: the
  fact store says "in", the platform agrees, no workflow runs) — the CLI lists it (exit 1), a "no"
  changes nothing, a "yes" takes the host out of maintenance (checked from the simulator's side) and
  records "exited"; a stale intent of that run is recorded as abandoned.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.engine.payloads import ApprovalRequest
from orchestrator.engine.runs import progress, start_run
from orchestrator.engine.session import Session
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.facts.actions import Action
from orchestrator.facts.details import Abandoned, HostPatchIntent
from orchestrator.facts.store import FactStore
from orchestrator.model import Plan, RunRequest, host_step_id, vm_step_id
from providers.base import SnapshotOwnership, VmRef
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import GuestSpec, build, domain_xml

pytestmark = pytest.mark.e2e

DEFAULT_URI = "test:///default"
MAIN = "pw-doctor-main"


@pytest.fixture
def default_driver() -> Iterator[dict[str, str]]:
    """test:///default with a second running domain; every snapshot made here is removed afterwards."""
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    conn = libvirt.open(DEFAULT_URI)
    main_uuid = str(uuid.uuid4())
    dom = conn.defineXML(domain_xml(MAIN, main_uuid))
    dom.create()
    try:
        yield {"test": conn.lookupByName("test").UUIDString(), MAIN: main_uuid}
    finally:
        for name in ("test", MAIN):
            domain = conn.lookupByName(name)
            for snap in domain.listAllSnapshots():
                snap.delete()
        dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        conn.close()


def ghost_snapshot(provider, vm: VmRef) -> str:
    """A snapshot with patchwave's ownership that no run recorded (e.g. its fact store was lost)."""
    now = datetime.now(UTC)
    owner = SnapshotOwnership(
        "run-ghost", vm_step_id(vm), now.isoformat(timespec="seconds"), (now + timedelta(days=3)).isoformat()
    )
    return provider.create_snapshot(vm, "pw-run-ghost-1", owner.to_description()).id


async def test_an_unrecorded_owned_snapshot_is_deleted_after_confirmation_never_under_a_live_runs_lease(
    tmp_path: Path, default_driver: dict[str, str]
) -> None:
    specs = (GuestSpec("test", ring="canary"), GuestSpec(MAIN))
    bed = build(
        tmp_path / "bed", specs, port=unused_port(), uri=DEFAULT_URI, uuids=default_driver, ttl="2h",
        rings={"canary": "approval = true", "main": ""},
    )  # fmt: skip
    settings = load_settings(bed.config)
    canary, main = (VmRef("td", default_driver[n], n) for n in ("test", MAIN))
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest("run-live", settings.digest, requested_by="e2e"))
        for _ in range(600):
            current = await progress(handle)
            if current is not None and current.waiting_for == "canary":
                break
            await asyncio.sleep(0.1)
        assert current is not None and current.waiting_for == "canary"
        provider = running.context.provider("td")
        [live_snapshot] = provider.list_snapshots(canary)
        assert (
            running.facts.snapshot("run-live", live_snapshot.ownership.step_id).snapshot_id
            == live_snapshot.id
        )
        ghost = ghost_snapshot(provider, main)

        asked: list[str] = []
        declined = await operations.doctor(settings, confirm=lambda f: asked.append(f.target) or False)
        assert [(f.kind, f.target, f.run_id, f.snapshot_id) for f in declined.findings] == [
            ("orphan_snapshot", f"td/{MAIN}", "run-ghost", ghost)
        ]
        assert "not recorded" in declined.findings[0].reason and "unknown run" in declined.findings[0].reason
        assert asked == [f"td/{MAIN}"] and declined.fixed == () and declined.unresolved == declined.findings
        assert [s.id for s in provider.list_snapshots(main)] == [ghost]

        confirmed = await operations.doctor(settings, confirm=lambda f: True)
        # the live run holds the lease of MAIN (no two operations on one VM): left alone while it runs
        [held] = confirmed.fixed
        assert (held.finding.snapshot_id, held.done) == (ghost, False), held
        assert "run run-live is active" in held.note and "left alone" in held.note, held
        assert [s.id for s in provider.list_snapshots(main)] == [ghost]
        assert [s.id for s in provider.list_snapshots(canary)] == [live_snapshot.id]  # the live run's: kept

        await handle.execute_update(PatchRun.approve, ApprovalRequest())
        summary = await handle.result()
        assert summary.status == "succeeded", summary

        # The run is over, its leases released: the ghost is deleted after confirmation, journaled.
        after = await operations.doctor(settings, confirm=lambda f: True)
        assert [(r.finding.snapshot_id, r.done, r.note) for r in after.fixed] == [(ghost, True, "deleted")]
        assert ghost not in [s.id for s in provider.list_snapshots(main)]
        assert [s.id for s in provider.list_snapshots(canary)] == [live_snapshot.id]
        journal = [(r.action, r.phase, r.ok) for r in running.facts.step_history("run-ghost", "doctor")]
        assert journal == [  # the attempt the lease refused is on record too
            ("doctor_orphan_snapshot", "intent", None),
            ("doctor_orphan_snapshot", "result", False),
            ("doctor_orphan_snapshot", "intent", None),
            ("doctor_orphan_snapshot", "result", True),
        ]

        # The run is over: its kept snapshots stay within the TTL and are orphans after it.
        assert (await operations.doctor(settings)).findings == ()
        expires = max(
            datetime.fromisoformat(r.expires_at) for r in running.facts.snapshots(run_id="run-live")
        )
        later = await operations.doctor(settings, confirm=lambda f: True, now=expires + timedelta(minutes=1))
        assert sorted(f.target for f in later.findings) == sorted([f"td/{MAIN}", "td/test"])
        assert all("expired" in f.reason for f in later.findings) and later.unresolved == ()
        assert provider.list_snapshots(canary) == provider.list_snapshots(main) == []
        assert {r.state for r in running.facts.snapshots(run_id="run-live")} == {"deleted"}


# ------------------------------------------------------------------------------ vcsim


PASSWORD_ENV = "PW_DOCTOR_VC_PASSWORD"


@pytest.fixture
def sim():
    from tests.simulators.vcsim.launcher import start_or_skip

    simulator = start_or_skip("-host", "2", "-vm", "2", "-balance")
    yield simulator
    simulator.stop()


def patchwave(config: Path, *args: str, stdin: str = "", password: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), PASSWORD_ENV: password}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(config), "--log-format", "json", "doctor", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_host_left_in_maintenance_by_a_dead_run_is_taken_out_after_confirmation(
    tmp_path: Path, sim
) -> None:
    from tests.simulators.vcsim.launcher import open_vsphere

    table = sim.provider_table()
    config = tmp_path / "patchwave.toml"
    config.write_text(f"""
[state]
dir = "{tmp_path / "state"}"
[temporal]
address = "127.0.0.1:{unused_port()}"
[providers.vc]
kind = "vsphere"
host = "{table["host"]}"
port = {table["port"]}
user = "{table["user"]}"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{table["ca_file"]}"
[targets]
names = ["*"]
""")
    provider = open_vsphere(sim, site="vc")
    try:
        host = provider.inventory().hosts[0].ref
        provider.enter_maintenance(host, evacuate=True, timeout=60)  # what the dead run did
    finally:
        provider.close()
    facts = FactStore(tmp_path / "state" / "facts.db")
    try:
        plan = Plan(plan_id="p-dead", created_at="2026-01-01T00:00:00+00:00", sites=("vc",), host_phase=(),
                    waves=(), blocked=(), failure_budget=0)  # fmt: skip
        facts.create_run("run-dead", plan=plan, config_digest="", requested_by="e2e")
        facts.set_run_status("run-dead", "running")
        facts.record_maintenance("run-dead", host, "entering")
        facts.record_maintenance("run-dead", host, "in")
        step = host_step_id(host)
        facts.record_intent(
            "run-dead", step, Action.HOST_PATCH, target=str(host), detail=HostPatchIntent("1")
        )
    finally:
        facts.close()

    listed = patchwave(config, password=sim.password)
    assert listed.returncode == 1, listed.stderr[-2000:]
    assert "maintenance_leftover" in listed.stdout and host.name in listed.stdout
    assert "stale_intent" in listed.stdout and "Traceback" not in listed.stderr

    declined = patchwave(config, "--fix", stdin="n\nn\n", password=sim.password)
    assert declined.returncode == 1, declined.stderr[-2000:]
    assert sim.maintenance()["in_maintenance"] == [host.name]

    fixed = patchwave(config, "--fix", stdin="y\ny\n", password=sim.password)
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
    assert f"fixed: {host}: exited maintenance" in fixed.stdout
    assert sim.maintenance()["in_maintenance"] == []
    assert [e["event"] for e in sim.maintenance()["events"]] == ["enter", "exit"]

    facts = FactStore(tmp_path / "state" / "facts.db")
    try:
        assert facts.hosts_in_maintenance() == []
        doctor = [(r.action, r.phase, r.ok) for r in facts.step_history("run-dead", "doctor")]
        assert doctor[:2] == [
            ("doctor_maintenance_leftover", "intent", None),
            ("doctor_maintenance_leftover", "result", True),
        ]
        [*_, abandoned] = facts.step_history("run-dead", step)
        assert (abandoned.phase, abandoned.ok, abandoned.error.startswith("abandoned")) == (
            "result",
            False,
            True,
        )
        assert (abandoned.action, abandoned.detail) == (Action.HOST_PATCH, Abandoned())
    finally:
        facts.close()

    again = patchwave(config, password=sim.password)
    assert again.returncode == 0 and "leftovers of runs that are no longer running: 0" in again.stdout
