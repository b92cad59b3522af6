"""``patchwave assess`` end to end on libvirt's test driver with fake Debian guests (the real ``local``
channel), the crafted OSV record (demo-app < 1.1 is CVE-2099-0001) and the crafted KEV catalog.

* the CLI (real processes): ``feeds load`` caches both feeds, ``feeds list`` shows them, ``assess``
  lists CVE-2099-0001 as critical and known exploited on every guest, per CVE and per VM (json and
  csv), ``--cached`` reads the same round back without scanning, and no guest was changed;
* ``serve``'s round (``AssessFleet`` on the time-skipping test server with the real workers and
  activities): the configured feeds are loaded by the round, every VM is assessed in batches of
  ``[assess] batch_size``, and ``vuln_found`` reaches the receiver once — not again next round.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.payloads import ASSESS_WORKFLOW, CENTRAL_QUEUE, AssessRequest, RoundSummary
from orchestrator.engine.workers import workers
from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import RoundStore
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.receiver import receiving
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

CRAFTED = REPO / "tests/data/vulns/crafted"
OSV, KEV = CRAFTED / "PW-2099-0001.json", CRAFTED / "kev-demo-app.json"
CVE = "CVE-2099-0001"
NAMES = ("pw-as-1", "pw-as-2", "pw-as-3")


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    return build(tmp_path / "bed", tuple(GuestSpec(n) for n in NAMES), port=unused_port())


def patchwave(bed: DriverBed, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--log-format", "json", "-c", str(bed.config), *args],
        cwd=bed.root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_assess_lists_the_kev_cve_on_every_guest_and_changes_nothing(bed: DriverBed) -> None:
    guests = {name: (g.installed(), g.upgrades(), g.patches()) for name, g in bed.guests.items()}
    loaded = patchwave(bed, "feeds", "load", str(OSV), str(KEV)).stdout
    assert "loaded osv" in loaded and "loaded kev" in loaded
    cached = json.loads(patchwave(bed, "feeds", "list", "--output", "json").stdout)
    assert sorted((f["info"]["kind"], f["info"]["count"], f["stale"]) for f in cached) == [
        ("kev", 1, False),
        ("osv", 1, False),
    ]

    scanned = patchwave(bed, "assess", "--output", "json")
    report = json.loads(scanned.stdout)
    assert {vm["vm"] for vm in report["vms"]} == {f"td/{n}" for n in NAMES}
    for vm in report["vms"]:
        [finding] = vm["cves"]
        assert vm["assessed"] and vm["os"] == "Debian GNU/Linux 12 (bookworm)" and vm["pending"] == 2
        assert (finding["cve"], finding["package"], finding["installed"], finding["fixed_version"]) == (
            CVE,
            "demo-app",
            "1.0",
            "1.1",
        )
        assert finding["kev"] and finding["severity"] == "critical" and finding["fix_available"]
    [row] = report["cves"]
    cve = row["summary"]
    assert (cve["cve"], cve["machines"], cve["fixable"], cve["kev"], cve["cvss"]) == (CVE, 3, 3, True, 9.8)
    assert sorted(row["machines"]) == [f"td/{n}" for n in NAMES]

    per_vm = list(
        csv.DictReader(io.StringIO(patchwave(bed, "assess", "--view", "vm", "--output", "csv").stdout))
    )
    assert sorted(r["vm"] for r in per_vm) == [f"td/{n}" for n in NAMES]
    assert all((r["findings"], r["kev"], r["critical"], r["pending"]) == ("1", "1", "1", "2") for r in per_vm)
    table = patchwave(bed, "assess", "--cached")
    assert CVE in table.stdout and "provider_connected" not in table.stderr  # nothing was scanned

    assert {name: (g.installed(), g.upgrades(), g.patches()) for name, g in bed.guests.items()} == guests


async def test_a_scheduled_round_loads_the_feeds_assesses_in_batches_and_alerts_once(
    env: WorkflowEnvironment, bed: DriverBed
) -> None:
    with receiving() as receiver:
        with bed.config.open("a") as config:
            config.write(f'\n[assess]\nfeeds = ["{OSV}", "{KEV}"]\nbatch_size = 2\n'
                         f'[notifications]\nurls = ["{receiver.url()}"]\n')  # fmt: skip
        settings = load_settings(bed.config)
        facts = FactStore(settings.state.facts_path)
        ctx = Context(settings, facts)
        try:
            async with workers(env.client, ctx):
                rounds = []
                for round_id in ("round-1", "round-2"):
                    rounds.append(await env.client.execute_workflow(
                        ASSESS_WORKFLOW, AssessRequest(requested_by="test"), id=round_id,
                        task_queue=CENTRAL_QUEUE, result_type=RoundSummary,
                    ))  # fmt: skip
            store = RoundStore(facts)
            [alert] = store.alerts()
            counts = store.counts("round-1")
        finally:
            ctx.close()
            facts.close()
    first, second = rounds
    assert (first.round_id, first.targets, first.assessed, first.failed, first.notified) == (
        "round-1",
        3,
        3,
        0,
        1,
    )
    assert (second.targets, second.assessed, second.notified) == (3, 3, 0)  # announced once
    assert counts == {"assessed": 3}
    assert (alert.cve, alert.kev, alert.machines, alert.round_id) == (
        CVE,
        True,
        3,
        "round-1",
    ) and alert.notified_at
    [notice] = receiver.bodies("/hook")
    assert CVE in json.dumps(notice)
