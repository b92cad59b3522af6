"""Runs in flight across an upgrade: today's workflows replay the histories older versions wrote.

Each file in ``histories/`` is a small run (:mod:`tests.replay.capture`: hosts, a canary ring soaked
and gated, a kernel reboot, a rolled-back VM) captured with the version its name starts with (a
commit, or the workflow change it brought: ``vm-inline``). A workflow that changed what it does
must keep doing the old thing for an old history (behind a ``workflow.patched`` marker), or a
worker upgraded mid-run fails that run's workflow tasks with a non-determinism error. Temporal's own ``Replayer`` with the worker's workflows decides.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orchestrator.engine.workers import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"


def histories(path: Path) -> list[WorkflowHistory]:
    with gzip.open(path, "rt") as f:
        records = json.load(f)
    return [WorkflowHistory.from_json(r["workflow_id"], r["history"]) for r in records]


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json.gz")), ids=lambda p: p.name.split(".")[0])
async def test_todays_workflows_replay_an_older_run(path: Path) -> None:
    found = histories(path)
    kinds = {h.events[0].workflow_execution_started_event_attributes.workflow_type.name for h in found}
    assert {"PatchRun", "WaveBatch", "HostBatch", "HealthBatch"} <= kinds, kinds

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in found:
            yield history

    results = await Replayer(workflows=WORKFLOWS).replay_workflows(each(), raise_on_replay_failure=False)
    failures = {rid: str(err) for rid, err in results.replay_failures.items()}
    assert not failures, failures
