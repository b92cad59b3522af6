"""[windows.X] with cron or RRULE, exdates and [holidays.X]; [notifications] with secret URLs and routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.events import NOTIFY_EVENTS
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.windows import next_window
from providers.settings import Secret
from tests.support.paths import REPO

SITE = '[providers.lab]\nkind = "libvirt"\nuri = "test:///default"\n'


def load(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ=environ or {})


def refused(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body, environ)
    assert caught.value.field and caught.value.fix
    return caught.value


# ------------------------------------------------------------------------------ windows
def test_an_rrule_window_with_exdates_and_holidays(tmp_path: Path) -> None:
    (tmp_path / "holidays.txt").write_text("# public holidays\n2026-12-25\n2026-12-26  # boxing day\n")
    s = load(
        tmp_path,
        """
[windows.nightly]
rrule = "FREQ=DAILY;BYHOUR=22;BYMINUTE=0"
duration = "4h"
timezone = "Europe/Berlin"
cutoff = "15m"
exdates = ["2026-12-31", "2026-12-28T22:00"]
holidays = ["de"]
[holidays.de]
dates = ["2026-12-24"]
path = "holidays.txt"
""",
    )
    w = s.window("nightly")
    assert (w.cron, w.rrule, w.duration_s, w.cutoff_s) == ("", "FREQ=DAILY;BYHOUR=22;BYMINUTE=0", 14400, 900)
    assert w.blackout_dates == ("2026-12-24", "2026-12-25", "2026-12-26", "2026-12-31")
    assert w.exdates == ("2026-12-28T22:00",)


def test_holidays_can_come_from_an_icalendar_file(tmp_path: Path) -> None:
    (tmp_path / "de.ics").write_text(
        "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nSUMMARY:Christmas\nDTSTART;VALUE=DATE:20261225\nEND:VEVENT\n"
        "BEGIN:VEVENT\nSUMMARY:New Year\nDTSTART;VALUE=DATE:20270101\nEND:VEVENT\nEND:VCALENDAR\n"
    )
    s = load(tmp_path, '[windows.w]\ncron = "0 22 * * *"\nduration = "1h"\nholidays = ["de"]\n'
                       '[holidays.de]\npath = "de.ics"\n')  # fmt: skip
    assert s.window("w").blackout_dates == ("2026-12-25", "2027-01-01")


def test_the_example_config_windows_load_and_open(tmp_path: Path) -> None:
    env = {
        "VCENTER_PASSWORD": "a",
        "VSPHERE_GUEST_PASSWORD": "b",
        "PVE_TOKEN": "c",
        "PVE_PASSWORD": "d",
        "PATCHWAVE_NOTIFY_URL": "json://127.0.0.1:9/",
        "PATCHWAVE_PAGER_URL": "json://127.0.0.1:9/pager",
    }
    s = load_settings(REPO / "config" / "patchwave.example.toml", environ=env)
    from datetime import UTC, datetime

    for spec in s.windows:
        start, end = next_window(spec, datetime(2026, 12, 20, tzinfo=UTC))
        assert start < end
    assert s.notifications.enabled and s.notifications.prenotice_s > 0


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[windows.w]\nduration = "1h"\n', "windows.w.cron", "exactly one of cron and rrule"),
        (
            '[windows.w]\ncron = "0 1 * * *"\nrrule = "FREQ=DAILY"\nduration = "1h"\n',
            "windows.w.cron",
            "exactly one",
        ),
        ('[windows.w]\nrrule = "FREQ=SOMETIMES"\nduration = "1h"\n', "windows.w.rrule", "RFC 5545"),
        (
            '[windows.w]\nrrule = "DTSTART:20200101T000000\\nRRULE:FREQ=DAILY;COUNT=2"\nduration = "1h"\n',
            "windows.w.rrule",
            "never opens",
        ),
        ('[windows.w]\ncron = "0 0 30 2 *"\nduration = "1h"\n', "windows.w.cron", "never fires"),
        (
            '[windows.w]\ncron = "0 1 * * *"\nduration = "1h"\nexdates = ["christmas"]\n',
            "windows.w.exdates",
            "neither a date",
        ),
        (
            '[windows.w]\ncron = "0 1 * * *"\nduration = "1h"\nexdates = ["2026-12-24T22:00+01:00"]\n',
            "windows.w.exdates",
            "local times",
        ),
        (
            '[windows.w]\ncron = "0 1 * * *"\nduration = "1h"\nholidays = ["de"]\n[holidays.dee]\ndates = []\n',
            "windows.w.holidays",
            "unknown holiday list",
        ),
        ('[holidays.de]\ndates = ["24.12.2026"]\n', "holidays.de.dates", "not a date"),
        ('[holidays.de]\npath = "missing.txt"\n', "holidays.de.path", "cannot read"),
    ],
)
def test_window_mistakes_name_the_field(tmp_path: Path, body: str, field: str, words: str) -> None:
    err = refused(tmp_path, body)
    assert err.field == field and words in err.message


# ------------------------------------------------------------------------------ notifications
def test_notification_urls_are_secrets_routed_per_event(tmp_path: Path) -> None:
    (tmp_path / "pager.url").write_text("pagerduty://integration-key@api-key\n")
    s = load(
        tmp_path,
        """
[notifications]
urls = [{ env = "CHAT_URL" }, "json://127.0.0.1:8000/hook"]
events = ["run_started", "run_finished"]
prenotice = "12h"
owner_label = "team"
[[notifications.routes]]
urls = [{ file = "pager.url" }]
events = ["vm_rolled_back", "run_halted"]
[notifications.templates.run_halted]
title = "HALT $run_id"
""",
        environ={"CHAT_URL": "slack://T1/B2/secrettokenxyz"},
    )
    chat, pager = s.notifications.routes
    assert [u.reveal() for u in chat.urls] == ["slack://T1/B2/secrettokenxyz", "json://127.0.0.1:8000/hook"]
    assert chat.events == ("run_started", "run_finished")
    assert [u.reveal() for u in pager.urls] == ["pagerduty://integration-key@api-key"]
    assert pager.events == ("vm_rolled_back", "run_halted")
    assert (s.notifications.prenotice_s, s.notifications.owner_label) == (43200, "team")
    assert s.notifications.template("run_halted").title == "HALT $run_id"
    # referenced URLs join the log redaction set; every URL is a Secret, none is in the repr
    secrets = {x.reveal() for x in s.secrets}
    assert {"slack://T1/B2/secrettokenxyz", "pagerduty://integration-key@api-key"} <= secrets
    assert "secrettoken" not in repr(s.notifications)
    assert all(isinstance(u, Secret) for u in chat.urls)


def test_notifications_do_not_change_the_digest(tmp_path: Path) -> None:
    plain = load(tmp_path, "").digest
    assert load(tmp_path, '[notifications]\nurls = ["json://127.0.0.1:1/"]\n').digest == plain


def test_default_events_are_all_events(tmp_path: Path) -> None:
    s = load(tmp_path, '[notifications]\nurls = ["jsons://hooks.example.org/patchwave"]\n')
    assert s.notifications.routes[0].events == NOTIFY_EVENTS
    assert not load(tmp_path, "").notifications.enabled


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[notifications]\nurls = ["slack://T1/B2/tok3n"]\n', "notifications.urls", "may embed a token"),
        (
            '[notifications]\nurls = ["json://user:hunter2@host/"]\n',
            "notifications.urls",
            "may embed a token",
        ),
        ('[notifications]\nurls = [{ env = "NOPE" }]\n', "notifications.urls[0]", "not set"),
        (
            '[notifications]\nurls = ["json://h/"]\nevents = ["run_stared"]\n',
            "notifications.events",
            "unknown event",
        ),
        ("[notifications]\nurls = [42]\n", "notifications.urls", "apprise URL"),
        ('[[notifications.routes]]\nevents = ["run_halted"]\n', "notifications.routes[0].urls", "required"),
        (
            '[notifications.templates.run_halted]\nbody = "$nonsense"\n',
            "notifications.templates.run_halted.body",
            "unknown field",
        ),
        (
            '[notifications.templates.run_halt]\nbody = "x"\n',
            "notifications.templates.run_halt",
            "unknown event",
        ),
        ('[notifications]\nurl = ["json://h/"]\n', "notifications.url", "unknown key"),
    ],
)
def test_notification_mistakes_name_the_field_and_never_echo_the_url(
    tmp_path: Path, body: str, field: str, words: str
) -> None:
    err = refused(tmp_path, body)
    assert err.field == field and words in err.message
    assert "tok3n" not in str(err) and "hunter2" not in str(err)
