"""`patchwave resume RUN` after the worker was SIGKILLed mid-run: no second snapshot, no second patch.

Why a real ``qemu:///system`` here and not the test driver: the test driver keeps its domains and
snapshots inside the connection of the process that opened it, so they die with the killed worker
and a resumed worker would see a fresh hypervisor. libvirtd keeps them (two tiny TCG domains with
empty qcow2 disks, like tests/contract/test_libvirt_qemu.py), the fake guests keep their state on
disk, the embedded Temporal server keeps the workflow in ``<state>/temporal.db`` and the fact store
keeps the run's records — exactly the durable parts a real crash leaves behind.

The kill lands in the worst place: pw-resume-1 has finished, and pw-resume-2's upgrade has been
installed but its ``vm_patch`` activity has not reported back (the fake apt lingers after
installing; the patch job is detached, so the kill does not end it). The resumed ``vm_patch`` finds
the job its intent names, waits for it and verifies: the real changes are recorded. Counting:
snapshots in libvirt and snapshot intents in the fact store, package upgrades
in the fake guests' logs and patch intents in the fact store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.server import DevServer, DevServerSpec
from orchestrator.facts.actions import Action
from orchestrator.facts.details import PatchDetail
from orchestrator.facts.store import FactStore
from orchestrator.model import PackageChange, StepStatus, vm_step_id
from providers.base import VmRef
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.tcg_domains import URI, disposable_domains
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")  # unattended-upgrades' (the fake systemctl's)

RUN = "run-resume"
UPGRADED = (PackageChange("demo-app", "1.0", "1.1"), PackageChange("openssl", "3.0.11", "3.0.15"))
#: Deadlines for waiting on the subprocesses (not assertions on durations).
PHASE_DEADLINE_S = 240.0


@pytest.fixture
def domains(tmp_path: Path) -> Iterator[dict[str, str]]:
    """name -> uuid of two running disposable TCG domains; destroyed and undefined afterwards."""
    with disposable_domains(tmp_path / "disks", "pw-resume") as made:
        yield made


@pytest.fixture
def bed(tmp_path: Path, domains: dict[str, str]) -> DriverBed:
    first, second = sorted(domains)
    specs = (GuestSpec(first, timers=TIMERS), GuestSpec(second, timers=TIMERS))
    made = build(tmp_path / "bed", specs, port=unused_port(), uri=URI, uuids=domains, concurrency=1, ttl="2h")
    made.guests[second].linger_after_apply(600)  # killed while lingering; removed before resuming
    return made


def patchwave(bed: DriverBed, *args: str) -> subprocess.Popen[str]:
    """`patchwave -c <bed> ARGS` as a process; its output goes to <bed>/<command>.log."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(bed.root / f"{args[0]}.log", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "--log-format", "json", *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def output(bed: DriverBed, command: str) -> str:
    return (bed.root / f"{command}.log").read_text()[-6000:]


def wait_for(what: str, predicate, proc: subprocess.Popen[str] | None = None, log=lambda: "") -> None:
    deadline = time.monotonic() + PHASE_DEADLINE_S
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"patchwave exited ({proc.returncode}) before {what}:\n{log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def step_id(bed: DriverBed, name: str) -> str:
    return vm_step_id(VmRef("td", bed.uuids[name], name))


def run_and_kill(bed: DriverBed, *, kill_server: bool = False) -> int:
    """Start `patchwave run`; SIGKILL it once the first VM finished and the second one's upgrade
    was installed (its `vm_patch` activity still lingering). With ``kill_server`` the embedded
    Temporal server is killed instead, and `patchwave run` must notice and exit by itself."""
    first, second = sorted(bed.guests)
    proc = patchwave(bed, "run", "--run-id", RUN)
    facts = FactStore(bed.state / "facts.db")
    try:

        def first_done() -> bool:
            outcome = facts.outcome(RUN, step_id(bed, first)) if (bed.state / "facts.db").exists() else None
            return outcome is not None and outcome.status is StepStatus.SUCCEEDED

        wait_for(f"{first} to finish", first_done, proc, lambda: output(bed, "run"))
        wait_for(
            f"{second}'s upgrade to be installed",
            lambda: len(bed.guests[second].patches()) == 2,
            proc,
            lambda: output(bed, "run"),
        )
    finally:
        facts.close()
    if kill_server:
        server = int((bed.state / "temporal.db.pid").read_text().split()[0])
        os.kill(server, signal.SIGKILL)
        try:
            proc.wait(timeout=PHASE_DEADLINE_S)  # a deadline for "never exits", not a timing
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"`patchwave run` kept running after its Temporal server died:\n{output(bed, 'run')}")
    else:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    (bed.guests[second].state / "delay-after-apply").unlink()
    # Its dev server gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and may still be stopping:
    # the next DevServer.start waits for it (temporal.db.pid) instead of racing it for the SQLite file.
    return proc.returncode


def resume(bed: DriverBed) -> tuple[int, str]:
    proc = patchwave(bed, "resume", RUN)
    try:
        proc.wait(timeout=PHASE_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"resume did not finish:\n{output(bed, 'resume')}")
    return proc.returncode, output(bed, "resume")


def assert_nothing_done_twice(bed: DriverBed, domains: dict[str, str]) -> None:
    from providers.libvirt import provider as adapter

    provider = adapter.open_provider(adapter.parse_settings("td", {"uri": URI}))
    facts = FactStore(bed.state / "facts.db")
    try:
        for name, guest in bed.guests.items():
            snaps = provider.list_snapshots(VmRef("td", domains[name], name))
            assert [(s.ownership.run_id, s.ownership.step_id) for s in snaps] == [
                (RUN, step_id(bed, name))
            ], name
            assert facts.attempts(RUN, step_id(bed, name), Action.SNAPSHOT) == 1, name
            assert guest.upgrades() == 1 and len(guest.patches()) == 2, (name, guest.patches())
            assert facts.attempts(RUN, step_id(bed, name), Action.PATCH) == 1, name
            # the in-flight apply was found, waited for and verified: the real changes, not "0 changed"
            [result] = [r for r in facts.step_history(RUN, step_id(bed, name), action=Action.PATCH) if r.ok]
            assert isinstance(result.detail, PatchDetail), (name, result)
            assert result.detail.changes == UPGRADED, (name, result)
            assert [line.split()[-1] for line in guest.processes()] == ["started", "finished"], name
            assert facts.outcome(RUN, step_id(bed, name)).status is StepStatus.SUCCEEDED, name
            assert guest.installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
            # the updater's pause (kept by the resumed attempt, not taken twice) was restored
            assert guest.units() == dict.fromkeys(TIMERS, "enabled active"), name
            assert not (guest.root / "var/lib/patchwave/autoupdates.paused").exists(), name
            assert [c for c in guest.systemctl_calls() if c.startswith(("start", "stop"))] == [
                *(f"stop {t}" for t in TIMERS),
                *(f"start {t}" for t in TIMERS),
            ], name
            restores = facts.step_history(RUN, step_id(bed, name), action=Action.AUTOUPDATES_RESTORE)
            assert restores and restores[-1].ok, name
        assert facts.get_run(RUN).status == "succeeded"
    finally:
        facts.close()
        provider.close()


def test_resume_after_a_killed_worker_finishes_without_repeating_work(bed: DriverBed, domains) -> None:
    run_and_kill(bed)
    _, second = sorted(domains)
    paused = bed.guests[second]  # killed between its updater's pause and its restore
    assert paused.units() == dict.fromkeys(TIMERS, "enabled inactive")
    assert (paused.root / "var/lib/patchwave/autoupdates.paused").exists()
    code, out = resume(bed)
    assert code == 0, out[-4000:]
    assert "succeeded" in out
    assert_nothing_done_twice(bed, domains)


def test_resume_starts_a_new_execution_when_the_old_one_was_terminated(bed: DriverBed, domains) -> None:
    run_and_kill(bed)
    settings = load_settings(bed.config)
    spec = DevServerSpec(
        binary=temporal_binary(), db_file=settings.state.temporal_db, address=settings.temporal.address
    )

    async def terminate() -> str:
        server = DevServer(spec)
        client = await server.start()
        try:
            handle = client.get_workflow_handle(RUN)
            first_execution = (await handle.describe()).run_id
            await handle.terminate(reason="operator gave up on the crashed run")
            return first_execution
        finally:
            await server.stop()

    first_execution = asyncio.run(terminate())
    code, out = resume(bed)
    assert code == 0, out[-4000:]
    assert_nothing_done_twice(bed, domains)

    async def executions() -> list[str]:
        server = DevServer(spec)
        client = await server.start()
        try:
            return [e.run_id async for e in client.list_workflows(f"WorkflowId = '{RUN}'")]
        finally:
            await server.stop()

    runs = asyncio.run(executions())
    assert first_execution in runs and len(runs) == 2


def test_a_killed_dev_server_ends_the_run_with_a_resume_hint(bed: DriverBed, domains) -> None:
    code = run_and_kill(bed, kill_server=True)
    out = output(bed, "run")
    assert code == 1, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert "the embedded Temporal server" in last and "killed by signal 9" in last, out[-3000:]
    assert f"patchwave resume {RUN}" in last, last
    assert "Traceback" not in out and "internal error" not in out, out[-3000:]
    code, out = resume(bed)
    assert code == 0, out[-4000:]
    assert_nothing_done_twice(bed, domains)
