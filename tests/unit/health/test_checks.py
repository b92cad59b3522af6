"""Health checks against real endpoints: a local HTTP server, a listening socket, commands through the
real local channel (and a fake guest's chroot for systemd). Time is a recording clock: no waits."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.settings import HealthCheckSettings, MatchSpec
from orchestrator.guests.channel import LocalChannel
from orchestrator.health import HealthTarget, run_check, run_checks, wait_healthy
from tests.support.clock import FakeClock
from tests.support.loopback import unused_port


def check(kind: str, **fields: object) -> HealthCheckSettings:
    defaults: dict[str, object] = {"timeout_s": 2.0, "retries": 0, "interval_s": 1.0}
    return HealthCheckSettings(name=f"{kind}-check", kind=kind, **{**defaults, **fields})


def local_target(name: str = "web-1", **kwargs: object) -> HealthTarget:
    return HealthTarget(name, channel=LocalChannel, **kwargs)


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_command_check_passes_on_exit_0_and_reports_the_output_otherwise() -> None:
    ok = run_check(check("command", command="echo fine"), local_target())
    bad = run_check(check("command", command="echo broken >&2; exit 3"), local_target())
    assert (ok.ok, ok.attempts) == (True, 1)
    assert (bad.ok, bad.detail) == (False, "exit 3: broken")


def test_a_failing_check_is_retried_interval_apart() -> None:
    clock = FakeClock()
    result = run_check(
        check("command", command="exit 1", retries=2, interval_s=4.0), local_target(), clock=clock
    )
    assert (result.ok, result.attempts) == (False, 3)
    assert clock.sleeps == [4.0, 4.0]


def test_http_checks_template_the_url_and_compare_the_status(http_server: str) -> None:
    host, port = http_server.split(":")
    target = HealthTarget("web-1", ip=host)
    assert run_check(check("http", url=f"http://{{ip}}:{port}/health"), target).ok
    sick = run_check(check("http", url=f"http://{{ip}}:{port}/other"), target)
    assert not sick.ok and "HTTP 503" in sick.detail


def test_http_and_tcp_checks_fail_cleanly_when_nothing_listens() -> None:
    port = unused_port()
    target = HealthTarget("web-1", ip="127.0.0.1")
    assert not run_check(check("http", url=f"http://{{ip}}:{port}/"), target).ok
    refused = run_check(check("tcp", address=f"{{ip}}:{port}"), target)
    assert not refused.ok and "connect" in refused.detail


def test_a_tcp_check_passes_when_the_port_accepts() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert run_check(check("tcp", address=f"127.0.0.1:{port}"), HealthTarget("db-1")).ok


def test_a_systemd_check_asks_the_guest(tmp_path: Path) -> None:
    from patchwave_lab.fakeguest import FakeGuest

    guest = FakeGuest.create(
        tmp_path / "g", installed={"demo-app": "1.0"}, repo={}, broken={"demo-app": "1.0"}
    )
    target = HealthTarget("g", channel=lambda: LocalChannel(root=guest.root))
    result = run_check(check("systemd", unit="demo-app"), target)
    assert not result.ok and result.detail == "demo-app is failed"


def test_checks_apply_by_tag_and_no_check_means_healthy() -> None:
    tagged = check("command", command="exit 1", match=MatchSpec(tags=("db",)))
    assert run_checks([tagged], local_target(tags=("web",))).ok
    assert run_checks([], local_target()).ok
    report = run_checks([tagged], local_target(tags=("db",)))
    assert not report.ok and report.failures.startswith("command-check: exit 1")


def test_wait_healthy_repeats_until_the_checks_pass_within_the_deadline(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    command = f"n=$(($(cat {counter}) + 1)); echo $n > {counter}; [ $n -ge 3 ]"
    clock = FakeClock()
    report = wait_healthy(
        [check("command", command=command)], local_target(), deadline_s=60, interval_s=5, clock=clock
    )
    assert report.ok and counter.read_text().strip() == "3" and clock.sleeps == [5, 5]


def test_wait_healthy_gives_the_last_report_at_the_deadline() -> None:
    clock = FakeClock()
    report = wait_healthy(
        [check("command", command="exit 1")], local_target(), deadline_s=12, interval_s=5, clock=clock
    )
    assert not report.ok and clock.monotonic() >= 12 and sum(clock.sleeps) == clock.monotonic()


def test_strict_checks_raise_when_they_cannot_reach_the_guest_instead_of_calling_it_unhealthy() -> None:
    """The baseline's mode: a check that did not run says nothing about health (VmPatch: FAILED)."""
    from orchestrator.guests.errors import GuestUnreachable
    from orchestrator.guests.ssh import SshChannel, SshTarget
    from providers.errors import ProviderError

    port = unused_port()
    unreachable = HealthTarget("web-1", channel=lambda: SshChannel(SshTarget("127.0.0.1", port=port)))
    probe = check("command", command="true", retries=2, interval_s=4.0)
    lenient = run_check(probe, unreachable, clock=FakeClock())
    assert not lenient.ok and lenient.detail.startswith("GuestUnreachable: ssh connect failed")
    clock = FakeClock()
    with pytest.raises(GuestUnreachable):  # transient: raised only when the last try still fails
        run_check(probe, unreachable, clock=clock, strict=True)
    assert clock.sleeps == [4.0, 4.0]
    clock = FakeClock()
    with pytest.raises(ProviderError, match="needs a guest channel"):  # permanent: at once, no retries
        run_checks([probe], HealthTarget("web-1"), clock=clock, strict=True)
    assert clock.sleeps == []


def test_strict_checks_still_report_a_guest_that_answers_badly_or_too_slowly_as_unhealthy() -> None:
    failing = run_check(check("command", command="exit 3"), local_target(), strict=True)
    slow = run_check(check("command", command="sleep 5", timeout_s=0.2), local_target(), strict=True)
    assert (failing.ok, failing.detail) == (False, "exit 3")
    assert not slow.ok and slow.detail.startswith("ProviderTimeout: command timed out")
    refused = run_checks([check("tcp", address=f"127.0.0.1:{unused_port()}")], HealthTarget("x"), strict=True)
    assert not refused.ok  # http/tcp probes ran: nothing listening is an answer
