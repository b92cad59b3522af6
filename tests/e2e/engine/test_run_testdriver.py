"""A rollout end to end on the embedded default: a real ``temporal server start-dev`` (SQLite file in
the state directory), in-process workers, libvirt's test driver and fake Debian guests patched
through the real ``local`` channel.

pw-web-2's new demo-app version breaks its health check: the snapshot recorded for it is reverted
in libvirt (the fake guest's "disk" follows the revert, see tests/support/guest_disks.py) and the fact
store says ROLLED_BACK. pw-web-1 stays patched (SUCCEEDED) and its snapshot is kept until the TTL;
the cleanup step of a later time deletes both run snapshots after checking their ownership.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.engine.activities import Activities
from orchestrator.engine.payloads import ApprovalRequest, CleanupInput, RunProgress
from orchestrator.engine.runs import progress, rollback, start_run, watch
from orchestrator.engine.session import Session
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.errors import LeaseHeld
from orchestrator.model import RunRequest, StepStatus
from providers.base import VmRef
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN = "run-testdriver"


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2", broken_after_patch=True))
    return build(tmp_path / "bed", specs, port=unused_port(), budget=1, ttl="2h")


@pytest.fixture
async def session(bed: DriverBed) -> AsyncIterator[tuple[Session, DiskBridge]]:
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        assert running.engine.embedded_server is not None and running.engine.embedded_server.owned
        yield running, bridge


async def test_a_broken_patch_is_reverted_and_a_good_one_is_kept(bed: DriverBed, session) -> None:
    running, bridge = session
    seen: list[RunProgress] = []
    request = RunRequest(run_id=RUN, config_digest=running.settings.digest, requested_by="e2e")
    summary = await watch(await start_run(running.client, request), seen.append, interval_s=0.2)

    outcomes = {o.vm.name: o for o in summary.vms}
    good, bad = outcomes["pw-web-1"], outcomes["pw-web-2"]
    assert (good.status, bad.status) == (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK)
    assert "unhealthy after patching" in bad.error and "demo-app 1.1 is broken" in bad.error
    assert summary.status == "failed" and summary.exit_code == 1  # a rollback is reported, not hidden
    assert seen and seen[-1].phase == "done"

    # libvirt: each VM has exactly the one snapshot of this run; pw-web-2 was reverted to it.
    provider = running.context.provider("td")
    for name in ("pw-web-1", "pw-web-2"):
        snaps = provider.list_snapshots(VmRef("td", bed.uuids[name], name))
        assert [(s.id, s.ownership.run_id) for s in snaps] == [(outcomes[name].snapshot_id, RUN)]
    assert set(bridge.reverts) == {"pw-web-2"}

    # The guests: pw-web-1 keeps the upgrade; pw-web-2 is back on the old versions, healthy.
    assert bed.guests["pw-web-1"].installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
    assert bed.guests["pw-web-2"].installed() == {"demo-app": "1.0", "openssl": "3.0.11"}
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1]

    # The fact store: outcomes, snapshot registry, run status.
    facts = running.facts
    assert facts.outcome(RUN, good.step_id).status is StepStatus.SUCCEEDED
    assert facts.outcome(RUN, bad.step_id).status is StepStatus.ROLLED_BACK
    records = {r.vm.name: r for r in facts.snapshots(run_id=RUN)}
    assert {n: r.state for n, r in records.items()} == {"pw-web-1": "kept", "pw-web-2": "reverted"}
    assert facts.get_run(RUN).status == "failed"

    # Kept until the TTL: a cleanup before it deletes nothing; one after it deletes both, ours only.
    activities = Activities(running.context)
    expires = datetime.fromisoformat(records["pw-web-1"].expires_at)
    early = activities.run.cleanup_expired_snapshots(
        CleanupInput("td", (expires - timedelta(minutes=1)).isoformat())
    )
    assert early.deleted == () and early.refused == ()
    late = activities.run.cleanup_expired_snapshots(
        CleanupInput("td", (expires + timedelta(minutes=5)).isoformat())
    )
    assert sorted(late.deleted) == sorted(f"{n}/{outcomes[n].snapshot_id}" for n in ("pw-web-1", "pw-web-2"))
    for name in ("pw-web-1", "pw-web-2"):
        assert provider.list_snapshots(VmRef("td", bed.uuids[name], name)) == []
    assert {r.state for r in facts.snapshots(run_id=RUN)} == {"deleted"}


async def test_the_embedded_server_keeps_its_state_in_the_state_directory(bed: DriverBed, session) -> None:
    running, _bridge = session
    request = RunRequest(run_id="run-state", config_digest=running.settings.digest, requested_by="e2e")
    await watch(await start_run(running.client, request), lambda p: None, interval_s=0.5)
    assert (bed.state / "temporal.db").stat().st_size > 0
    assert (bed.state / "facts.db").exists()
    described = await running.client.get_workflow_handle("run-state").describe()
    assert described.status is not None and described.status.name == "COMPLETED"


async def test_rollback_reverts_only_the_recorded_snapshot_of_the_named_vm(bed: DriverBed, session) -> None:
    running, bridge = session
    request = RunRequest(run_id="run-rb", config_digest=running.settings.digest, requested_by="e2e")
    summary = await watch(await start_run(running.client, request), lambda p: None, interval_s=0.5)
    kept = {o.vm.name: o for o in summary.vms}["pw-web-1"]
    assert kept.status is StepStatus.SUCCEEDED and "pw-web-1" not in bridge.reverts

    outcomes = await rollback(running.client, "run-rb", ("pw-web-1",))

    assert [(o.vm.name, o.status, o.snapshot_id) for o in outcomes] == [
        ("pw-web-1", StepStatus.ROLLED_BACK, kept.snapshot_id)
    ]
    assert "pw-web-1" in bridge.reverts
    assert bed.guests["pw-web-1"].installed() == {"demo-app": "1.0", "openssl": "3.0.11"}
    assert running.facts.outcome("run-rb", kept.step_id).status is StepStatus.ROLLED_BACK
    assert running.facts.snapshot("run-rb", kept.step_id).state == "reverted"


async def test_a_second_run_is_refused_while_one_is_still_running(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "gate", specs, port=unused_port(), rings={"canary": "approval = true", "main": ""})
    settings = load_settings(bed.config)
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest("run-first", settings.digest))
        for _ in range(600):
            current = await progress(handle)
            if current is not None and current.waiting_for == "canary":
                break
            await asyncio.sleep(0.1)
        with pytest.raises(LeaseHeld) as refused:
            await operations.run(
                settings, RunRequest("run-second", settings.digest), on_progress=lambda p: None
            )
        # the canary is done (its lease released with its outcome); pw-web-1 waits for the approval
        assert refused.value.exit_code == 2 and refused.value.holder == "run-first"
        assert "run run-first is active on these targets: pw-web-1 (held since" in str(refused.value)
        assert running.facts.get_run("run-second") is None
        await handle.execute_update(PatchRun.approve, ApprovalRequest())
        assert (await handle.result()).status == "succeeded"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_cli_exits_3_when_the_failure_budget_halts_the_run(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary", broken_after_patch=True), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "halt", specs, port=unused_port(), rings={"canary": "", "main": ""})
    done = cli("-c", str(bed.config), "--log-format", "json", "run", "--run-id", "run-halt", cwd=tmp_path)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "halted: failure budget exhausted" in done.stderr and "Traceback" not in done.stderr
    assert "pw-web-1" in done.stdout and "skipped" in done.stdout
    assert bed.guests["pw-web-1"].patches() == []


def test_patchwave_demo_testdriver_runs_a_rollout_on_the_embedded_default(tmp_path: Path) -> None:
    done = cli("demo", "--testdriver", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ": succeeded" in done.stdout and "test/test" in done.stdout
    assert "(removed)" in done.stderr
