"""The host phase in maintenance windows, as planned: which window a failure domain waits for, its
worst case, and where the timeline puts it (the same walk HostBatch does, orchestrator.windows.hosts)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.planning.planner import make_plan
from providers.base import Inventory
from tests.unit.planning.test_planner import ALL, E1, EAST, NOW, W1, WEST, codes, host, plan, settings, vm

# The main ring's group (web-*, db-*) waits for Saturday 22:00 Berlin (20:00 UTC), 4 h, cutoff 15 min.
WEEKEND = """
[[groups]]
name = "main"
ring = "main"
match = {{ names = ["web-*", "db-*"] }}
window = "weekend"
[[groups]]
name = "canary"
ring = "canary"
match = {{ names = ["app-*"] }}
[rings]
order = ["canary", "main"]
[policy]
default_vm_duration = "10m"
health_deadline = "1m"
[hosts]
default_duration = "20m"
{hosts}
[windows.weekend]
cron = "0 22 * * SAT"
duration = "4h"
timezone = "Europe/Berlin"
cutoff = "15m"
[windows.nightly]
cron = "0 1 * * *"
duration = "2h"
timezone = "UTC"
"""
SATURDAY = "2026-05-09T20:00:00+00:00"


def weekend(hosts: str = "") -> Settings:
    return settings(WEEKEND.format(hosts=hosts))


def test_hosts_wait_for_the_window_of_their_guests_and_the_first_wave_follows_them() -> None:
    p = plan([EAST], weekend())
    assert [(d.domain_id, d.window, d.worst_case_s) for d in p.host_phase] == [
        ("east:c1", "weekend", 2400),  # e1 + e2, 20 min each
        ("east:c2", "weekend", 1200),
    ]
    assert [(d.est_start, d.est_end) for d in p.host_phase] == [
        (SATURDAY, "2026-05-09T20:40:00+00:00"),
        ("2026-05-09T20:40:00+00:00", "2026-05-09T21:00:00+00:00"),
    ]
    assert [h.need_s for h in p.host_steps] == [2400, 1200, 1200]  # e1: its domain's worst case; e2: the rest
    assert p.waves[0].est_start == "2026-05-09T21:00:00+00:00"  # after the host phase, in the window


def test_a_guest_with_a_window_on_the_host_wins_over_one_without() -> None:
    # w1 runs a canary guest (no window) and a main guest (weekend): the host waits for the weekend.
    west = Inventory("west", hosts=(W1,), vms=(vm("west", "app-1", W1), vm("west", "web-9", W1)))
    assert [d.window for d in plan([west], weekend()).host_phase] == ["weekend"]
    only_canary = Inventory("west", hosts=(W1,), vms=(vm("west", "app-1", W1),))
    p = plan([only_canary], weekend())
    assert [(d.window, d.est_start) for d in p.host_phase] == [("", "2026-05-06T12:00:00+00:00")]


def test_a_host_without_guests_takes_the_window_of_its_sites_guests() -> None:
    empty = host("east", "e9", "c9")
    east = Inventory("east", hosts=(E1, empty), vms=(vm("east", "web-1", E1),))
    p = plan([east], weekend('scope = "all"'))
    assert {d.domain_id: d.window for d in p.host_phase} == {"east:c1": "weekend", "east:c9": "weekend"}


def test_hosts_window_names_the_window_or_none() -> None:
    p = plan([EAST], weekend('window = "nightly"'))
    assert {d.window for d in p.host_phase} == {"nightly"}
    assert p.host_phase[0].est_start == "2026-05-07T01:00:00+00:00"
    p = plan([EAST], weekend('window = "none"'))
    assert {d.window for d in p.host_phase} == {""}
    assert p.host_phase[0].est_start == "2026-05-06T12:00:00+00:00"  # the engine starts hosts at once
    assert p.waves[-1].est_start == SATURDAY  # the windowed wave still waits for its window


def test_a_scheduled_runs_window_binds_the_hosts_of_windowless_guests() -> None:
    p = make_plan([WEST], weekend(), NOW, capabilities={"west": ALL}, window="nightly")
    assert [(d.window, d.est_start) for d in p.host_phase] == [("nightly", "2026-05-07T01:00:00+00:00")]


def test_the_worst_case_is_the_longest_past_run_and_a_domain_that_never_fits_is_blocked() -> None:
    # e3 once took 3 h 50 min: with the 4 h - 15 min weekend window it can never start; blocked.
    history = {"host:east:id-e3": [600.0, 13800.0], "host:east:id-e1": [300.0, 900.4]}
    p = plan([EAST], weekend(), history=history)
    assert [d.domain_id for d in p.host_phase] == ["east:c1"]
    assert [h.worst_s for h in p.host_steps] == [901, 1200]
    assert codes(p)["east/e3"] == ["window"]
    reason = next(b.reason for b in p.blocked if b.target == "east/e3")
    assert "worst case (13800s" in reason and "widen the window" in reason


def test_a_domain_that_does_not_fit_what_is_left_of_the_window_is_placed_in_the_next() -> None:
    # c1 (40 min) and c2 (40 min with e3's history) in a window with 1 h of room: c2 moves a week on.
    body = WEEKEND.format(hosts="").replace('duration = "4h"', 'duration = "75m"')
    p = plan([EAST], settings(body), history={"host:east:id-e3": [2400.0]})
    assert [d.est_start for d in p.host_phase] == [SATURDAY, "2026-05-16T20:00:00+00:00"]


def test_the_plan_id_does_not_depend_on_when_the_host_phase_is_placed() -> None:
    config = weekend()
    a = make_plan([EAST], config, NOW, capabilities={"east": ALL})
    b = make_plan([EAST], config, NOW + timedelta(days=7), capabilities={"east": ALL})
    assert a.host_phase[0].est_start != b.host_phase[0].est_start and a.plan_id == b.plan_id


def test_an_unknown_hosts_window_names_the_field_and_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        weekend('window = "weekly"')
    text = str(err.value)
    assert "hosts.window" in text and "unknown window 'weekly'" in text and '"weekend"' in text


def test_report_only_hosts_wait_for_no_window() -> None:
    p = plan([EAST], weekend('patch = "none"'))
    assert {d.window for d in p.host_phase} == {""}
    assert p.host_phase[0].est_start == "2026-05-06T12:00:00+00:00"
