"""The planner's additions for scheduled runs and notifications: group/site scope, owners, window waits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.loader import parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.planning.planner import make_plan
from providers.base import Capability, Inventory, PowerState, VmInfo, VmRef

NOW = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)  # a Wednesday
ALL = frozenset(Capability)
CONFIG = """
[providers.east]
kind = "libvirt"
uri = "qemu:///system"
[providers.west]
kind = "libvirt"
uri = "test:///default"
[targets]
names = ["*"]
[[groups]]
name = "web"
match = { names = ["web-*"] }
window = "nightly"
[windows.nightly]
cron = "0 22 * * *"
duration = "2h"
timezone = "Europe/Berlin"
exdates = ["2026-12-23"]
holidays = ["xmas"]
[holidays.xmas]
dates = ["2026-12-24", "2026-12-25"]
[policy]
default_vm_duration = "10m"
health_deadline = "5m"
[notifications]
owner_label = "team"
[[health]]
name = "ssh"
kind = "tcp"
address = "{ip}:22"
"""


def settings() -> Settings:
    return parse_settings_text(CONFIG, file=Path("/etc/patchwave/test.toml"), environ={})


def vm(site: str, name: str, **kw: object) -> VmInfo:
    return VmInfo(ref=VmRef(site, f"uuid-{name}", name), power=PowerState.RUNNING, **kw)  # type: ignore[arg-type]


EAST = Inventory("east", hosts=(), vms=(vm("east", "web-1", labels={"team": "team-web"}),
                                        vm("east", "db-1", tags=("team:dba",))))  # fmt: skip
WEST = Inventory("west", hosts=(), vms=(vm("west", "web-2"),))


def plan(**kw: object):
    return make_plan(
        [EAST, WEST], settings(), NOW, capabilities={"east": ALL, "west": ALL}, hosts=False, **kw
    )


def test_a_scheduled_runs_scope_is_its_group_and_site() -> None:
    assert [s.vm.name for s in plan(groups=("web",), sites=("east",)).vm_steps] == ["web-1"]
    assert [s.vm.name for s in plan(groups=("web",)).vm_steps] == ["web-1", "web-2"]
    assert [s.vm.name for s in plan(groups=("default",)).vm_steps] == ["db-1"]
    assert [s.vm.name for s in plan(sites=("west",)).vm_steps] == ["web-2"]
    assert plan(sites=("west",)).sites == ("west",)


def test_owners_come_from_the_configured_owner_label() -> None:
    owners = {s.vm.name: s.owners for s in plan().vm_steps}
    assert owners == {"web-1": ("team-web",), "db-1": ("dba",), "web-2": ()}


def test_a_windowed_wave_waits_past_exdates_and_holidays() -> None:
    p = plan(groups=("web",))
    # the 23rd is an exdate, the 24th/25th holidays: the first window opens 2026-12-26 22:00 CET
    assert p.window.start == "2026-12-26T21:00:00+00:00" and p.window.fits
    assert p.waves[0].est_start == "2026-12-26T21:00:00+00:00"


def test_a_scheduled_runs_window_binds_the_groups_without_a_window_of_their_own() -> None:
    assert {s.vm.name: s.window for s in plan().vm_steps} == {
        "web-1": "nightly",
        "db-1": "",
        "web-2": "nightly",
    }
    scheduled = plan(window="nightly")
    assert {s.vm.name: s.window for s in scheduled.vm_steps} == dict.fromkeys(
        ("web-1", "db-1", "web-2"), "nightly"
    )
    assert [w.window for w in scheduled.waves] == ["nightly"]  # db-1 waits for the window with the rest
    assert scheduled.waves[0].est_start == "2026-12-26T21:00:00+00:00"


def test_a_scheduled_rollout_keeps_ring_order_soak_approval_and_one_budget() -> None:
    text = CONFIG.replace(
        "[windows.nightly]",
        '[[groups]]\nname = "canary"\nring = "canary"\nmatch = { names = ["db-*"] }\n'
        '[rings]\norder = ["canary", "default"]\n[rings.canary]\nsoak = "30m"\napproval = true\n'
        "[windows.nightly]",
    )
    s = parse_settings_text(text, file=Path("/etc/patchwave/test.toml"), environ={})
    p = make_plan([EAST, WEST], s, NOW, capabilities={"east": ALL, "west": ALL}, hosts=False,
                  groups=("web", "canary"), window="nightly")  # fmt: skip
    assert [(w.ring, w.window, [v.vm.name for v in w.vms]) for w in p.waves] == [
        ("canary", "nightly", ["db-1"]),
        ("default", "nightly", ["web-1", "web-2"]),
    ]
    canary, main = p.waves
    assert (canary.soak_s, canary.approval) == (1800, True) and p.failure_budget == 1
    assert canary.est_start == "2026-12-26T21:00:00+00:00"  # the canary waits for the schedule's window
    assert main.est_start >= "2026-12-26T21:40:00+00:00"  # after the canary (10 min) and its 30 min soak
