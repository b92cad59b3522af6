"""Pinned promotion on the real Debian lab (libvirt/QEMU TCG guests, real apt, the embedded Temporal
server): demo-app 1.1 is published to both guests and the canary (pw-lab-1) takes it; while the run
waits at the canary's approval gate, 1.3 is published too (the ``good+slow`` view keeps 1.1 in the
archive, 1.3 becomes apt's candidate); the main ring (pw-lab-2) then installs exactly 1.1
(``apt-get install demo-app=1.1``) and the run's record shows 1.3 held back.

Both guests' unattended-upgrades run in ``coexist`` mode (applied before the run): the run pauses them
around each patch, and on the main-ring guest it leaves the pinned package held
(``91patchwave-run-holds``, :mod:`orchestrator.autoupdates.holds`): when 1.3 then appears in the
security pocket, ``unattended-upgrade --dry-run`` would take it on the canary but not on the main
ring's guest, and ``autoupdates status`` expects the hold.

Two guests, no reboots (``reboot = "never"``: the promotion is what is tested here), one run.
Needs libvirtd and the lab packages (.ci/setup-libvirt.sh, .ci/setup-lab.sh).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import autoupdate_fleet, operations
from orchestrator import autoupdates as au
from orchestrator.config.autoupdates import AutoUpdateConfig, AutoUpdateSettings
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.engine.payloads import ApprovalRequest
from orchestrator.engine.runs import progress, start_run
from orchestrator.engine.session import Session
from orchestrator.engine.workflows.patch_run import PatchRun
from orchestrator.facts.details import AutoUpdatePauseDetail, PatchIntent
from orchestrator.facts.store import FactStore
from orchestrator.guests.osinfo import detect_os
from orchestrator.guests.ssh import SshChannel
from orchestrator.model import RebootPolicy, RunRequest, RunSummary, StepStatus
from patchwave_lab import control as lab
from patchwave_lab import repo
from patchwave_lab.state import LabState
from tests.support.loopback import unused_port
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

CONFIG = REPO / "patchwave_lab" / "configs" / "lab.toml"
RUN = "run-lab-pinned"
CANARY, MAIN = "pw-lab-1", "pw-lab-2"
COEXIST = AutoUpdateSettings(mode="coexist", origins=(repo.SECURITY_ORIGIN_PATTERN,))
UU_DRY_RUN = "apt-get -q update >/dev/null 2>&1 && unattended-upgrade --dry-run -d 2>&1"


def _settings(state_dir: Path) -> Settings:
    """lab.toml with pinned promotion, an approval gate after the canary (where 1.3 is published), no reboots."""
    settings = load_settings(CONFIG, state_dir=state_dir)
    never = RebootPolicy.NEVER
    return replace(
        settings,
        temporal=replace(settings.temporal, address=f"127.0.0.1:{unused_port()}"),
        rings=tuple(replace(r, approval=r.name == "canary") for r in settings.rings),
        policy=replace(
            settings.policy, reboot=never, promotion="pinned"
        ),  # lab.toml says "latest" (the demo)
        groups=tuple(replace(g, policy=replace(g.policy, reboot=never)) for g in settings.groups),
        autoupdates=AutoUpdateConfig(default=COEXIST),
    )


def _apply_coexist(state: LabState) -> None:
    """unattended-upgrades configured in coexist mode on both guests (what `autoupdates apply` does)."""
    for guest in state.guests:
        channel = SshChannel(lab.ssh_target(guest))
        try:
            policy = au.resolve_policy(COEXIST, now=datetime.now(UTC), group="lab")
            au.apply(channel, au.plan(detect_os(channel), policy))
        finally:
            channel.close()


async def _rollout(settings: Settings, state_dir: Path, state: LabState) -> tuple[RunSummary, str]:
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
        deadline = time.monotonic() + 1200
        while (current := await progress(handle)) is None or current.waiting_for != "canary":
            assert time.monotonic() < deadline, "the run never reached the canary's approval gate"
            await asyncio.sleep(1)
        canary_version = lab.installed_version(state.guest(CANARY))
        lab.publish(state_dir, "good+slow")  # 1.3 appears before the main ring starts
        await handle.execute_update(PatchRun.approve, ApprovalRequest("canary"))
        return await handle.result(), canary_version


def test_the_main_ring_gets_the_canarys_1_1_and_1_3_is_held_back(tmp_path: Path) -> None:
    state_dir = tmp_path / "lab"
    started = time.monotonic()
    state = lab.up(state_dir, guests=2)
    try:
        lab.publish(state_dir, "good")
        _apply_coexist(state)
        settings = _settings(state_dir)
        summary, canary_version = asyncio.run(_rollout(settings, state_dir, state))
        print(f"\n[lab pinned promotion timing] up + run: {time.monotonic() - started:.1f}s")

        assert canary_version == "1.1"
        assert {o.vm.name: o.status for o in summary.vms} == {
            CANARY: StepStatus.SUCCEEDED,
            MAIN: StepStatus.SUCCEEDED,
        }, [(o.vm.name, o.error) for o in summary.vms]
        code, policy = lab.ssh_run(state.guest(MAIN), "apt-cache policy demo-app", timeout=60)
        assert code == 0 and "Candidate: 1.3" in policy, policy  # 1.3 was offered to it
        assert lab.installed_version(state.guest(MAIN)) == "1.1"
        assert lab.health_ok(state.guest(MAIN))

        promoted = operations.promotion(settings, RUN)
        assert promoted.pin_set is not None and promoted.pin_set.contributors == 1
        assert [(e.name, e.version) for e in promoted.pin_set.entries] == [("demo-app", "1.1")]
        [held] = promoted.sample
        assert (held.vm, held.held.name, held.held.candidate, held.held.pinned) == (
            MAIN,
            "demo-app",
            "1.3",
            "1.1",
        )
        facts = FactStore(settings.state.facts_path)
        try:
            main = next(o for o in summary.vms if o.vm.name == MAIN)
            [intent] = [
                r.detail
                for r in facts.step_history(RUN, main.step_id)
                if r.action == "patch" and r.phase == "intent"
            ]
            assert isinstance(intent, PatchIntent)
            assert (intent.mode, intent.pins, dict(intent.planned)) == (
                "pinned",
                ("demo-app=1.1",),
                {"demo-app": "1.1"},
            )
            restores = [
                r.detail for r in facts.step_history(RUN, main.step_id)
                if r.action == "autoupdates_restore" and r.phase == "result"
                and isinstance(r.detail, AutoUpdatePauseDetail)
            ]  # fmt: skip
            assert [(d.state, d.holds) for d in restores] == [("restored", ("demo-app",))]
        finally:
            facts.close()
        _the_updater_respects_the_runs_holds(state, state_dir, settings)
    finally:
        lab.down(state_dir)


def _the_updater_respects_the_runs_holds(state: LabState, state_dir: Path, settings: Settings) -> None:
    main, canary = state.guest(MAIN), state.guest(CANARY)
    code, held = lab.ssh_run(main, "cat /etc/apt/apt.conf.d/91patchwave-run-holds", timeout=60)
    assert code == 0 and '"^demo-app$";' in held and RUN in held, held
    assert lab.ssh_run(canary, "test -e /etc/apt/apt.conf.d/91patchwave-run-holds", timeout=60)[0] == 1
    lab.publish(state_dir, "good+slow", pocket="security")  # 1.3 as a security update now
    code, output = lab.ssh_run(main, UU_DRY_RUN, timeout=240)
    assert code == 0 and "Initial blacklist: ^demo-app$" in output, output
    assert "No packages found that can be upgraded unattended" in output, output
    code, output = lab.ssh_run(canary, UU_DRY_RUN, timeout=240)  # no holds: the updater would take 1.3
    assert code == 0 and "Packages that will be upgraded: demo-app" in output, output
    [row] = [r for r in autoupdate_fleet.autoupdate_status(settings, selection=(MAIN,)) if r.vm.name == MAIN]
    assert row.status is not None and row.status.run_holds is not None, row
    assert (row.status.run_holds.run_id, row.status.run_holds.packages) == (RUN, ("demo-app",))
    assert not row.status.drift, row.status.drift
