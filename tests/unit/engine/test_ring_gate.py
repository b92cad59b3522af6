"""The ring gate's decisions (pure): why a ring is not promoted, and why an approval is refused now."""

from __future__ import annotations

import pytest

from orchestrator.engine.payloads import HealthBatchResult
from orchestrator.engine.workflows.ring_gate import added, early_approval, refusal, with_fix

ROLLED_BACK = HealthBatchResult(checked=0, sick=0, rolled_back=1, bad_sample=("app-1 (rolled back)",))
SICK = HealthBatchResult(checked=2, sick=1, sick_sample=("web-2: demo-app: exit 1",))


def test_a_ring_with_nothing_wrong_is_promoted() -> None:
    assert refusal("canary", HealthBatchResult(checked=3, sick=0), soaked=True) == ""


def test_a_rolled_back_or_failed_vm_refuses_promotion_soak_or_not() -> None:
    assert refusal("canary", ROLLED_BACK, soaked=False) == (
        "ring 'canary' has 0 failed and 1 rolled-back VM(s) (app-1 (rolled back)); not promoted"
    )
    both = added(ROLLED_BACK, SICK)
    assert refusal("canary", both, soaked=True) == (
        "ring 'canary' has 0 failed and 1 rolled-back VM(s) (app-1 (rolled back)) and is unhealthy after "
        "its soak (web-2: demo-app: exit 1); not promoted"
    )


def test_a_run_of_before_the_ring_gate_only_looks_at_health() -> None:
    assert refusal("canary", ROLLED_BACK, soaked=True, outcomes=False) == ""
    assert "is unhealthy after its soak" in refusal("canary", SICK, soaked=True, outcomes=False)


def test_samples_are_capped_and_the_rest_counted() -> None:
    many = HealthBatchResult(
        checked=0, sick=0, failed=25, bad_sample=tuple(f"vm-{i} (failed)" for i in range(20))
    )
    assert refusal("main", many, soaked=False).endswith("vm-19 (failed) and 5 more); not promoted")
    assert len(added(many, many).bad_sample) == 20 and added(many, many).failed == 50


def test_the_halt_reason_names_the_one_way_past_the_gate() -> None:
    assert with_fix("ring 'canary' … not promoted", "run-1", "canary").endswith(
        "(to promote it anyway: `patchwave approve run-1 --ring canary --force`, then `patchwave resume run-1`)"
    )


@pytest.mark.parametrize(
    ("named", "open_gate", "halted", "expected"),
    [
        ("canary", "canary", "", ""),
        ("", "canary", "", ""),
        ("main", "canary", "", ("ring 'main' is not waiting for an approval (ring 'canary' is): the run is in "
                               "phase 'approval', ring 'canary'")),
        ("main", "", "", "ring 'main' is not waiting for an approval: the run is in phase 'approval', ring 'canary'"),
        ("", "", "", "no ring is waiting for an approval: the run is in phase 'approval', ring 'canary'"),
        ("", "", "budget", "no ring is waiting for an approval: the run halted: budget"),
    ],
)  # fmt: skip
def test_an_approval_is_accepted_only_at_its_rings_open_gate(named, open_gate, halted, expected) -> None:
    why = early_approval(named, open_gate, halted=halted, phase="approval", ring="canary")
    assert why == (
        f"{expected}; an approval is accepted only while its ring's gate is open" if expected else ""
    )
