"""Patch by CVE on the real Debian guest lab (libvirt/QEMU, two guests: the canary through the guest agent, the
other through SSH):
the crafted OSV record says demo-app < 1.1 is CVE-2099-0001 (in the crafted KEV catalog).

demo-app 1.1 (good; its postinst asks for a reboot) is published to every guest, 1.2 (breaking: /health
answers 404) to pw-lab-2 only. ``assess`` lists the CVE, known exploited, on every guest; ``run --cve``
installs demo-app only (``apt-get install --only-upgrade demo-app``); pw-lab-2 is rolled back. The proof
after the health checks: ``fixed-active`` on pw-lab-1 (1.1 >= 1.1, rebooted after the patch),
``still-open`` on pw-lab-2 (1.0 again), and the report's per-CVE section says so.
Needs libvirtd (qemu:///system) and the lab packages; run under ``flock /tmp/patchwave-lab.lock``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest

from orchestrator import operations
from orchestrator.assessment import commands as assessing
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.cves import FIXED_ACTIVE, STILL_OPEN, CveStore
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from patchwave_lab import control as lab
from tests.support.loopback import unused_port
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

CONFIG = REPO / "patchwave_lab" / "configs" / "lab.toml"
CRAFTED = REPO / "tests/data/vulns/crafted"
CVE, RUN, BREAKING = "CVE-2099-0001", "run-lab-cve", "pw-lab-2"
NAMES = ("pw-lab-1", "pw-lab-2")  # two guests keep the lab (and CI) short


async def _run(settings: Settings) -> RunSummary:
    async with Session(settings) as running:
        request = RunRequest(RUN, settings.digest, requested_by="e2e", hosts=False, cves=(CVE,))
        return await watch(await start_run(running.client, request), lambda p: None, interval_s=1.0)


def test_run_cve_on_the_lab_fixes_the_good_guests_and_reports_the_rolled_back_one_still_open(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    state_dir = tmp_path_factory.mktemp("lab-cve")
    started = time.monotonic()
    state = lab.up(state_dir, guests=len(NAMES))
    try:
        lab.publish(state_dir, "good")
        lab.publish(state_dir, "breaking", guest=BREAKING)
        settings = load_settings(CONFIG, state_dir=state_dir)
        settings = replace(
            settings, temporal=replace(settings.temporal, address=f"127.0.0.1:{unused_port()}")
        )
        assessing.load_feeds(
            settings, [str(CRAFTED / "PW-2099-0001.json"), str(CRAFTED / "kev-demo-app.json")]
        )
        assessed = assessing.assess(settings, refresh=True, requested_by="e2e")
        for vm in assessed.vms:
            [finding] = [f for f in vm.cves if f.cve == CVE]
            assert (finding.package, finding.installed, finding.fixed_version, finding.kev) == (
                "demo-app", "1.0", "1.1", True), vm  # fmt: skip
        assert sorted(vm.vm for vm in assessed.vms) == [f"lab/{n}" for n in NAMES]

        summary = asyncio.run(_run(settings))
        print(f"\n[lab cve timing] lab up + assess + run --cve: {time.monotonic() - started:.1f}s")

        outcomes = {o.vm.name: o for o in summary.vms}
        assert {n: o.status for n, o in outcomes.items()} == {
            "pw-lab-1": StepStatus.SUCCEEDED, "pw-lab-2": StepStatus.ROLLED_BACK}  # fmt: skip
        assert f"still open: {CVE}" in outcomes[BREAKING].error
        for guest in state.guests:
            code, version = lab.ssh_run(guest, "dpkg-query -W -f '${Version}' demo-app", timeout=30)
            assert (code, version.strip()) == (0, "1.0" if guest.name == BREAKING else "1.1"), guest.name
        facts = FactStore(settings.state.facts_path)
        try:
            proofs = {p.vm.name: p for p in CveStore(facts).proofs(RUN)}
            applied = [
                r.detail for r in facts.step_history(RUN) if r.action == "patch" and r.phase == "intent"
            ]
        finally:
            facts.close()
        assert {n: p.verdict for n, p in proofs.items()} == {
            "pw-lab-1": FIXED_ACTIVE, "pw-lab-2": STILL_OPEN}  # fmt: skip
        assert all(set(intent.planned) == {"demo-app"} for intent in applied), applied  # type: ignore[attr-defined]
        [section] = json.loads(operations.report(settings, fmt="json"))["cves"]
        assert (section["cve"], section["affected"], section["fixed_on"], section["open_on"]) == (
            CVE, 2, ["lab/pw-lab-1"], ["lab/pw-lab-2"])  # fmt: skip
    finally:
        lab.down(state_dir)
