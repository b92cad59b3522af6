"""Provider faults at the engine level: whole runs (embedded Temporal, in-process workers) against our
vcsim launcher, whose fault rules make real SOAP calls fail. Guests are fake Debian chroots reached
with the local channel (tests/support/platformbed.py); snapshots are vCenter's.

* A transient fault (``FileLocked`` inside the snapshot task -> ResourceBusy) is retried by the named
  Temporal policy of ``vm_snapshot`` (``api_call``, orchestrator/retry.py): one fewer fault than its
  attempts and the VM is patched; as many faults as attempts and that VM alone is FAILED. Counted
  from both sides: SOAP calls in the launcher's stats, attempts (intents) in the fact store.
* A permanent fault (``InvalidState`` -> OperationRefused) is not retried at all: that VM is FAILED
  before anything changed in it, the others are patched.
* With ``failure_budget = 0`` the same fault halts the run: the remaining VMs are SKIPPED, and the
  CLI exits 3 saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.retry import ACTIVITIES, POLICIES
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.actions import Action
from orchestrator.model import RunRequest, RunSummary, StepStatus
from tests.simulators.vcsim.launcher import Vcsim, start_or_skip
from tests.support.paths import REPO
from tests.support.platformbed import PlatformBed, build_platform_bed

pytestmark = pytest.mark.e2e

PASSWORD_ENV = "PW_FAULTS_VC_PASSWORD"
VMS = ("DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", "DC0_C0_RP0_VM2")
#: vm_snapshot runs under the named Temporal policy "api_call" (orchestrator/retry.py).
MAX_ATTEMPTS = POLICIES[ACTIVITIES["vm_snapshot"].policy].maximum_attempts


@pytest.fixture
def sim() -> Iterator[Vcsim]:
    simulator = start_or_skip("-host", "2", "-vm", "3", "-balance")
    yield simulator
    simulator.stop()


def bed_for(tmp_path: Path, sim: Vcsim, *, budget: int) -> PlatformBed:
    table = sim.provider_table()
    provider = (
        f'kind = "vsphere"\nhost = "{table["host"]}"\nport = {table["port"]}\nuser = "{table["user"]}"\n'
        f'password = {{ env = "{PASSWORD_ENV}" }}\nca_file = "{table["ca_file"]}"'
    )
    return build_platform_bed(tmp_path / "bed", site="vc", provider_toml=provider, vms=VMS, budget=budget)


async def run_once(bed: PlatformBed, sim: Vcsim, run_id: str) -> tuple[RunSummary, dict[str, int]]:
    settings = load_settings(bed.config, environ={PASSWORD_ENV: sim.password})
    async with Session(settings) as running:
        request = RunRequest(run_id=run_id, config_digest=settings.digest, requested_by="e2e")
        summary = await watch(await start_run(running.client, request), lambda p: None, interval_s=0.5)
        steps = {o.vm.name: o.step_id for o in summary.vms}
        attempts = {name: running.facts.attempts(run_id, steps[name], Action.SNAPSHOT) for name in VMS}
    return summary, attempts


@pytest.mark.parametrize("faulted", [MAX_ATTEMPTS - 1, MAX_ATTEMPTS], ids=["recovers", "exhausts"])
async def test_a_transient_fault_is_retried_up_to_the_named_policys_attempts(
    tmp_path: Path, sim: Vcsim, faulted: int
) -> None:
    bed = bed_for(tmp_path, sim, budget=1)
    sim.add_fault(f"method=CreateSnapshot_Task,target={VMS[1]},fault=FileLocked,count={faulted}")
    sim.reset_stats()

    summary, attempts = await run_once(bed, sim, "run-transient")

    outcomes = {o.vm.name: o for o in summary.vms}
    tries = min(faulted + 1, MAX_ATTEMPTS)
    assert attempts == {VMS[0]: 1, VMS[1]: tries, VMS[2]: 1}  # one intent per vm_snapshot attempt
    assert sim.stats()["CreateSnapshot_Task"] == 1 + tries + 1  # one SOAP call per attempt
    assert outcomes[VMS[0]].status is outcomes[VMS[2]].status is StepStatus.SUCCEEDED
    if faulted < MAX_ATTEMPTS:
        assert outcomes[VMS[1]].status is StepStatus.SUCCEEDED and summary.status == "succeeded", summary
        assert bed.guests[VMS[1]].patches()
    else:  # the policy's last attempt failed too: that VM only is FAILED, untouched
        assert outcomes[VMS[1]].status is StepStatus.FAILED and "FileLocked" in outcomes[VMS[1]].error
        assert summary.status == "failed" and not summary.halted_reason
        assert bed.guests[VMS[1]].patches() == []


async def test_a_permanent_fault_fails_only_that_vm_and_is_not_retried(tmp_path: Path, sim: Vcsim) -> None:
    bed = bed_for(tmp_path, sim, budget=1)
    sim.add_fault(f"method=CreateSnapshot_Task,target={VMS[1]},fault=InvalidState,count=100")
    sim.reset_stats()

    summary, attempts = await run_once(bed, sim, "run-permanent")

    outcomes = {o.vm.name: o for o in summary.vms}
    assert [outcomes[n].status for n in VMS] == [
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SUCCEEDED,
    ]
    assert "snapshot" in outcomes[VMS[1]].error.lower(), outcomes[VMS[1]].error
    assert summary.status == "failed" and not summary.halted_reason and summary.exit_code == 1
    assert attempts[VMS[1]] == 1 and sim.stats()["CreateSnapshot_Task"] == 3  # one call each, no retry
    assert bed.guests[VMS[1]].patches() == []  # never patched without its snapshot
    assert bed.guests[VMS[0]].patches() and bed.guests[VMS[2]].patches()


def test_the_failure_budget_halts_the_run_and_the_cli_says_why(tmp_path: Path, sim: Vcsim) -> None:
    bed = bed_for(tmp_path, sim, budget=0)
    sim.add_fault(f"method=CreateSnapshot_Task,target={VMS[0]},fault=InvalidState,count=100")
    env = {**os.environ, "PYTHONPATH": str(REPO), PASSWORD_ENV: sim.password}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "--log-format", "json",
         "run", "--run-id", "run-budget"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    [halted] = [line for line in done.stderr.splitlines() if line.startswith("halted:")]
    assert "failure budget exhausted: 1 VM(s) failed" in halted and VMS[0] in halted and "budget 0" in halted
    for name in VMS[1:]:
        assert name in done.stdout and bed.guests[name].patches() == []
    assert done.stdout.count("skipped") >= 2
