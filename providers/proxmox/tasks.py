"""PVE tasks: every action returns a UPID that must be polled *and* whose exit status must be checked.

``POST .../snapshot`` answers 200 with a UPID even when the snapshot then fails inside the worker
(``VM is locked (backup)``, ``snapshot name already used``, ZFS rollback refusals, ...). So a wait
ends only when ``GET /nodes/{node}/tasks/{upid}/status`` says ``stopped`` and then:

* ``exitstatus == "OK"`` or ``"WARNINGS: <n>"`` -> success (PVE's own ``status_is_error`` rule);
* anything else -> an error carrying the exit status and the tail of the task log.

The node polled is the one named inside the UPID (for a migration that is the *source* node).
Unlike ``proxmoxer.tools.Tasks.blocking_status`` (returns ``None`` on timeout and never checks the
exit status) a wait here raises :class:`ProviderTimeout` at its deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from providers.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    ResourceBusy,
    TransientProviderError,
)
from providers.proxmox.session import LOCKED_MESSAGE, PveSession
from providers.timing import poll_delays

#: pve-common ``PVE::UPID`` (the trailing colon is part of the format).
UPID_PATTERN = re.compile(
    r"^UPID:(?P<node>[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):(?P<pid>[0-9A-Fa-f]{8}):"
    r"(?P<pstart>[0-9A-Fa-f]{8,9}):(?P<starttime>[0-9A-Fa-f]{8}):(?P<type>[^:\s/]+):"
    r"(?P<id>[^:\s/]*):(?P<user>[^:\s/]+):$"
)
_WARNINGS = re.compile(r"^WARNINGS: (?P<count>\d+)$")
LOG_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Upid:
    raw: str
    node: str
    type: str
    id: str
    user: str


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    upid: Upid
    exitstatus: str
    warnings: int = 0


class TaskFailed(PermanentProviderError):
    """A task stopped with an exit status other than ``OK`` / ``WARNINGS: n``."""

    def __init__(self, upid: Upid, exitstatus: str, log_tail: tuple[str, ...], *, target: str = "") -> None:
        tail = " | ".join(log_tail[-5:])
        super().__init__(
            f"task {upid.type} failed: {exitstatus} (task {upid.raw}; log: {tail})",
            target=target,
            code="task_failed",
        )
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail


def parse_upid(upid: object) -> Upid:
    if not isinstance(upid, str) or not (match := UPID_PATTERN.match(upid)):
        raise PermanentProviderError(
            f"PVE returned {upid!r} where a task id (UPID) was expected", code="bad_upid"
        )
    return Upid(raw=upid, node=match["node"], type=match["type"], id=match["id"], user=match["user"])


def exit_ok(exitstatus: str) -> int | None:
    """``None`` for a failed task, else the warning count (0 for ``OK``)."""
    if exitstatus == "OK":
        return 0
    if match := _WARNINGS.match(exitstatus):
        return int(match["count"])
    return None


class TaskWaiter:
    def __init__(self, session: PveSession, *, poll_interval: float) -> None:
        self.session = session
        self.poll_interval = poll_interval

    def wait(self, upid_text: object, *, timeout: float, target: str = "") -> TaskOutcome:
        """Poll until the task stops; raise on failure (with the log tail) or at the deadline."""
        upid = parse_upid(upid_text)
        clock = self.session.clock
        deadline = clock.monotonic() + timeout
        last_error: ProviderError | None = None
        delays = poll_delays(self.poll_interval)
        while True:
            try:
                status = self.session.get(f"nodes/{upid.node}/tasks/{upid.raw}/status", retry=False)
                last_error = None
            except TransientProviderError as exc:  # node briefly unreachable, proxy 5xx: keep polling
                status, last_error = None, exc
            if status and status.get("status") == "stopped":
                return self._outcome(upid, str(status.get("exitstatus", "unexpected status")), target)
            if clock.monotonic() >= deadline:
                detail = f" (last poll error: {last_error})" if last_error else ""
                raise ProviderTimeout(
                    f"task {upid.type} {upid.raw} still running after {timeout:.0f}s{detail}",
                    target=target,
                    code="task_timeout",
                )
            clock.sleep(max(0.0, min(next(delays), deadline - clock.monotonic())))

    def _outcome(self, upid: Upid, exitstatus: str, target: str) -> TaskOutcome:
        warnings = exit_ok(exitstatus)
        if warnings is not None:
            return TaskOutcome(upid=upid, exitstatus=exitstatus, warnings=warnings)
        tail = self.log_tail(upid)
        if LOCKED_MESSAGE.match(exitstatus):
            raise ResourceBusy(f"{exitstatus} (task {upid.raw})", target=target, code="locked")
        raise TaskFailed(upid, exitstatus, tail, target=target)

    def log_tail(self, upid: Upid, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
        """The last lines of the task log (``limit=0`` reads all of it; the default is 50)."""
        try:
            entries = self.session.get(f"nodes/{upid.node}/tasks/{upid.raw}/log", limit=0, retry=False)
        except ProviderError as exc:
            return (f"<task log unavailable: {exc}>",)
        return tuple(str(entry.get("t", "")) for entry in (entries or [])[-lines:])
