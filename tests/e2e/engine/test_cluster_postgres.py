"""A cluster's shape in one test: a central worker and a site worker, each with its own connection
pool to one shared PostgreSQL fact store (``[facts] url``), run a rollout on libvirt's test driver.

The site worker records the snapshot intents and results, the central worker plans and records the
outcomes; everything lands in the one shared store (no SQLite file is created), and a rollback
started afterwards finds every snapshot the site worker registered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.runs import rollback, start_run, watch
from orchestrator.engine.session import Session
from orchestrator.engine.workers import Roles, workers
from orchestrator.facts.store import open_store
from orchestrator.model import RunRequest, StepStatus
from providers.base import VmRef
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.postgres import fresh_schema, server_or_skip
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN = "run-cluster"


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[DriverBed]:
    server = server_or_skip()
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2", broken_after_patch=True))
    bed = build(tmp_path / "bed", specs, port=unused_port(), budget=1, ttl="2h")
    with fresh_schema(server) as schema:
        with bed.config.open("a") as config:
            config.write(
                f'\n[facts]\nurl = "{server.in_schema(schema)}"\npassword = {{ file = "{server.password_file}" }}\n'
            )
        yield bed


async def test_a_central_and_a_site_worker_share_one_postgresql_fact_store(bed: DriverBed) -> None:
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    central_facts, site_facts = open_store(settings), open_store(settings)  # two pools, as on two machines
    central = Context(settings, central_facts, opener=bridge.opener)
    site = Context(settings, site_facts, opener=bridge.opener)
    try:
        async with (
            Session(settings, worker=False) as running,
            workers(running.client, central, roles=Roles(central=True, sites=())),
            workers(running.client, site, roles=Roles(central=False, sites=("td",))),
        ):
            assert running.facts is not None and running.facts.engine == "postgresql"
            request = RunRequest(run_id=RUN, config_digest=settings.digest, requested_by="e2e")
            summary = await watch(await start_run(running.client, request), lambda p: None, interval_s=0.3)
            outcomes = {o.vm.name: o for o in summary.vms}
            assert {n: o.status for n, o in outcomes.items()} == {
                "pw-web-1": StepStatus.SUCCEEDED, "pw-web-2": StepStatus.ROLLED_BACK}  # fmt: skip

            # Written by the site worker, read through the session's own pool.
            records = {r.vm.name: r for r in running.facts.snapshots(run_id=RUN)}
            assert {n: (r.state, r.snapshot_id) for n, r in records.items()} == {
                "pw-web-1": ("kept", outcomes["pw-web-1"].snapshot_id),
                "pw-web-2": ("reverted", outcomes["pw-web-2"].snapshot_id),
            }
            assert running.facts.get_run(RUN).status == "failed"

            reverted = await rollback(running.client, RUN, ("pw-web-1",))
            assert [(o.vm.name, o.status, o.snapshot_id) for o in reverted] == [
                ("pw-web-1", StepStatus.ROLLED_BACK, outcomes["pw-web-1"].snapshot_id)]  # fmt: skip
            provider = site.provider("td")
            for name in ("pw-web-1", "pw-web-2"):
                snaps = provider.list_snapshots(VmRef("td", bed.uuids[name], name))
                assert [s.id for s in snaps] == [outcomes[name].snapshot_id]
        assert not (bed.state / "facts.db").exists()  # nothing wrote an SQLite store
    finally:
        central.close()
        site.close()
        central_facts.close()
        site_facts.close()
