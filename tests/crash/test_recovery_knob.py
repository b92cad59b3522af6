"""``PATCHWAVE_RECOVERY_S`` (orchestrator.engine.retry) shortens crash recovery for the crash-injection
harness and changes nothing when unset. Read at import, so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.paths import REPO

PROBE = """
import json
from orchestrator.engine import retry
from orchestrator.engine.activities import heartbeat
print(json.dumps({
    "task_timeout": retry.WORKFLOW_TASK_TIMEOUT and retry.WORKFLOW_TASK_TIMEOUT.total_seconds(),
    "heartbeat": retry.options("vm_patch").heartbeat_s,
    "beat_every": heartbeat.HEARTBEAT_EVERY_S,
    "bookkeeping": retry.options("vm_record_outcome").start_to_close_s,
    "patch_with_deadline": retry.options("vm_patch", timeout_s=600).start_to_close_s,
    "patch_retry_s": retry.POLICIES["guest_patch"].initial_interval.total_seconds(),
}))
"""


def probe(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PATCHWAVE_RECOVERY_S"}
    if value is not None:
        env["PATCHWAVE_RECOVERY_S"] = value
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**env, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out)


def test_unset_keeps_the_production_timeouts() -> None:
    assert probe(None) == {"task_timeout": None, "heartbeat": 30.0, "beat_every": 5.0, "bookkeeping": 60,
                           "patch_with_deadline": 3600, "patch_retry_s": 10.0}  # fmt: skip


def test_set_shortens_every_wait_after_a_crash_but_not_the_work_itself() -> None:
    assert probe("3") == {"task_timeout": 3.0, "heartbeat": 3.0, "beat_every": 1.0, "bookkeeping": 15.0,
                          "patch_with_deadline": 3600, "patch_retry_s": 3.0}  # fmt: skip
