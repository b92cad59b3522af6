"""Regression (found by crash injection): a run killed before it was planned could not be resumed.

`patchwave run` starts the PatchRun workflow, then ``run_setup``/``discover``/``plan_run`` record
the run in the fact store. A worker (or server) killed in between left a workflow that Temporal
keeps as running while the fact store knows nothing: `patchwave resume RUN` answered "no run is
known" and the run never finished (and its workflow would have been picked up by the workers of
the next, unrelated run). Now `resume` asks the engine when the fact store does not know the run.

The crash is reproduced deterministically: the workflow is started on the embedded server with no
worker running (what a worker killed during ``discover`` leaves behind), then `resume` runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.engine.connection import Engine
from orchestrator.engine.runs import start_run
from orchestrator.errors import RunNotFound
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, StepStatus
from tests.support.loopback import unused_port
from tests.support.testbed import GuestSpec, build

pytestmark = pytest.mark.e2e

RUN = "run-before-planning"


async def test_a_run_the_fact_store_never_recorded_is_resumed_from_the_engine(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-early-1"),), port=unused_port())
    settings = load_settings(bed.config)
    async with Engine(settings) as engine:  # the server only: no worker picks the run up
        await start_run(engine.client, RunRequest(run_id=RUN, config_digest=settings.digest))
        facts = FactStore(settings.state.facts_path)
        try:
            assert facts.get_run(RUN) is None  # the state a crash before plan_run leaves
        finally:
            facts.close()

        summary = await operations.resume(settings, RUN, on_progress=lambda _progress: None)

    assert summary.status == "succeeded", summary
    assert [(v.vm.name, v.status) for v in summary.vms] == [("pw-early-1", StepStatus.SUCCEEDED)]
    assert bed.guests["pw-early-1"].upgrades() == 1


async def test_a_run_neither_the_engine_nor_the_fact_store_knows_is_still_unknown(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-early-1"),), port=unused_port())
    settings = load_settings(bed.config)
    async with Engine(settings):  # creates temporal.db: resume has to ask the engine
        with pytest.raises(RunNotFound):
            await operations.resume(settings, "run-typo", on_progress=lambda _progress: None)
    assert bed.guests["pw-early-1"].upgrades() == 0
