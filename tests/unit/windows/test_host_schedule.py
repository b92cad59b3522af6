"""The host phase's walk (orchestrator.windows.hosts): the one rule the plan's timeline and HostBatch share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.model import HostStep, RebootPolicy
from orchestrator.windows import WindowSpec
from orchestrator.windows.hosts import host_start, place_hosts
from providers.base import HostRef

NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)  # a Wednesday
# Daily at 11:20 UTC for 1 h, cutoff 5 min: at NOW the window has been open 40 min, 15 min are left.
DAILY = WindowSpec("daily", cron="20 11 * * *", duration_s=3600, cutoff_s=300)
TONIGHT = WindowSpec("tonight", cron="0 22 * * *", duration_s=4 * 3600, cutoff_s=900)
SPECS = {s.name: s for s in (DAILY, TONIGHT)}


def step(name: str, est_s: int, window: str = "", need_s: int = 0) -> HostStep:
    return HostStep(
        step_id=f"host:s:{name}", host=HostRef("s", name, name), failure_domain=name, evacuate=True,
        patch="ssh", reboot=RebootPolicy.IF_REQUIRED, est_duration_s=est_s, window=window,
        worst_s=need_s, need_s=need_s,
    )  # fmt: skip


def starts(steps: list[HostStep]) -> list[tuple[str, str]]:
    return [
        (s.start.isoformat()[:16] if s.start else "never", s.end.isoformat()[:16] if s.end else "never")
        for s in place_hosts(steps, NOW, SPECS.get)
    ]


def test_hosts_without_a_window_run_back_to_back_from_now() -> None:
    assert starts([step("a", 600), step("b", 300)]) == [
        ("2026-05-06T12:00", "2026-05-06T12:10"),
        ("2026-05-06T12:10", "2026-05-06T12:15"),
    ]


def test_the_first_host_waits_for_its_window_to_open() -> None:
    steps = [step("a", 600, "tonight", 1200), step("b", 600, "tonight", 600)]
    assert starts(steps) == [
        ("2026-05-06T22:00", "2026-05-06T22:10"),
        ("2026-05-06T22:10", "2026-05-06T22:20"),
    ]


def test_a_domain_whose_worst_case_does_not_fit_what_is_left_waits_for_the_next_occurrence() -> None:
    # a: worst case 10 min, fits the 15 min left; b: worst case 20 min does not: tomorrow 11:20.
    steps = [step("a", 300, "daily", 600), step("b", 300, "daily", 1200)]
    assert starts(steps) == [
        ("2026-05-06T12:00", "2026-05-06T12:05"),
        ("2026-05-07T11:20", "2026-05-07T11:25"),
    ]


def test_the_worst_case_not_the_estimate_decides_admission() -> None:
    # estimate 5 min would fit the 15 min left; the worst case (30 min) does not
    assert starts([step("a", 300, "daily", 1800)])[0][0] == "2026-05-07T11:20"


def test_a_domain_that_never_fits_its_window_is_never_started() -> None:
    assert starts([step("a", 300, "daily", 3600), step("b", 60)]) == [
        ("never", "never"),
        ("2026-05-06T12:00", "2026-05-06T12:01"),
    ]
    assert host_start(None, step("a", 60, "gone", 60), NOW) is None  # an unknown window admits nothing


def test_host_start_is_now_or_the_windows_next_admission() -> None:
    assert host_start(None, step("a", 60), NOW) == NOW
    assert host_start(TONIGHT, step("a", 60, "tonight", 60), NOW) == NOW.replace(hour=22)
    late = NOW.replace(hour=23, minute=59)
    assert host_start(TONIGHT, step("a", 60, "tonight", 60), late) == late  # open, room left
    assert host_start(TONIGHT, step("a", 60, "tonight", 3 * 3600), late) == (NOW + timedelta(days=1)).replace(
        hour=22
    )
