"""The ``[[schedules]]`` tables: a schedule is a rollout over rings/groups/sites; files without the table
get one derived schedule per window (the canary ahead); every mistake names file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import ScheduleSettings, Settings
from orchestrator.errors import ConfigError
from tests.support.paths import REPO

SITES = """
[providers.lab]
kind = "libvirt"
uri = "qemu:///system"
[providers.dr]
kind = "libvirt"
uri = "test:///default"
"""
# The shape of config/patchwave.example.toml: a canary group without a window, main groups with windows.
ROLLOUT = """
[[groups]]
name = "canary"
ring = "canary"
match = { names = ["web-1"] }
[[groups]]
name = "databases"
ring = "main"
match = { regex = '^db-' }
window = "weekend"
[[groups]]
name = "adhoc"
ring = "main"
match = { names = ["tmp-*"] }
[[groups]]
name = "default"
ring = "main"
window = "weeknight"
[rings]
order = ["canary", "main"]
[windows.weekend]
cron = "0 22 * * SAT"
duration = "6h"
[windows.weeknight]
cron = "0 1 * * MON-FRI"
duration = "3h"
"""
ENV = {"VCENTER_PASSWORD": "a", "VSPHERE_GUEST_PASSWORD": "b", "PVE_TOKEN": "c", "PVE_PASSWORD": "d"}


def load(tmp_path: Path, body: str) -> Settings:
    """A top-level ``schedules = ...`` key goes first (TOML would put it into the table above it)."""
    top = body.startswith("schedules =")
    path = tmp_path / "patchwave.toml"
    path.write_text(body + SITES + ROLLOUT if top else SITES + ROLLOUT + body)
    return load_settings(path, environ={})


def refused(tmp_path: Path, body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    err = caught.value
    assert err.file == str(tmp_path / "patchwave.toml") and err.field and err.message and err.fix
    return err


# ------------------------------------------------------------------------------ the example
def test_the_example_schedules_one_weekly_rollout_canary_first() -> None:
    settings = load_settings(REPO / "config" / "patchwave.example.toml", environ=ENV)
    assert settings.schedules == (
        ScheduleSettings(name="weekly", window="weekend", groups=("canary", "databases", "default"),
                         sites=("dc1", "kvm", "pve")),
    )  # fmt: skip
    assert settings.group("canary").window == "" and settings.ring_order[0] == "canary"


def test_the_example_without_its_schedules_table_derives_one_schedule_per_window(tmp_path: Path) -> None:
    text = (REPO / "config" / "patchwave.example.toml").read_text()
    start = text.index("\n[[schedules]]\n")
    end = text.index("\n# ----", start)
    path = tmp_path / "old.toml"
    path.write_text(text[:start] + text[end:])
    derived = load_settings(path, environ=ENV).schedules
    assert [(s.name, s.window, s.groups, s.derived) for s in derived] == [
        ("weekend", "weekend", ("canary", "databases"), True),
        ("weeknight", "weeknight", ("canary", "default"), True),
    ]


# ------------------------------------------------------------------------------ scope
def test_a_schedule_without_scope_covers_every_group_and_site(tmp_path: Path) -> None:
    [weekly] = load(tmp_path, '[[schedules]]\nname = "weekly"\nwindow = "weekend"\n').schedules
    assert weekly == ScheduleSettings(
        name="weekly",
        window="weekend",
        groups=("canary", "databases", "adhoc", "default"),
        sites=("dr", "lab"),
    )


def test_rings_and_groups_add_up_and_sites_narrow(tmp_path: Path) -> None:
    body = """
[[schedules]]
name = "nightly"
window = "weeknight"
rings = ["canary"]
groups = ["default", "default"]
sites = ["lab"]
[[schedules]]
name = "db"
window = "weekend"
groups = ["databases"]
"""
    db, nightly = load(tmp_path, body).schedules  # sorted by name
    assert (db.name, db.groups, db.sites) == ("db", ("databases",), ("dr", "lab"))
    assert (nightly.name, nightly.groups, nightly.sites) == ("nightly", ("canary", "default"), ("lab",))


def test_schedules_may_share_a_group_the_canary_ahead_of_two_rollouts(tmp_path: Path) -> None:
    body = """
[[schedules]]
name = "weekend"
window = "weekend"
groups = ["canary", "databases"]
[[schedules]]
name = "weeknight"
window = "weeknight"
groups = ["canary", "default"]
"""
    assert [s.groups for s in load(tmp_path, body).schedules] == [
        ("canary", "databases"),
        ("canary", "default"),
    ]


def test_an_empty_schedules_list_schedules_nothing(tmp_path: Path) -> None:
    assert load(tmp_path, "schedules = []\n").schedules == ()


def test_derived_schedules_leave_a_windowless_group_of_the_same_ring_unscheduled(tmp_path: Path) -> None:
    derived = load(tmp_path, "").schedules
    assert [(s.name, s.groups, s.sites) for s in derived] == [
        ("weekend", ("canary", "databases"), ("dr", "lab")),
        ("weeknight", ("canary", "default"), ("dr", "lab")),
    ]  # "adhoc" (main ring, no window) is in neither, as before rollouts
    assert all(s.derived for s in derived)


def test_no_window_anywhere_derives_no_schedule(tmp_path: Path) -> None:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITES + '[[groups]]\nname = "web"\nmatch = { names = ["web-*"] }\n')
    assert load_settings(path, environ={}).schedules == ()


# ------------------------------------------------------------------------------ errors
SCHEDULE = '[[schedules]]\nname = "weekly"\nwindow = "weekend"\n'
ERRORS = [
    # (body, field, words in "message (fix: fix)")
    (SCHEDULE + "ring = []\n", "schedules[0].ring", "did you mean 'rings'?"),
    ('[[schedules]]\nwindow = "weekend"\n', "schedules[0].name", "is required"),
    ('[[schedules]]\nname = "a b"\nwindow = "weekend"\n', "schedules[0].name", "not a valid schedule name"),
    (SCHEDULE + SCHEDULE, "schedules[1].name", "defined twice"),
    ('[[schedules]]\nname = "weekly"\n', "schedules[0].window", "is required"),
    ('[[schedules]]\nname = "w"\nwindow = "weekends"\n', "schedules[0].window", "did you mean 'weekend'?"),
    (SCHEDULE + 'rings = ["canry"]\n', "schedules[0].rings", "did you mean 'canary'?"),
    (SCHEDULE + 'rings = "canary"\n', "schedules[0].rings", 'rings = ["canary"]'),
    (SCHEDULE + 'groups = ["databse"]\n', "schedules[0].groups", "did you mean 'databases'?"),
    (SCHEDULE + 'sites = ["labs"]\n', "schedules[0].sites", "did you mean 'lab'?"),
    ('schedules = "weekly"\n', "schedules", "array of tables"),
    ("schedules = [1]\n", "schedules[0]", "must be a table"),
]


@pytest.mark.parametrize(
    ("body", "field", "words"), ERRORS, ids=[f"{i}-{e[1]}" for i, e in enumerate(ERRORS)]
)
def test_every_mistake_names_file_field_and_fix(tmp_path: Path, body: str, field: str, words: str) -> None:
    err = refused(tmp_path, body)
    assert err.field == field
    assert words in f"{err.message} (fix: {err.fix})"


def test_a_ring_no_group_uses_covers_nothing(tmp_path: Path) -> None:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITES + '[rings]\norder = ["canary", "main"]\n[windows.w]\ncron = "0 1 * * *"\n'
                    'duration = "1h"\n[[schedules]]\nname = "c"\nwindow = "w"\nrings = ["canary"]\n')  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert (
        caught.value.field == "schedules[0].rings"
        and "no [[groups]] is in ring(s) canary" in caught.value.message
    )


def test_the_documented_error_line(tmp_path: Path) -> None:
    err = refused(tmp_path, '[[schedules]]\nname = "weekly"\nwindow = "weekends"\n')
    assert err.render() == (
        f"config error: {tmp_path / 'patchwave.toml'}: schedules[0].window: unknown window 'weekends' "
        "(fix: use one of: weekend, weeknight (did you mean 'weekend'?))"
    )
