"""Health checks: ``command`` / ``systemd`` through the guest channel, ``http`` / ``tcp`` from here.

One check is tried up to ``1 + retries`` times, ``interval`` apart, each try bounded by
``timeout``. :func:`run_checks` runs a VM's checks once and reports every result;
:func:`wait_healthy` repeats :func:`run_checks` until all pass or the deadline ends (the post-patch
check). Nothing raises for an unhealthy guest — that is a result. Time is injected (``clock``).
``strict`` (the baseline, before anything is touched): a check that could not reach the guest at
all (unreachable, host key rejected, authentication, no agent — any channel error but a command
timeout) raises that error instead of reporting the guest unhealthy: the check did not run.
"""

from __future__ import annotations

import shlex
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from orchestrator.config.settings import HealthCheckSettings
from orchestrator.model import CheckResult, HealthReport
from providers.errors import ProviderError, ProviderTimeout
from providers.timing import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from orchestrator.guests.channel import GuestChannel

#: How much of a failing command's output is kept in the report.
DETAIL_CHARS = 300


class HealthTarget:
    """The VM being checked. Its guest channel is opened lazily (http/tcp checks never need it)."""

    def __init__(
        self,
        name: str,
        *,
        ip: str = "",
        tags: tuple[str, ...] = (),
        site: str = "",
        channel: Callable[[], GuestChannel] | None = None,
    ) -> None:
        self.name = name
        self.ip = ip
        self.tags = tags
        self.site = site
        self._open = channel
        self._channel: GuestChannel | None = None

    def channel(self) -> GuestChannel:
        if self._channel is None:
            if self._open is None:
                raise ProviderError("this check needs a guest channel and the VM has none", target=self.name)
            self._channel = self._open()
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def applies(check: HealthCheckSettings, target: HealthTarget) -> bool:
    """A check with an empty ``match`` applies to every VM."""
    return check.applies_to(target.name, target.tags, target.site)


def template(text: str, target: HealthTarget) -> str:
    return text.replace("{ip}", target.ip).replace("{name}", target.name)


def _probe_command(check: HealthCheckSettings, target: HealthTarget) -> tuple[bool, str]:
    result = target.channel().run(template(check.command, target), timeout=check.timeout_s)
    output = (result.stdout + result.stderr).strip()[-DETAIL_CHARS:]
    return result.ok, f"exit {result.exit_code}: {output}" if output else f"exit {result.exit_code}"


def _probe_systemd(check: HealthCheckSettings, target: HealthTarget) -> tuple[bool, str]:
    command = f"systemctl is-active {shlex.quote(check.unit)}"
    result = target.channel().run(command, timeout=check.timeout_s)
    state = result.stdout.strip() or result.stderr.strip()
    return result.ok, f"{check.unit} is {state or 'unknown'}"


def _probe_http(check: HealthCheckSettings, target: HealthTarget) -> tuple[bool, str]:
    url = template(check.url, target)
    try:
        with urllib.request.urlopen(url, timeout=check.timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET {url}: {reason}"
    return status == check.expect_status, f"GET {url}: HTTP {status}"


def _probe_tcp(check: HealthCheckSettings, target: HealthTarget) -> tuple[bool, str]:
    address = template(check.address, target)
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=check.timeout_s):
            return True, f"connected to {address}"
    except (OSError, ValueError) as exc:
        return False, f"connect {address}: {exc}"


PROBES: dict[str, Callable[[HealthCheckSettings, HealthTarget], tuple[bool, str]]] = {
    "command": _probe_command,
    "systemd": _probe_systemd,
    "http": _probe_http,
    "tcp": _probe_tcp,
}


def run_check(
    check: HealthCheckSettings, target: HealthTarget, *, clock: Clock = SYSTEM_CLOCK, strict: bool = False
) -> CheckResult:
    """Try ``check`` up to ``1 + retries`` times; the last try's detail is reported.

    ``strict``: a channel error other than a command timeout raises (a permanent one at once, a
    transient one when it is still there at the last try) instead of counting as unhealthy."""
    probe = PROBES[check.kind]
    detail = ""
    attempts = max(1, 1 + check.retries)
    for attempt in range(1, attempts + 1):
        try:
            ok, detail = probe(check, target)
        except ProviderError as exc:  # unreachable guest, command timeout: unhealthy, not an error
            if strict and not isinstance(exc, ProviderTimeout) and (not exc.retryable or attempt == attempts):
                raise  # the check could not run: that says nothing about the guest's health
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        if ok:
            return CheckResult(check.name, check.kind, True, detail, attempt)
        if attempt < attempts:
            clock.sleep(check.interval_s)
    return CheckResult(check.name, check.kind, False, detail, attempts)


def run_checks(
    checks: Sequence[HealthCheckSettings],
    target: HealthTarget,
    *,
    clock: Clock = SYSTEM_CLOCK,
    strict: bool = False,
) -> HealthReport:
    """Run every check that applies to ``target`` once (with its retries). No checks = healthy."""
    results = tuple(run_check(c, target, clock=clock, strict=strict) for c in checks if applies(c, target))
    return HealthReport(ok=all(r.ok for r in results), results=results)


def wait_healthy(
    checks: Sequence[HealthCheckSettings],
    target: HealthTarget,
    *,
    deadline_s: float,
    interval_s: float = 5.0,
    clock: Clock = SYSTEM_CLOCK,
    on_attempt: Callable[[HealthReport], None] = lambda report: None,
) -> HealthReport:
    """Repeat :func:`run_checks` until healthy or ``deadline_s`` passed; returns the last report."""
    deadline = clock.monotonic() + deadline_s
    while True:
        report = run_checks(checks, target, clock=clock)
        on_attempt(report)
        if report.ok or clock.monotonic() >= deadline:
            return report
        clock.sleep(min(interval_s, max(0.0, deadline - clock.monotonic())) or interval_s)
