"""``patchwave run --cve`` end to end on libvirt's test driver with fake Debian guests (the real ``local``
channel), the crafted OSV record (demo-app < 1.1 is CVE-2099-0001) and the crafted KEV catalog, on the
embedded Temporal server with in-process workers.

pw-cve-1..3 have demo-app 1.0 (and an openssl update pending); pw-cve-4 already has demo-app 1.1.
After ``feeds load`` and ``assess``, ``run --cve CVE-2099-0001 --now`` (the group's window is closed):

* the plan holds pw-cve-1..3 only; pw-cve-4 is blocked ``not_affected``; the windows were overridden
  and the run records it;
* only demo-app is installed (``apt-get install --only-upgrade demo-app``): openssl stays at 3.0.11;
* pw-cve-2's demo-app 1.1 breaks its health check: reverted to the snapshot (ROLLED_BACK);
* the proof after the health checks: ``fixed-active`` on pw-cve-1 and pw-cve-3 (the fake guests have a
  needrestart that reports nothing stale), ``still-open`` on pw-cve-2, named in its outcome;
* ``status`` (the CVE view), ``report`` (the per-CVE section: json and table) and the run_finished
  notification show it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.assessment import commands as assessing
from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.cves import FIXED_ACTIVE, STILL_OPEN, CveStore
from orchestrator.model import RunRequest, StepStatus
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.receiver import Endpoint, receiving
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

CRAFTED = REPO / "tests/data/vulns/crafted"
OSV, KEV = CRAFTED / "PW-2099-0001.json", CRAFTED / "kev-demo-app.json"
CVE = "CVE-2099-0001"
RUN = "run-cve"
CLOSED = 'cron = "0 3 1 1 *"\nduration = "1h"\ntimezone = "UTC"'  # once a year: closed now


@pytest.fixture
def receiver() -> AsyncIterator[Endpoint]:
    with receiving() as endpoint:
        yield endpoint


@pytest.fixture(params=[0, 1], ids=["prepared-in-slot", "prepared-ahead"])
def bed(tmp_path: Path, receiver: Endpoint, request: pytest.FixtureRequest) -> DriverBed:
    """``[policy] prepare_ahead`` 0 and 1: the proof and the budget are the same either way."""
    specs = (GuestSpec("pw-cve-1"), GuestSpec("pw-cve-2", broken_after_patch=True), GuestSpec("pw-cve-3"),
             GuestSpec("pw-cve-4"))  # fmt: skip
    made = build(tmp_path / "bed", specs, port=unused_port(), budget=2, windows={"yearly": CLOSED},
                 group_windows={"main": "yearly"}, policy=f"prepare_ahead = {request.param}")  # fmt: skip
    (made.guests["pw-cve-4"].state / "installed").write_text("demo-app 1.1\nopenssl 3.0.11\n")
    with made.config.open("a") as config:
        config.write(f'\n[notifications]\nurls = ["{receiver.url()}"]\n')
    return made


@pytest.fixture
async def session(bed: DriverBed) -> AsyncIterator[tuple[Session, DiskBridge]]:
    settings = load_settings(bed.config)
    assessing.load_feeds(settings, [str(OSV), str(KEV)])
    assessed = assessing.assess(settings, requested_by="e2e")
    found = {vm.vm: [f.cve for f in vm.cves] for vm in assessed.vms}
    assert found == {"td/pw-cve-1": [CVE], "td/pw-cve-2": [CVE], "td/pw-cve-3": [CVE], "td/pw-cve-4": []}
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        yield running, bridge


async def test_run_cve_patches_only_the_fixing_package_and_proves_each_vm(
    bed: DriverBed, session: tuple[Session, DiskBridge], receiver: Endpoint
) -> None:
    running, bridge = session
    settings = running.settings
    request = RunRequest(run_id=RUN, config_digest=settings.digest, requested_by="e2e", hosts=False,
                         cves=(CVE,), now=True)  # fmt: skip
    summary = await watch(await start_run(running.client, request), lambda p: None, interval_s=0.2)

    # the plan: the affected VMs only, the windows overridden
    plan = running.facts.run_plan(RUN)
    assert plan is not None and sorted(s.vm.name for s in plan.vm_steps) == [
        "pw-cve-1",
        "pw-cve-2",
        "pw-cve-3",
    ]
    assert {s.window for s in plan.vm_steps} == {""}
    assert [(b.target, b.code) for b in plan.blocked] == [("td/pw-cve-4", "not_affected")]
    cve_run = CveStore(running.facts).run(RUN)
    assert cve_run is not None and (cve_run.cves, cve_run.now_override) == ((CVE,), True)

    # the outcomes: the broken one rolled back, and its CVE named as still open
    outcomes = {o.vm.name: o for o in summary.vms}
    assert {n: o.status for n, o in outcomes.items()} == {
        "pw-cve-1": StepStatus.SUCCEEDED, "pw-cve-2": StepStatus.ROLLED_BACK, "pw-cve-3": StepStatus.SUCCEEDED}  # fmt: skip
    assert "unhealthy after patching" in outcomes["pw-cve-2"].error
    assert f"still open: {CVE} (demo-app 1.0 < 1.1 (fixed))" in outcomes["pw-cve-2"].error
    assert summary.status == "failed" and summary.exit_code == 1 and set(bridge.reverts) == {"pw-cve-2"}

    # the guests: demo-app only — openssl's pending update is left alone; pw-cve-4 untouched
    guests = {name: g.installed() for name, g in bed.guests.items()}
    assert guests == {
        "pw-cve-1": {"demo-app": "1.1", "openssl": "3.0.11"},
        "pw-cve-2": {"demo-app": "1.0", "openssl": "3.0.11"},
        "pw-cve-3": {"demo-app": "1.1", "openssl": "3.0.11"},
        "pw-cve-4": {"demo-app": "1.1", "openssl": "3.0.11"},
    }
    log = (bed.guests["pw-cve-1"].logs / "log").read_text()
    assert "-y install --only-upgrade demo-app" in log and "-y upgrade" not in log

    # the proof per VM
    proofs = {p.vm.name: p for p in CveStore(running.facts).proofs(RUN)}
    assert {n: p.verdict for n, p in proofs.items()} == {
        "pw-cve-1": FIXED_ACTIVE, "pw-cve-2": STILL_OPEN, "pw-cve-3": FIXED_ACTIVE}  # fmt: skip
    assert proofs["pw-cve-1"].evidence == "demo-app 1.1 >= 1.1; needrestart: nothing runs replaced files"

    # status, report and the notification
    view = assessing.cve_run(settings, RUN)
    assert view is not None and [(c.cve, c.affected, c.verdicts[FIXED_ACTIVE], c.verdicts[STILL_OPEN]) for c in view.cves] == [
        (CVE, 3, 2, 1)]  # fmt: skip
    report = json.loads(operations.report(settings, fmt="json"))
    [section] = report["cves"]
    assert (section["run_id"], section["cve"], section["kev"], section["published"], section["affected"]) == (
        RUN, CVE, True, "2026-11-20", 3)  # fmt: skip
    assert (section["fixed_on"], section["open_on"], section["now_override"]) == (
        ["td/pw-cve-1", "td/pw-cve-3"], ["td/pw-cve-2"], True)  # fmt: skip
    table = operations.report(settings, fmt="table")
    assert "patch by CVE" in table and "2: td/pw-cve-1, td/pw-cve-3" in table
    finished = [b for b in receiver.bodies("/hook") if "finished" in json.dumps(b)]
    assert (
        finished
        and f"{CVE} (KEV): 3 VM(s) affected; fixed-active 2, fixed-pending-restart 0, still-open 1 (td/pw-cve-2)"
        in json.dumps(finished[-1])
    )
