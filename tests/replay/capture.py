"""Capture a small run's histories for the replay tests: ``python -m tests.replay.capture FILE.json.gz``.

Runs a rollout on the scale bed (12 VMs on one site: a canary ring soaked then gated, the hosts
first, a kernel reboot, one VM whose upgrade breaks its health and is rolled back) through the
embedded Temporal, then writes every workflow execution of the run (``PatchRun`` and its batches,
and the children of whatever version of the code ran) as Temporal's own JSON histories, in one
gzipped list (``[{"workflow_id": ..., "history": ...}, ...]``). A second argument sets the waves'
``[policy] prepare_ahead`` (VMs prepared ahead of the concurrency slots).
Run it from a checkout of an older commit to keep that version's histories: the replay tests
(:mod:`tests.replay.test_replay`) then prove that today's workflows still replay them — what every
``workflow.patched`` marker promises to a run in flight across an upgrade.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import tempfile
from pathlib import Path

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.model import RunRequest
from tests.simulators.scalesim import FleetShape, ScaleFleet
from tests.support.histories import run_executions
from tests.support.loopback import unused_port
from tests.support.scalebed import write_scale_bed

RUN = "run-replay"
SHAPE = FleetShape(
    vms=12, sites=1, hosts_per_site=2, kernel_every=4, canary=2, broken=frozenset({"s0-vm-00005"})
)


async def capture(out: Path, *, prepare_ahead: int = 0) -> None:
    records: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bed = write_scale_bed(
            Path(tmp),
            ScaleFleet(SHAPE),
            port=unused_port(),
            concurrency=3,
            canary_soak="1s",
            hosts=True,
            prepare_ahead=prepare_ahead,
        )
        async with Session(load_settings(bed.config), opener=bed.opener) as session:
            request = RunRequest(run_id=RUN, config_digest=session.settings.digest, requested_by="capture")
            summary = await watch(await start_run(session.client, request), lambda _: None, interval_s=1.0)
            print(f"run {summary.status}: {summary.counts}")
            client = session.client
            async for execution in run_executions(client, RUN):
                handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
                history = await handle.fetch_history()
                records.append({"workflow_id": execution.id, "history": json.loads(history.to_json())})
    with gzip.open(out, "wt") as f:
        json.dump(records, f, separators=(",", ":"))
    print(f"{len(records)} histories written to {out}")


if __name__ == "__main__":
    # python -m tests.replay.capture FILE.json.gz [PREPARE_AHEAD]: waves with [policy] prepare_ahead
    asyncio.run(capture(Path(sys.argv[1]), prepare_ahead=int(sys.argv[2]) if len(sys.argv) > 2 else 0))
