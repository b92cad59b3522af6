"""A rolled-back canary stops promotion; an approval is taken only at its ring's open gate (issue 12.2).

The real embedded server, in-process workers, libvirt's test driver and fake Debian guests (their
"disks" follow reverts: tests/support/guest_disks.py). pw-canary-1's update breaks its health check,
so it is rolled back. Before the ring gate, the same run patched both main-ring VMs anyway, and an
`approve` typed while the canary was still patching pre-approved the gate.

Semantics asserted here:
* ``count_rolled_back = true`` (default): a rolled-back VM counts against the failure budget; with
  ``failure_budget = 0`` the run halts in the canary ring (exit 3), main untouched. Resuming
  acknowledges the budget, but the ring gate refuses promotion (the canary was rolled back): halted
  again, recorded as a gate refusal. Only ``approve --ring canary --force`` (recorded, with the OS user)
  lets the next ``resume`` promote.
* ``count_rolled_back = false``: the budget lets the rollback pass; the ring gate still halts the run.
* an approval names a ring whose gate is open; one typed early is refused (exit 2) and leaves nothing
  behind: the gate still decides later.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator import operations
from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import progress, resume_run, start_run, watch
from orchestrator.engine.session import Session
from orchestrator.errors import ApprovalRefused
from orchestrator.model import ExitCode, RunRequest, RunSummary, StepStatus
from tests.support.guest_disks import DiskBridge
from tests.support.loopback import unused_port
from tests.support.processes import kill_leftovers, start
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN = "run-gate"
MAIN = ("pw-web-1", "pw-web-2")
SPECS = (GuestSpec("pw-canary-1", ring="canary", broken_after_patch=True), *(GuestSpec(n) for n in MAIN))
DEADLINE_S = 180.0


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()


async def until(what: str, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.1)


def bed_of(tmp_path: Path, *, policy: str = "", rings: dict[str, str] | None = None) -> DriverBed:
    rings = rings or {"canary": "", "main": ""}
    # promotion "latest": a ring forced past its gate installs what it is offered (pinned promotion would
    # hold back everything a rolled-back canary never tested: tests/e2e/engine/test_pinned_promotion.py)
    policy = 'promotion = "latest"\n' + policy
    return build(tmp_path / "bed", SPECS, port=unused_port(), rings=rings, budget=0, policy=policy, ttl="2h")


def by_name(summary: RunSummary) -> dict[str, StepStatus]:
    return {o.vm.name: o.status for o in summary.vms}


def assert_main_untouched(bed: DriverBed, summary: RunSummary) -> None:
    for name in MAIN:
        assert by_name(summary)[name] is StepStatus.SKIPPED, summary
        assert bed.guests[name].patches() == [] and bed.guests[name].upgrades() == 0, name


async def test_a_rolled_back_canary_halts_before_main_until_an_operator_forces_the_ring(
    tmp_path: Path,
) -> None:
    bed = bed_of(tmp_path, rings={"canary": "approval = true", "main": ""})  # forced = approved too
    bed.guests["pw-canary-1"].linger_after_apply(60)  # the canary is still patching while we approve
    settings = load_settings(bed.config)
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
        await until("the canary's upgrade", lambda: len(bed.guests["pw-canary-1"].patches()) == 2)

        # Early approvals (the canary ring still patching) are refused, whatever ring they name.
        for ring, said in (("main", "ring 'main' is not waiting for an approval"),
                           ("", "no ring is waiting for an approval")):  # fmt: skip
            with pytest.raises(ApprovalRefused) as early:
                await operations.approve(settings, RUN, ring, by="tester")
            assert early.value.exit_code == 2
            assert said in str(early.value) and "the run is in phase 'guests', ring 'canary'" in str(
                early.value
            )
        bed.guests["pw-canary-1"].stop_lingering()

        # The canary is rolled back: it counts against the budget (0) and the run halts before main.
        first = await watch(handle, lambda p: None, interval_s=0.3)
        assert first.status == "halted" and first.exit_code == ExitCode.HALTED, first
        assert (
            "failure budget exhausted: 1 VM(s) failed or were rolled back (pw-canary-1)"
            in first.halted_reason
        )
        assert by_name(first)["pw-canary-1"] is StepStatus.ROLLED_BACK and set(bridge.reverts) == {
            "pw-canary-1"
        }
        assert_main_untouched(bed, first)
        assert running.facts.gate_records(RUN) == []  # the early approvals left nothing behind
        with pytest.raises(
            ApprovalRefused, match="no ring gate refused this run"
        ):  # a budget halt, not a gate
            await operations.approve(settings, RUN, "canary", force=True, by="tester")

        # Resuming acknowledges the budget, but the ring gate refuses promotion past the canary.
        second = await watch(
            await resume_run(running.client, RUN, running.facts), lambda p: None, interval_s=0.3
        )
        assert second.status == "halted" and second.exit_code == ExitCode.HALTED, second
        assert second.halted_reason.startswith(
            "ring 'canary' has 0 failed and 1 rolled-back VM(s) (pw-canary-1 (rolled back)); not promoted"
        ), second.halted_reason
        assert f"`patchwave approve {RUN} --ring canary --force`" in second.halted_reason
        assert_main_untouched(bed, second)
        [refused] = running.facts.gate_records(RUN)
        assert (refused.ring, refused.decision, refused.decided_by) == ("canary", "refused", "patchwave")

        # The CLI: an approval of the halted run is refused with the way past it; --force is recorded.
        main = start(bed, "approve", RUN, "--ring", "main", label="approve-main")
        code, out = await asyncio.to_thread(main.wait), main.output()
        assert code == 2 and "Traceback" not in out, out
        assert f"approval of run {RUN} refused: the run halted: ring 'canary'" in out, out
        assert f"patchwave approve {RUN} --ring canary --force" in out, out
        forced = start(bed, "approve", RUN, "--ring", "canary", "--force", label="approve-force")
        code, out = await asyncio.to_thread(forced.wait), forced.output()
        assert code == 0, out
        assert "ring canary of run-gate forced past its gate" in out and f"patchwave resume {RUN}" in out, out
        gates = running.facts.gate_records(RUN)  # the CLI wrote them (another process)
        assert [(g.decision, g.decided_by) for g in gates] == [
            ("refused", "patchwave"),
            ("forced", getpass.getuser()),
        ]
        assert gates[1].reason == refused.reason

        # Resumed, the forced gate (and its approval gate) lets main be patched; the canary is not redone.
        third = await watch(
            await resume_run(running.client, RUN, running.facts), lambda p: None, interval_s=0.3
        )
    assert third.status == "failed" and third.halted_reason == "", third  # a rollback is reported: exit 1
    assert by_name(third) == {"pw-canary-1": StepStatus.ROLLED_BACK, "pw-web-1": StepStatus.SUCCEEDED,
                              "pw-web-2": StepStatus.SUCCEEDED}  # fmt: skip
    assert [bed.guests[n].upgrades() for n in ("pw-canary-1", *MAIN)] == [1, 1, 1]
    lines = operations.gate_decisions(settings, RUN)
    assert [line.split(" at ")[0] for line in lines] == [
        "ring canary: refused by patchwave",
        f"ring canary: forced by {getpass.getuser()}",
    ]


async def test_without_count_rolled_back_the_budget_passes_but_the_ring_gate_stops_promotion(
    tmp_path: Path,
) -> None:
    bed = bed_of(tmp_path, policy="count_rolled_back = false")
    settings = load_settings(bed.config)
    assert settings.policy.count_rolled_back is False
    bridge = DiskBridge({bed.uuids[name]: guest for name, guest in bed.guests.items()})
    async with Session(settings, opener=bridge.opener) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
        summary = await watch(handle, lambda p: None, interval_s=0.3)
    assert summary.status == "halted" and summary.exit_code == ExitCode.HALTED, summary
    assert "failure budget" not in summary.halted_reason
    assert summary.halted_reason.startswith("ring 'canary' has 0 failed and 1 rolled-back VM(s)"), summary
    assert by_name(summary)["pw-canary-1"] is StepStatus.ROLLED_BACK
    assert_main_untouched(bed, summary)


async def test_an_approval_at_the_open_gate_of_a_healthy_ring_is_accepted_and_recorded(
    tmp_path: Path,
) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings={"canary": "approval = true", "main": ""})
    settings = load_settings(bed.config)
    async with Session(settings) as running:
        handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
        deadline = time.monotonic() + DEADLINE_S
        while (current := await progress(handle)) is None or current.waiting_for != "canary":
            assert time.monotonic() < deadline, "the run never reached its canary gate"
            await asyncio.sleep(0.2)
        assert bed.guests["pw-web-1"].patches() == []
        with pytest.raises(
            ApprovalRefused, match="ring 'main' is not waiting for an approval \\(ring 'canary' is\\)"
        ):
            await operations.approve(settings, RUN, "main", by="tester")
        done = await operations.approve(settings, RUN, "", by="tester")
        assert (done.ring, done.forced, done.resume) == ("canary", False, False)
        summary = await watch(handle, lambda p: None, interval_s=0.3)
        assert summary.status == "succeeded", summary
        assert [(g.ring, g.decision, g.decided_by) for g in running.facts.gate_records(RUN)] == [
            ("canary", "approved", "tester")
        ]
