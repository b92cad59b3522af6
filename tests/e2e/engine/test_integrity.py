"""A patch is done only when the package manager is done and consistent — on the embedded Temporal
server, libvirt's test driver and fake Debian guests (patchwave_lab/fakeguest, a busybox chroot
without systemd: patch jobs are detached with ``setsid`` there).

One run, three guests, each with its own fault:

* ``pw-slow`` — the upgrade lingers 60 s after installing, ``patch_timeout`` is 8 s: ROLLED_BACK
  "patch timed out after 8 s", and the job was *not* killed: it is still running after the run and
  finishes when it is let go.
* ``pw-half`` — the apply exits 0 but leaves demo-app half-configured (``iF``): ROLLED_BACK with
  the inconsistency named, not SUCCEEDED.
* ``pw-noboot`` — its update asks for a reboot and the guest never comes back with a new boot id
  (the test driver's reboot does not reach the fake guest; the request asked again through its
  channel hangs): ROLLED_BACK after ``reboot_timeout`` (10 s), not 15 minutes, with the chain in the
  error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.actions import Action
from orchestrator.model import RunRequest, StepStatus
from providers.timing import wait_until
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN = "run-integrity"
SPECS = (GuestSpec("pw-half"), GuestSpec("pw-noboot", reboot=True), GuestSpec("pw-slow"))


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    made = build(tmp_path / "bed", SPECS, port=unused_port(), budget=3, concurrency=3, ttl="2h")
    text = made.config.read_text().replace(
        'patch_timeout = "2m"', 'patch_timeout = "8s"\nreboot_timeout = "10s"'
    )
    made.config.write_text(text)
    made.guests["pw-slow"].linger_after_apply(60)
    made.guests["pw-noboot"].hang_reboots()
    (made.guests["pw-half"].state / "states").write_text(
        "demo-app iF\n"
    )  # dpkg-query shows it half-configured
    return made


async def test_timeout_inconsistency_and_a_lost_reboot_are_reverted_and_dpkg_is_never_killed(
    bed: DriverBed,
) -> None:
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    started = time.monotonic()
    async with Session(settings, opener=bridge.opener) as running:
        request = RunRequest(run_id=RUN, config_digest=settings.digest, requested_by="e2e")
        summary = await watch(await start_run(running.client, request), lambda p: None, interval_s=0.5)
        outcomes = {o.vm.name: o for o in summary.vms}
        assert {n: o.status for n, o in outcomes.items()} == dict.fromkeys(
            ("pw-half", "pw-noboot", "pw-slow"), StepStatus.ROLLED_BACK
        ), [(o.vm.name, o.status, o.error) for o in summary.vms]
        for outcome in outcomes.values():
            assert f"; reverted to snapshot {outcome.snapshot_id}; healthy again" in outcome.error
        assert outcomes["pw-slow"].error.startswith("patch timed out after 8 s;"), outcomes["pw-slow"].error
        half = outcomes["pw-half"].error
        assert half.startswith("the package database is inconsistent after patching"), half
        assert "demo-app 1.1 is half-configured" in half
        noboot = outcomes["pw-noboot"].error
        assert noboot.startswith("rebooted at "), noboot
        assert "no new boot id within 10 s of the reboot (it still answered with the old boot id)" in noboot
        print(
            f"\n[integrity] run took {time.monotonic() - started:.0f}s"
        )  # not asserted: no wall clock in tests
        facts = running.facts
        for name, outcome in outcomes.items():
            results = [r for r in facts.step_history(RUN, outcome.step_id) if r.phase == "result"]
            failed = {r.action for r in results if r.ok is False}
            assert failed == ({Action.REBOOT} if name == "pw-noboot" else {Action.PATCH}), (name, results)
        # bounded by reboot_timeout, not retried: one reboot wait, one failed result
        reboots = [
            r for r in facts.step_history(RUN, outcomes["pw-noboot"].step_id) if r.action == Action.REBOOT
        ]
        assert [r.phase for r in reboots] == ["intent", "result"], reboots
        # the platform's request never reached the guest: asked again through the channel, once
        assert bed.guests["pw-noboot"].reboots() == ["reboot (hangs)"]
    assert set(bridge.reverts) == {"pw-half", "pw-noboot", "pw-slow"}

    # The timed-out job was left alone: still running after the run, finishing when let go.
    slow = bed.guests["pw-slow"]
    [line] = slow.processes()
    assert line.endswith(" started"), slow.processes()
    os.kill(int(line.split()[1]), 0)  # alive (ProcessLookupError otherwise)
    slow.stop_lingering()
    wait_until(lambda: len(slow.processes()) == 2, timeout=30, interval=0.2, what="the job to finish")
    assert slow.processes()[1].endswith(" finished")
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1, 1]  # one apply each, never retried
