"""The metrics endpoint over real HTTP on loopback, over a real fact store (tests/support/fleet.py), scraped
with urllib and parsed with prometheus_client's parsers (classic text and OpenMetrics): served by
``serving`` and by the real `patchwave serve`; and the same figures as `patchwave report --format
openmetrics` writes them, through the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import MetricsSettings, Settings
from orchestrator.facts.actions import Action
from orchestrator.facts.details import RebootDetail
from orchestrator.metrics.exposition import MetricsEndpointError, serving
from orchestrator.model import vm_step_id
from tests.support.fleet import NOW, WEB1, populate_fleet
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Later:
    """The fleet's clock, an hour after its NOW (the metrics' ``now``)."""

    def now(self):
        return NOW + timedelta(hours=1)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        raise AssertionError


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    state = tmp_path / "state"
    fleet = populate_fleet(state / "facts.db")
    fleet.store.close()
    config = tmp_path / "patchwave.toml"
    config.write_text(
        f'[state]\ndir = "{state}"\n[providers.dc1]\nkind = "libvirt"\nuri = "test:///default"\n'
        f'[metrics]\nport = {unused_port()}\ncache = 0\n'
    )  # fmt: skip
    yield load_settings(config, environ={})


def scrape(url: str, accept: str = "") -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers["Content-Type"], answer.read().decode("utf-8")


def values(families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_the_endpoint_serves_the_fleet_over_http(settings: Settings) -> None:
    with serving(settings, clock=Later()) as url:
        assert url == f"http://127.0.0.1:{settings.metrics.port}/metrics"
        kind, text = scrape(url)
        assert kind.startswith("text/plain")
        found = values(parse_prometheus(text))
        assert found[("patchwave_noncompliant_machines", (("group", "web"),))] == 1
        assert found[("patchwave_noncompliant_machines", (("group", "apps"),))] == 1
        assert found[("patchwave_unassessed_machines", (("group", "default"),))] == 2
        assert found[("patchwave_pending_updates", (("severity", "critical"),))] == 1
        assert found[("patchwave_reboot_required_machines", ())] == 1
        assert found[("patchwave_hosts_in_maintenance", ())] == 1
        assert (
            found[("patchwave_vm_outcomes", (("ring", "canary"), ("site", "dc1"), ("status", "failed")))] == 1
        )
        assert found[("patchwave_snapshot_oldest_age_seconds", (("state", "kept"),))] == 16 * 3600
        # an endpoint's histogram counts the steps recorded while it runs
        assert found[("patchwave_step_duration_seconds_count", (("action", "patch"),))] == 0

        kind, text = scrape(url, accept=OPENMETRICS)
        assert kind.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
        families = {f.name: f for f in parse_openmetrics(text)}
        assert families["patchwave_step_duration_seconds"].type == "histogram"
        assert families["patchwave_step_duration_seconds"].unit == "seconds"
    with pytest.raises(OSError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", settings.metrics.port), timeout=2).close()


def test_steps_recorded_while_it_runs_are_counted(settings: Settings) -> None:
    from orchestrator.facts.store import FactStore
    from tests.support.clock import FakeClock

    with serving(settings, clock=Later()) as url:
        scrape(url)  # the endpoint counts from where the journal ended when it started
        clock = FakeClock(NOW)
        facts = FactStore(settings.state.facts_path, clock=clock)
        try:
            facts.record_intent("run-9", vm_step_id(WEB1), Action.REBOOT, detail=RebootDetail(boot_id="b0"))
            clock.set_time(NOW + timedelta(seconds=200))
            facts.record_result(
                "run-9", vm_step_id(WEB1), Action.REBOOT, ok=True, detail=RebootDetail(boot_id="b1")
            )
        finally:
            facts.close()
        found = values(parse_prometheus(scrape(url)[1]))
    assert found[("patchwave_step_duration_seconds_count", (("action", "reboot"),))] == 1
    assert found[("patchwave_step_duration_seconds_bucket", (("action", "reboot"), ("le", "120.0")))] == 0
    assert found[("patchwave_step_duration_seconds_bucket", (("action", "reboot"), ("le", "300.0")))] == 1


def test_a_busy_port_is_an_error_that_says_what_to_do(settings: Settings) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = replace(settings, metrics=MetricsSettings(port=busy.getsockname()[1]))
        with pytest.raises(MetricsEndpointError) as caught, serving(taken):
            pass
    assert "cannot serve metrics on 127.0.0.1" in str(caught.value) and "[metrics] port" in caught.value.fix


def test_no_endpoint_without_a_port(settings: Settings) -> None:
    with serving(replace(settings, metrics=MetricsSettings())) as url:
        assert url == ""


def test_the_report_command_writes_openmetrics_for_a_textfile_collector(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "textfile" / "patchwave.prom"
    out.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(settings.file), "report", "--format", "openmetrics",
         "-o", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.parent.iterdir()] == ["patchwave.prom"]  # written whole: no part file left
    families = {f.name: f for f in parse_openmetrics(out.read_text())}
    found = values(families.values())
    # the whole journal on record: run-1's and run-3's patches
    assert found[("patchwave_step_duration_seconds_count", (("action", "patch"),))] == 5
    assert found[("patchwave_machines", (("group", "web"),))] == 2
    assert families["patchwave_inventory_timestamp_seconds"].samples[0].value > 0


def test_serve_serves_the_metrics_until_it_stops(settings: Settings, tmp_path: Path) -> None:
    """The real `patchwave serve` (embedded Temporal, workers): the endpoint is up once it says so, and gone
    once SIGTERM ended it."""
    config = settings.file.read_text() + f'[temporal]\naddress = "127.0.0.1:{unused_port()}"\n'
    settings.file.write_text(config)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(settings.file), "serve", "--no-schedules"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{settings.metrics.port}/metrics"
        for _ in range(240):
            if f"metrics on {url}" in log.read_text() or serve.poll() is not None:
                break
            time.sleep(0.25)
        assert f"metrics on {url}" in log.read_text(), log.read_text()[-2000:]
        found = values(parse_prometheus(scrape(url)[1]))
        assert found[("patchwave_machines", (("group", "web"),))] == 2
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()[-2000:]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", settings.metrics.port), timeout=2).close()
