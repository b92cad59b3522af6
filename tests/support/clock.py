"""The tests' one fake clock: a :class:`providers.timing.Clock` whose time moves only when told to.

``now()`` starts at ``start`` (default: the Unix epoch) and ``monotonic()`` counts the seconds since
then. ``sleep(s)`` returns at once, moving time on by ``s`` and recording it in ``sleeps``;
``advance(s)`` moves time without a sleep (something else took that long), ``advance_to(moment)``
moves it on to a wall-clock moment (a history written over several days), ``set_time(moment)``
jumps to any moment (a fixture writing a history out of order). With ``tick`` every
``now()`` reading moves time on by that much afterwards — for records that must each get their own,
ordered timestamp. Safe to share between threads.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = EPOCH, *, tick: float = 0.0) -> None:
        self.start = start
        self.tick = tick
        self.sleeps: list[float] = []
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            moment = self.start + timedelta(seconds=self._elapsed)
            self._elapsed += self.tick
        return moment

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._elapsed += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds

    def set_time(self, moment: datetime) -> None:
        """Jump to ``moment``, back or forth (a fixture writing a history out of order)."""
        with self._lock:
            self._elapsed = (moment - self.start).total_seconds()

    def advance_to(self, moment: datetime) -> None:
        with self._lock:
            seconds = (moment - self.start).total_seconds() - self._elapsed
            if seconds < 0:
                raise ValueError(f"{moment.isoformat()} is before the clock's time: it only moves forward")
            self._elapsed += seconds
