"""Time for waits and retries: an injectable :class:`Clock`, bounded polls, named retry policies.

Every wait has a deadline and raises :class:`~providers.errors.ProviderTimeout` (never returns ``None``
silently); every retry goes through a named :class:`RetryPolicy` with an explicit stop and a retry
predicate (tenacity, with the clock's ``sleep`` so tests never wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import tenacity

from providers.errors import ProviderError, ProviderTimeout


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


def utc_now_iso(clock: Clock = SYSTEM_CLOCK) -> str:
    return clock.now().astimezone(UTC).isoformat(timespec="seconds")


T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    what: str,
    clock: Clock = SYSTEM_CLOCK,
    target: str = "",
) -> T:
    """Poll ``probe`` until it returns something truthy; raise :class:`ProviderTimeout` at the deadline."""
    deadline = clock.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if clock.monotonic() >= deadline:
            raise ProviderTimeout(f"timed out after {timeout:.0f}s waiting for {what}", target=target)
        clock.sleep(min(interval, max(0.0, deadline - clock.monotonic())) or interval)


#: The first pause of an adaptive poll: a task or guest command that is over in tens of milliseconds
#: is seen as soon as it ends (a PVE guest command took 1.006 s at a fixed 1 s poll, 0.067 s at 0.02 s).
FIRST_POLL_S = 0.02
POLL_GROWTH = 1.6


def poll_delays(
    ceiling: float, *, first: float = FIRST_POLL_S, growth: float = POLL_GROWTH
) -> Iterator[float]:
    """The pauses between polls: from ``first`` growing by ``growth`` up to ``ceiling`` (the configured
    interval), where they stay — a long task is polled as often as with the fixed interval, plus the
    eight short polls of its first second."""
    delay = min(first, ceiling)
    while True:
        yield delay
        delay = min(ceiling, delay * growth)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A named, bounded retry policy. Used with tenacity in-process and mapped to Temporal's."""

    name: str
    max_attempts: int
    initial_s: float
    max_s: float
    multiplier: float = 2.0
    deadline_s: float | None = None

    def retrying(self, clock: Clock = SYSTEM_CLOCK) -> tenacity.Retrying:
        stops: list[tenacity.stop.stop_base] = [tenacity.stop_after_attempt(self.max_attempts)]
        if self.deadline_s is not None:
            stops.append(tenacity.stop_after_delay(self.deadline_s))
        return tenacity.Retrying(
            stop=tenacity.stop_any(*stops),
            wait=tenacity.wait_exponential(
                multiplier=self.initial_s, max=self.max_s, exp_base=self.multiplier
            ),
            retry=tenacity.retry_if_exception(is_retryable),
            sleep=clock.sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], T], clock: Clock = SYSTEM_CLOCK) -> T:
        return self.retrying(clock)(fn)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


#: An API call against a hypervisor manager (vCenter, PVE API, libvirtd).
API_CALL = RetryPolicy("api_call", max_attempts=5, initial_s=0.5, max_s=10.0, deadline_s=120.0)
#: Re-establishing a session (re-login after NotAuthenticated / expired ticket).
RELOGIN = RetryPolicy("relogin", max_attempts=2, initial_s=0.2, max_s=1.0)
#: Waiting for an object lock held by someone else to be released.
LOCK_WAIT = RetryPolicy("lock_wait", max_attempts=30, initial_s=1.0, max_s=10.0, deadline_s=300.0)

POLICIES: Mapping[str, RetryPolicy] = {p.name: p for p in (API_CALL, RELOGIN, LOCK_WAIT)}
