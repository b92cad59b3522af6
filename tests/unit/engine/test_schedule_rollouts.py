"""What ``sync_schedules`` writes, without a server: one schedule per rollout, the run it starts, and
the migration from the per-(site, group) schedules of earlier versions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.loader import parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.engine.schedules import PREFIX, desired, retired, rollouts
from orchestrator.model import RunRequest

NOW = datetime(2036, 3, 21, 12, 0, tzinfo=UTC)
CONFIG = """
[providers.lab]
kind = "libvirt"
uri = "test:///default"
[providers.dr]
kind = "libvirt"
uri = "test:///default"
[[groups]]
name = "canary"
ring = "canary"
match = { names = ["web-1"] }
[[groups]]
name = "web"
match = { names = ["web-*"] }
window = "weekend"
[[groups]]
name = "db"
match = { names = ["db-*"] }
window = "nights"
[rings]
order = ["canary", "main"]
[windows.weekend]
cron = "30 2 * * SUN"
duration = "3h"
timezone = "Europe/Berlin"
[windows.nights]
rrule = "FREQ=DAILY;BYHOUR=23;BYMINUTE=0"
duration = "4h"
[notifications]
prenotice = "2h"
"""


def settings(extra: str = "") -> Settings:
    return parse_settings_text(CONFIG + extra, file=Path("/etc/patchwave/p.toml"), environ={})


def test_one_schedule_per_rollout_and_the_run_it_starts() -> None:
    [weekly] = rollouts(settings('[[schedules]]\nname = "weekly"\nwindow = "weekend"\nsites = ["lab"]\n'))
    assert weekly.schedule_id == "patchwave-sched-weekly"
    assert weekly.request() == RunRequest(
        run_id="", config_digest="", groups=("canary", "web", "db", "default"), sites=("lab",),
        window="weekend", requested_by="schedule:patchwave-sched-weekly",
    )  # fmt: skip


def test_without_schedules_tables_one_schedule_per_window_each_with_the_canary() -> None:
    found = {r.schedule_id: r.request() for r in rollouts(settings())}
    assert set(found) == {"patchwave-sched-nights", "patchwave-sched-weekend"}
    assert (found["patchwave-sched-weekend"].groups, found["patchwave-sched-weekend"].window) == (
        ("canary", "web"),
        "weekend",
    )
    assert found["patchwave-sched-nights"].groups == ("canary", "db")
    assert found["patchwave-sched-nights"].sites == ("dr", "lab")  # one run over every site


def test_the_first_sync_after_the_upgrade_retires_the_per_group_schedules() -> None:
    wanted = [r.schedule_id for r in rollouts(settings())]
    before = [f"{PREFIX}{site}-{group}" for site in ("lab", "dr") for group in ("web", "db")]
    existing = [*before, "patchwave-sched-nights", "someone-elses-schedule"]
    assert retired(existing, wanted) == (
        "patchwave-sched-dr-db", "patchwave-sched-dr-web", "patchwave-sched-lab-db", "patchwave-sched-lab-web",
    )  # fmt: skip
    assert retired(wanted, wanted) == ()  # the second sync: nothing more to retire


def test_the_schedules_note_and_fingerprint_follow_the_scope() -> None:
    [weekend, _] = sorted(rollouts(settings()), key=lambda r: r.config.name, reverse=True)
    schedule, fingerprint = desired(weekend, settings(), NOW)
    note = schedule.state.note or ""
    assert "rollout 'weekend' (derived from the groups' windows): groups canary, web on sites dr, lab" in note
    explicit = settings('[[schedules]]\nname = "weekend"\nwindow = "weekend"\ngroups = ["canary", "web"]\n')
    [same_scope] = rollouts(explicit)
    again, changed = desired(same_scope, explicit, NOW)
    assert "([[schedules]])" in (again.state.note or "")
    assert changed != fingerprint  # the same run, but the note changed: the schedule is updated
    narrower = settings('[[schedules]]\nname = "weekend"\nwindow = "weekend"\ngroups = ["web"]\n')
    assert desired(rollouts(narrower)[0], narrower, NOW)[1] != fingerprint


def test_a_scheduled_run_whose_window_left_the_configuration_is_refused_not_run_unwindowed(
    tmp_path: Path,
) -> None:
    from temporalio.exceptions import ApplicationError

    from orchestrator.context import Context
    from orchestrator.engine.activities.plans import PlanActivities
    from orchestrator.engine.payloads import PlanInput
    from orchestrator.facts.store import FactStore

    config = parse_settings_text(CONFIG, file=tmp_path / "p.toml", environ={}, state_dir=tmp_path)
    facts = FactStore(config.state.facts_path)
    ctx = Context(config, facts)
    request = RunRequest(run_id="patchwave-sched-gone-2036-03-22T23:30:00Z", config_digest="", window="gone")
    try:
        with pytest.raises(ApplicationError) as caught:
            PlanActivities(ctx).plan_run(PlanInput(request, (), NOW.isoformat()))
        assert facts.get_run(request.run_id) is None  # nothing planned, nothing recorded
    finally:
        ctx.close()
        facts.close()
    assert caught.value.non_retryable and "window 'gone' is not in the configuration" in str(caught.value)
