"""Adaptive polling (``providers.timing.poll_delays``): a short task is seen within tens of
milliseconds of its end, a long one is polled no more often than the configured interval.

The PVE task waiter is driven here against a scripted session and a fake clock: what is checked is
how many status requests a task of a given length costs and how late its end is noticed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from providers.proxmox.tasks import TaskWaiter
from providers.timing import FIRST_POLL_S, poll_delays

UPID = "UPID:pve1:000A1B2C:0012D687:65A1B2C3:qmsnapshot:100:root@pam:"


def test_delays_start_small_and_grow_to_the_ceiling_where_they_stay() -> None:
    delays = list(itertools.islice(poll_delays(1.0), 14))
    assert delays[0] == FIRST_POLL_S
    assert all(a < b for a, b in itertools.pairwise(delays[:9]))
    assert delays[-4:] == [1.0] * 4
    assert sum(delays[:8]) < 1.5  # eight polls inside the first second and a half
    assert list(itertools.islice(poll_delays(0.01), 3)) == [0.01] * 3  # a ceiling below the first pause


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class ScriptedSession:
    """A PVE session whose task stops ``length`` seconds after it started."""

    def __init__(self, clock: FakeClock, length: float) -> None:
        self.clock, self.length, self.requests = clock, length, 0

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.requests += 1
        if self.clock.monotonic() >= self.length:
            return {"status": "stopped", "exitstatus": "OK"}
        return {"status": "running"}


def _wait(length: float) -> tuple[float, int]:
    clock = FakeClock()
    session = ScriptedSession(clock, length)
    TaskWaiter(session, poll_interval=1.0).wait(UPID, timeout=600)  # type: ignore[arg-type]
    return clock.t - length, session.requests


def test_a_short_task_is_noticed_within_tens_of_milliseconds_a_long_one_costs_one_poll_a_second() -> None:
    late, requests = _wait(0.05)
    assert late < 0.05 and requests <= 4
    late, requests = _wait(60.0)
    assert late <= 1.0 and requests <= 60 + 8
