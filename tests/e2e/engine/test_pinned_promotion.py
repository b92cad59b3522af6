"""Pinned promotion end to end on the test-driver bed (embedded Temporal, real activities, fake Debian
guests through the local channel): the canary takes demo-app 1.1; while the run waits at the canary's
approval gate, 1.3 is published; the main ring then gets exactly 1.1 (``apt-get install demo-app=1.1``),
and the run's record shows 1.3 held back. With ``promotion = "latest"`` the main ring takes 1.3."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.autoupdates import holds
from orchestrator.cli import render
from orchestrator.config.loader import load_settings
from orchestrator.engine.payloads import ApprovalRequest
from orchestrator.engine.runs import progress, start_run
from orchestrator.engine.session import Session
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.facts.actions import Action
from orchestrator.facts.details import AutoUpdatePauseDetail
from orchestrator.facts.store import FactStore
from orchestrator.model import RunRequest, RunSummary, StepStatus
from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")  # unattended-upgrades' (the fake systemctl's)
CANARY, MAIN = "pw-canary-1", "pw-web-1"
GATED = {"canary": "approval = true", "main": ""}


async def _rollout(bed: DriverBed, run_id: str) -> tuple[RunSummary, operations.PromotionView]:
    """Run; at the canary's gate publish demo-app 1.3 to every guest, then approve."""
    settings = load_settings(bed.config)
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest(run_id, settings.digest, requested_by="e2e"))
        for _ in range(1200):
            current = await progress(handle)
            if current is not None and current.waiting_for == "canary":
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the run never reached the canary's approval gate")
        assert bed.guests[CANARY].installed()["demo-app"] == "1.1"
        for guest in bed.guests.values():
            guest.publish("demo-app", "1.3")
        await handle.execute_update(PatchRun.approve, ApprovalRequest("canary"))
        summary = await handle.result()
    return summary, operations.promotion(settings, run_id)


async def test_the_main_ring_gets_what_the_canary_tested_and_newer_versions_are_held_back(
    tmp_path: Path,
) -> None:
    # both guests run unattended-upgrades (their timers): coexist mode, the run pauses it around the patch
    specs = (GuestSpec(CANARY, ring="canary", timers=TIMERS), GuestSpec(MAIN, timers=TIMERS))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings=GATED)
    summary, promoted = await _rollout(bed, "run-pinned")

    assert summary.status == "succeeded", summary
    assert {o.vm.name: o.status for o in summary.vms} == {
        CANARY: StepStatus.SUCCEEDED,
        MAIN: StepStatus.SUCCEEDED,
    }
    main = bed.guests[MAIN]
    assert main.published()["demo-app"] == ["1.1", "1.3"]  # 1.3 was its candidate
    assert main.installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
    [install] = main.installs()  # exactly the canary's versions, by pins
    assert install.endswith("install demo-app=1.1 openssl=3.0.15"), install

    pins = promoted.pin_set
    assert pins is not None and (pins.pin_set_id, pins.ring, pins.contributors) == (
        "run-pinned/canary",
        "canary",
        1,
    )
    assert {(e.name, e.version) for e in pins.entries} == {("demo-app", "1.1"), ("openssl", "3.0.15")}
    assert (promoted.held, promoted.held_vms) == (1, 1)
    [record] = promoted.sample
    assert (record.vm, record.held.name, record.held.candidate, record.held.pinned) == (
        MAIN,
        "demo-app",
        "1.3",
        "1.1",
    )
    lines = render.promotion_lines(promoted)
    assert lines[1] == "held back: 1 package version(s) on 1 VM(s) (not installed)"
    assert lines[2] == (
        f"  {MAIN}: demo-app 1.3 held back, installed 1.1: 1.3 is newer than the version ring 'canary' tested (1.1)"
    )

    # The updater holds what the main ring was pinned to, so it does not install 1.3 the next night;
    # the canary (no pins: it tested the newest) holds nothing.
    held = (main.root / "etc/apt/apt.conf.d/91patchwave-run-holds").read_text()
    assert '"^demo-app$";' in held and '"^openssl$";' in held and "run-pinned" in held
    record = holds.parse_record((main.root / "var/lib/patchwave/autoupdates.holds").read_text())
    assert record is not None and (record.run_id, record.packages) == ("run-pinned", ("demo-app", "openssl"))
    assert not (bed.guests[CANARY].root / "etc/apt/apt.conf.d/91patchwave-run-holds").exists()
    facts = FactStore(load_settings(bed.config).state.facts_path)
    try:
        restored = {
            o.vm.name: [r.detail.holds for r in facts.step_history("run-pinned", o.step_id, action=Action.AUTOUPDATES_RESTORE)
                        if r.phase == "result" and isinstance(r.detail, AutoUpdatePauseDetail)]
            for o in summary.vms
        }  # fmt: skip
        assert restored == {CANARY: [()], MAIN: [("demo-app", "openssl")]}
    finally:
        facts.close()


async def test_promotion_latest_lets_the_main_ring_take_the_newest(tmp_path: Path) -> None:
    specs = (GuestSpec(CANARY, ring="canary"), GuestSpec(MAIN))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings=GATED, policy='promotion = "latest"\n')
    summary, promoted = await _rollout(bed, "run-latest")

    assert summary.status == "succeeded", summary
    assert bed.guests[MAIN].installed() == {"demo-app": "1.3", "openssl": "3.0.15"}
    assert bed.guests[MAIN].installs() == []  # an ordinary upgrade
    assert promoted.pin_set is None and promoted.held == 0
