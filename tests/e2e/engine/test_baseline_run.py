"""A run installs what the group's patch baseline approves — not everything its ``[policy] updates`` allows.

A real run (CLI, embedded Temporal, test driver, fake Debian guests through the ``local`` channel;
both have demo-app 1.0 -> 1.1 and openssl 3.0.11 -> 3.0.15 pending). The ``web`` group picks a
Debian baseline that rejects demo-app and holds nothing else; the other group has none (promotion
"latest", so that the second ring's selection is its own, not the pin set of what the first installed). The baseline
VM gets exactly the approved pin (openssl=3.0.15) and keeps demo-app 1.0; the other VM gets both.
The intent journaled before the install names the pins (a resumed attempt installs the same set).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import PatchIntent
from orchestrator.facts.store import FactStore
from orchestrator.model import StepStatus
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import GuestSpec, build

pytestmark = pytest.mark.e2e

BASELINE = """
[[baselines]]
name = "debian-web"
os = "debian"
classification = "all"
rejected = ["demo-app"]
"""


def test_the_baseline_decides_what_the_run_installs(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-web-1", ring="web"), GuestSpec("pw-db-1", ring="main"))
    bed = build(
        tmp_path / "bed",
        specs,
        port=unused_port(),
        rings={"web": "", "main": ""},
        policy='promotion = "latest"',
    )  # each ring its own selection (pinned: the web ring's)
    text = bed.config.read_text().replace('ring = "web"\n', 'ring = "web"\nbaseline = ["debian-web"]\n', 1)
    bed.config.write_text(text + BASELINE)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(bed.config), "run", "--run-id", "run-baseline"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert bed.guests["pw-web-1"].installed() == {"demo-app": "1.0", "openssl": "3.0.15"}
    assert bed.guests["pw-db-1"].installed() == {"demo-app": "1.1", "openssl": "3.0.15"}
    assert '"event": "baseline_applied"' in done.stderr and "demo-app: rejected" in done.stderr

    facts = FactStore(bed.state / "facts.db")
    try:
        outcomes = {o.vm.name: o for o in facts.outcomes("run-baseline")}
        assert {n: o.status for n, o in outcomes.items()} == {
            "pw-web-1": StepStatus.SUCCEEDED,
            "pw-db-1": StepStatus.SUCCEEDED,
        }
        history = facts.step_history("run-baseline", outcomes["pw-web-1"].step_id, action=Action.PATCH)
        intents = [r.detail for r in history if r.phase is Phase.INTENT]
        assert len(intents) == 1 and isinstance(intents[0], PatchIntent)
        assert intents[0].pins == ("openssl=3.0.15",) and intents[0].planned == {"openssl": "3.0.15"}
        db_history = facts.step_history("run-baseline", outcomes["pw-db-1"].step_id, action=Action.PATCH)
        assert [r.detail.pins for r in db_history if r.phase is Phase.INTENT] == [()]  # no baseline: no pins
    finally:
        facts.close()
