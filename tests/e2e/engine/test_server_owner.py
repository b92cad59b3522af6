"""One embedded Temporal server, one owner: real `patchwave` processes on one (or two) state dirs.

* Two `patchwave run` at once on one state dir: the server start is serialised (never "database is
  locked"); the second process attaches to the first one's server once that run holds its leases,
  and is refused naming the run and its targets.
* `patchwave serve` started while a `run` owns the server attaches to it, says so, and ends with a
  clear error when that run's process exits (instead of serving nothing).
* Another state dir whose config names the same address is refused naming the owner.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.facts.store import FactStore
from tests.support.loopback import unused_port
from tests.support.processes import kill_leftovers, start
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()


def test_two_runs_at_once_on_one_state_dir_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-web-1"), GuestSpec("pw-web-2")), port=unused_port())
    for guest in bed.guests.values():
        guest.linger_after_apply(5)  # the winner still runs when the other one is refused
    first = start(bed, "run", "--run-id", "run-one", label="run-one")
    second = start(bed, "run", "--run-id", "run-two", label="run-two")

    codes = {"run-one": first.wait(), "run-two": second.wait()}
    outputs = {"run-one": first.output(), "run-two": second.output()}

    assert sorted(codes.values()) == [0, 2], outputs
    winner = next(run for run, code in codes.items() if code == 0)
    loser = next(run for run, code in codes.items() if code == 2)
    refused = outputs[loser]
    assert f"run {winner} is active on these targets: pw-web-1, pw-web-2 (held since" in refused, refused
    assert "using the embedded Temporal server of pid" in refused, refused
    assert "database is locked" not in refused + outputs[winner]
    assert "Traceback" not in refused + outputs[winner]
    assert [g.upgrades() for g in bed.guests.values()] == [1, 1]
    facts = FactStore(bed.state / "facts.db")
    try:
        assert facts.get_run(loser) is None and facts.get_run(winner).status == "succeeded"
        assert facts.leases() == []
    finally:
        facts.close()


def test_serve_attached_to_a_runs_server_ends_when_that_run_exits(tmp_path: Path) -> None:
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings={"canary": "approval = true", "main": ""})
    run = start(bed, "--log-format", "json", "run", "--run-id", "run-owner", label="run")
    run.until("the run to wait at its canary gate", lambda: _gated(bed))

    serve = start(bed, "serve", "--no-schedules", label="serve")
    serve.until("serve to be ready", lambda: "patchwave serving on" in serve.output())
    attached = re.search(r"using the embedded Temporal server of pid (\d+) \((.*?)\)", serve.output())
    assert attached and int(attached.group(1)) == run.pid and "patchwave" in attached.group(2), serve.output()
    assert "it stops when that process exits" in serve.output()

    approve_at_gate(bed, "run-owner")
    assert run.wait() == 0, run.output()[-3000:]

    code = serve.wait("serve to notice that its server is gone", deadline_s=60)
    out = serve.output()
    assert code == 1, out[-3000:]
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"error: serve: the embedded Temporal server of pid {run.pid}"), last
    assert "stopped: that process exited" in last and "start `patchwave serve` again" in last, last
    assert "Traceback" not in out


def test_another_state_dir_on_the_same_address_is_refused_naming_the_owner(tmp_path: Path) -> None:
    port = unused_port()
    specs = (GuestSpec("pw-canary-1", ring="canary"), GuestSpec("pw-web-1"))
    first = build(tmp_path / "a", specs, port=port, rings={"canary": "approval = true", "main": ""})
    second = build(tmp_path / "b", (GuestSpec("pw-other-1"),), port=port)
    owner = start(first, "run", "--run-id", "run-a", label="run")
    owner.until("the first run to hold its server", lambda: _gated(first))

    refused = start(second, "run", "--run-id", "run-b1", label="run")
    code, out = refused.wait(), refused.output()

    assert code == 2, out[-3000:]
    assert (
        f"127.0.0.1:{port} is the embedded Temporal server of state dir {first.state} (pid {owner.pid})"
        in out
    ), out[-3000:]
    assert "set [temporal] address to another port for this state dir" in out
    assert "was planned with config" not in out and "Traceback" not in out
    assert not (second.state / "temporal.db").exists()  # nothing of B went into A's server or its own
    owner.proc.kill()
    owner.wait()


def approve_at_gate(bed: DriverBed, run_id: str) -> None:
    """`patchwave approve RUN` once the canary's gate is open: one typed while the gate still checks
    the canary is refused (exit 2) and typed again."""
    for attempt in range(120):
        approve = start(bed, "approve", run_id, label=f"approve-{attempt}")
        if approve.wait() == 0:
            return
        assert "no ring is waiting for an approval" in approve.output(), approve.output()
        time.sleep(0.5)
    pytest.fail("the canary's gate never opened")


def _gated(bed: DriverBed) -> bool:
    """The bed's run waits at its canary gate: the canary's outcome is on record."""
    if not (bed.state / "facts.db").exists():
        return False
    facts = FactStore(bed.state / "facts.db")
    try:
        runs = facts.list_runs(1)
        return bool(runs) and any(o.vm.name == "pw-canary-1" for o in facts.outcomes(runs[0].run_id))
    finally:
        facts.close()
