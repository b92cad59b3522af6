"""Operations on the same machine exclude each other: a lease per VM and host in the fact store.

A run leases its VMs before its first side effect and releases each one when its outcome is on
record; a rollback, a snapshot cleanup and the doctor take leases too; another holder refuses
them (exit 2, the holder named) or, with ``--wait``, is waited for. A snapshot whose run is not
finished is never deleted. Real processes, the real embedded server, libvirt's test driver and
fake guests (tests/support/testbed.py): the run here runs in this process (its workers, its
server); the competing command is a real ``patchwave`` process that attaches to that server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.engine.activities import Activities
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.payloads import ApprovalRequest, CleanupInput
from orchestrator.engine.runs import progress, start_run, watch
from orchestrator.engine.server import DevServer, DevServerSpec
from orchestrator.engine.session import Session
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.errors import LeaseHeld
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, StepStatus
from providers.base import VmRef
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.processes import Patchwave, kill_leftovers, start
from tests.support.processes import until as wait_until
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()


RUN = "run-leased"
GATED = {"canary": "approval = true", "main": ""}
DEADLINE_S = 180.0


async def until(what: str, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


async def exit_code(process: Patchwave) -> int:
    return await asyncio.to_thread(process.wait)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[DriverBed, Session]]:
    """A run of pw-canary-1 then (after `approve`) pw-web-1, in this process; it waits at the gate."""
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings=GATED, ttl="1m")
    settings = load_settings(bed.config)
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))

        async def at_gate() -> bool:
            current = await progress(handle)
            return current is not None and current.waiting_for == "canary"

        deadline = time.monotonic() + DEADLINE_S
        while not await at_gate():
            assert time.monotonic() < deadline, "the run never reached its canary gate"
            await asyncio.sleep(0.2)
        yield bed, running


async def test_rollback_is_refused_while_the_run_patches_the_vm(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), ttl="2h")
    bed.guests["pw-web-1"].linger_after_apply(25)  # its upgrade is installed, the patch still runs
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
        await until("pw-web-1's upgrade to be installed", lambda: len(bed.guests["pw-web-1"].patches()) == 2)

        rollback = start(bed, "rollback", RUN, "--vm", "pw-web-1")
        code, out = await exit_code(rollback), rollback.output()

        assert code == 2, out[-3000:]
        assert f"run {RUN} is active on these targets: pw-web-1 (held since" in out, out[-3000:]
        assert "using the embedded Temporal server of pid" in out  # it attached to ours
        summary = await watch(handle, lambda p: None)
    assert {v.vm.name: v.status for v in summary.vms} == {
        "pw-web-1": StepStatus.SUCCEEDED, "pw-web-2": StepStatus.SUCCEEDED,
    }  # fmt: skip
    assert bridge.reverts == []  # nothing was reverted under the patch
    assert bed.guests["pw-web-1"].installed() == {"demo-app": "1.1", "openssl": "3.0.15"}


async def test_no_cleanup_deletes_the_snapshot_of_a_run_that_is_not_finished(gated) -> None:
    bed, running = gated
    facts, provider = running.facts, running.context.provider("td")
    canary = VmRef("td", bed.uuids["pw-canary-1"], "pw-canary-1")
    [snap] = provider.list_snapshots(canary)
    later = datetime.now(UTC) + timedelta(days=1)  # the canary's snapshot (TTL 1 min) is long expired

    cleanup = start(bed, "snapshots", "cleanup", "--run", RUN, "--all")
    code, out = await exit_code(cleanup), cleanup.output()
    assert code == 2, out[-3000:]
    assert f"run {RUN} is running: its 1 snapshot(s) are its rollback points" in out, out[-3000:]

    # The TTL cleanup of another run, and `snapshots cleanup` of everything expired:
    other_run = await asyncio.to_thread(
        Activities(running.context).run.cleanup_expired_snapshots, CleanupInput("td", later.isoformat())
    )
    everything = await asyncio.to_thread(operations.cleanup, running.settings, now=later)
    assert other_run.deleted == () and everything["td"].deleted == () and everything["td"].gone == ()
    assert [f"pw-canary-1/{snap.id}" in kept for kept in (*other_run.in_use, *everything["td"].in_use)] == [
        True,
        True,
    ]
    assert [s.id for s in provider.list_snapshots(canary)] == [snap.id]
    assert [s.state for s in facts.snapshots(run_id=RUN)] == ["kept"]

    # Finished, its expired snapshots go.
    handle = running.client.get_workflow_handle_for(PatchRun.run, RUN)
    await handle.execute_update(PatchRun.approve, ApprovalRequest())
    assert (await handle.result()).status == "succeeded"
    done = await asyncio.to_thread(
        Activities(running.context).run.cleanup_expired_snapshots, CleanupInput("td", later.isoformat())
    )
    assert f"pw-canary-1/{snap.id}" in done.deleted and provider.list_snapshots(canary) == []


async def test_two_runs_started_at_once_never_share_a_vm(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2"), GuestSpec("pw-web-3"))
    bed = build(tmp_path / "bed", specs, port=unused_port())
    settings = load_settings(bed.config)
    async with Session(settings) as running:
        both = await asyncio.gather(
            start_run(running.client, RunRequest("run-all", settings.digest)),
            start_run(
                running.client, RunRequest("run-two", settings.digest, selection=("pw-web-2", "pw-web-3"))
            ),
        )
        results = await asyncio.gather(*(watch(h, lambda p: None) for h in both), return_exceptions=True)
        facts = running.facts
        snapshots = [s.vm.name for run in ("run-all", "run-two") for s in facts.snapshots(run_id=run)]
        assert facts.leases() == []  # released at the end
    refused = [r for r in results if isinstance(r, LeaseHeld)]
    finished = [r for r in results if not isinstance(r, BaseException)]
    assert len(refused) == 1 and len(finished) == 1, results
    assert refused[0].holder == finished[0].run_id and refused[0].exit_code == 2
    patched = {v.vm.name for v in finished[0].vms if v.status is StepStatus.SUCCEEDED}
    assert sorted(snapshots) == sorted(patched)  # one snapshot per VM, by one run
    assert {name: g.upgrades() for name, g in bed.guests.items()} == {
        n: int(n in patched) for n in bed.guests
    }


async def test_wait_waits_for_the_holder_and_then_proceeds(gated) -> None:
    bed, running = gated
    waiting = start(
        bed, "run", "--run-id", "run-waiting", "--vm", "pw-web-1", "--wait", "--wait-timeout", "300"
    )
    await until("the second run to wait", lambda: f"waiting for run {RUN}" in waiting.output())
    assert waiting.proc.poll() is None

    await running.client.get_workflow_handle_for(PatchRun.run, RUN).execute_update(
        PatchRun.approve, ApprovalRequest()
    )
    code, out = await exit_code(waiting), waiting.output()

    assert code == 0, out[-3000:]
    assert bed.guests["pw-web-1"].upgrades() == 1  # the first run patched it; the second found it done
    assert running.facts.get_run("run-waiting").status == "succeeded"
    assert running.facts.leases() == []


def test_a_killed_runs_lease_is_reported_and_released_once_its_workflow_stopped(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings=GATED)
    wide = {"COLUMNS": "250"}
    run = start(bed, "run", "--run-id", RUN, env={"PATCHWAVE_LEASE_TTL_S": "3", **wide})
    facts = FactStore(bed.state / "facts.db")
    try:
        run.until(
            "the run to wait at its canary gate with pw-web-1 leased", lambda: _leased(facts, "pw-web-1")
        )
        run.proc.kill()  # SIGKILL: nothing renews its leases any more; its workflow stays "running"
        run.wait()
        wait_until("its lease to expire", lambda: bool(facts.expired_leases(datetime.now(UTC))))

        report = start(bed, "doctor", label="doctor", env=wide)
        assert report.wait() == 1, report.output()
        assert "expired_lease" in report.output() and "td/pw-web-1" in report.output(), report.output()

        refused = start(bed, "doctor", "--fix", "--yes", label="doctor-fix", env=wide)
        refused.wait()
        assert f"not fixed: td/pw-web-1: the workflow of {RUN} is still running" in refused.output()
        assert _leased(facts, "pw-web-1")

        asyncio.run(terminate(bed, RUN))  # the operator gives the crashed run up
        fixed = start(bed, "doctor", "--fix", "--yes", label="doctor-fix-2", env=wide)
        assert fixed.wait() == 0, fixed.output()
        assert "fixed: td/pw-web-1: released" in fixed.output(), fixed.output()
        assert facts.leases() == []
        assert [r.action for r in facts.step_history(RUN, "doctor")][-1] == "doctor_expired_lease"
    finally:
        facts.close()


def _leased(facts: FactStore, name: str) -> bool:
    return facts.path.exists() and any(lease.target.name == name for lease in facts.leases())


async def terminate(bed: DriverBed, run_id: str) -> None:
    settings = load_settings(bed.config)
    spec = DevServerSpec(
        binary=temporal_binary(), db_file=settings.state.temporal_db, address=settings.temporal.address
    )
    server = DevServer(spec)
    client = await server.start()
    try:
        await client.get_workflow_handle(run_id).terminate(reason="the operator gave the crashed run up")
    finally:
        await server.stop()
