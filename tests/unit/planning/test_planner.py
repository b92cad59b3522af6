"""The planner, as a specification: inventory + settings + time -> an ordered, deterministic plan."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.loader import parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.errors import SelectionError
from orchestrator.model import Plan
from orchestrator.planning.planner import make_plan
from providers.base import Capability, HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef

NOW = datetime(2026, 5, 6, 12, 0, tzinfo=UTC)  # a Wednesday
ALL = frozenset(Capability)
GUESTS_ONLY = frozenset({Capability.INVENTORY, Capability.SNAPSHOT, Capability.GUEST_EXEC, Capability.POWER})
SITES = '[providers.east]\nkind = "libvirt"\nuri = "qemu:///system"\n[providers.west]\nkind = "libvirt"\nuri = "test:///default"\n'


#: One health check for every VM ([policy] require_health blocks a VM no check applies to).
CHECKED = '\n[[health]]\nname = "ssh"\nkind = "tcp"\naddress = "{ip}:22"\n'


def settings(body: str = "", *, health: str = CHECKED) -> Settings:
    text = SITES + '[targets]\nnames = ["*"]\n' + body + health
    return parse_settings_text(text, file=Path("/etc/patchwave/test.toml"), environ={})


def host(
    site: str, name: str, domain: str = "", state: HostState = HostState.CONNECTED, running: int = 0
) -> HostInfo:
    return HostInfo(
        ref=HostRef(site, f"id-{name}", name), state=state, failure_domain=domain, running_vms=running
    )


def vm(site: str, name: str, on: HostInfo | None = None, **kw: object) -> VmInfo:
    kw.setdefault("power", PowerState.RUNNING)
    return VmInfo(ref=VmRef(site, f"uuid-{name}", name), host=on.ref if on else None, **kw)  # type: ignore[arg-type]


def plan(inventories: list[Inventory], config: Settings, **kw: object) -> Plan:
    kw.setdefault("capabilities", {"east": ALL, "west": ALL})
    return make_plan(inventories, config, NOW, **kw)  # type: ignore[arg-type]


def names(p: Plan) -> list[list[str]]:
    return [[s.vm.name for s in w.vms] for w in p.waves]


def codes(p: Plan) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for b in p.blocked:
        found.setdefault(b.target, []).append(b.code)
    return found


# A small estate: east has cluster c1 (e1, e2) and cluster c2 (e3); west has one standalone host.
E1, E2, E3 = host("east", "e1", "c1"), host("east", "e2", "c1"), host("east", "e3", "c2")
W1 = host("west", "w1")
EAST = Inventory(
    "east", hosts=(E1, E2, E3), vms=(vm("east", "web-1", E1), vm("east", "web-2", E2), vm("east", "db-1", E3))
)
WEST = Inventory("west", hosts=(W1,), vms=(vm("west", "app-1", W1), vm("west", "app-2", W1)))


# ------------------------------------------------------------------------------------ order
def test_hosts_come_first_grouped_by_failure_domain_one_host_at_a_time() -> None:
    p = plan([WEST, EAST], settings())
    assert [d.domain_id for d in p.host_phase] == ["east:c1", "east:c2", "west:w1"]
    assert [[h.host.name for h in d.hosts] for d in p.host_phase] == [["e1", "e2"], ["e3"], ["w1"]]
    assert all(len({h.host for h in d.hosts}) == len(d.hosts) for d in p.host_phase)
    assert p.host_steps[0].step_id == "host:east:id-e1"


def test_only_hosts_running_targets_are_patched_unless_scope_is_all() -> None:
    idle = host("east", "e9", "c9")
    estate = [Inventory("east", hosts=(*EAST.hosts, idle), vms=EAST.vms), WEST]
    assert "e9" not in [h.host.name for h in plan(estate, settings()).host_steps]
    assert "e9" in [h.host.name for h in plan(estate, settings('[hosts]\nscope = "all"\n')).host_steps]


def test_hosts_and_guests_can_each_be_left_out() -> None:
    p = plan([EAST], settings(), hosts=False)
    assert p.host_phase == () and p.vm_steps
    p = plan([EAST], settings(), guests=False)
    assert p.waves == () and p.host_steps
    assert plan([EAST], settings("[hosts]\nenabled = false\n")).host_phase == ()


def test_rings_run_in_configured_order_and_are_cut_into_waves() -> None:
    many = Inventory("east", hosts=(E1,), vms=tuple(vm("east", f"web-{i}", E1) for i in range(1, 7)))
    config = settings("""
[[groups]]
name = "canary"
ring = "canary"
match = { names = ["web-1"] }
[rings]
order = ["canary", "main"]
[rings.canary]
soak = "10m"
approval = true
[rings.main]
wave_size = 2
""")
    p = plan([many], config)
    assert [w.wave_id for w in p.waves] == ["canary:0", "main:0", "main:1", "main:2"]
    assert names(p) == [["web-1"], ["web-2", "web-3"], ["web-4", "web-5"], ["web-6"]]
    assert (p.waves[0].soak_s, p.waves[0].approval) == (600, True)
    assert [w.soak_s for w in p.waves[1:]] == [0, 0, 0]


def test_the_first_matching_group_wins_and_sets_ring_and_policy() -> None:
    config = settings("""
[[groups]]
name = "webs"
ring = "main"
match = { names = ["web-*"] }
[groups.policy]
concurrency = 1
reboot = "never"
[[groups]]
name = "web-1-only"
ring = "canary"
match = { names = ["web-1"] }
[rings]
order = ["canary", "main"]
""")
    p = plan([EAST], config)
    steps = {s.vm.name: s for s in p.vm_steps}
    assert steps["web-1"].group == "webs" and steps["web-1"].ring == "main"
    assert steps["web-1"].policy.reboot.value == "never"
    assert steps["db-1"].group == "default" and steps["db-1"].policy.reboot.value == "if-required"
    assert [w.concurrency for w in p.waves] == [1]  # the strictest group in the wave


def test_a_wave_prepares_ahead_as_few_vms_as_its_strictest_group_and_a_plan_without_keeps_its_id() -> None:
    groups = """
[policy]
prepare_ahead = 4
[[groups]]
name = "webs"
match = { names = ["web-*"] }
[groups.policy]
prepare_ahead = 1
"""
    assert [w.prepare_ahead for w in plan([EAST], settings(groups)).waves] == [1]
    assert [w.prepare_ahead for w in plan([WEST], settings(groups)).waves] == [4]
    without, zero = plan([EAST], settings()), plan([EAST], settings("[policy]\nprepare_ahead = 0\n"))
    assert [w.prepare_ahead for w in without.waves] == [0] and zero.plan_id == without.plan_id
    # the plan id hashes prepare_ahead only when set: plans written before it keep their ids
    assert plan([EAST], settings("[policy]\nprepare_ahead = 2\n")).plan_id != without.plan_id


def test_step_ids_are_stable_and_vms_are_sorted_by_site_and_name() -> None:
    p = plan([WEST, EAST], settings())
    assert [s.step_id for s in p.vm_steps] == [
        "vm:east:uuid-db-1", "vm:east:uuid-web-1", "vm:east:uuid-web-2", "vm:west:uuid-app-1", "vm:west:uuid-app-2",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------ determinism
def test_the_same_inputs_give_the_same_plan_whatever_the_input_order() -> None:
    first = plan([EAST, WEST], settings())
    shuffled = []
    rng = random.Random(7)
    for inv in (WEST, EAST):
        vms, hosts = list(inv.vms), list(inv.hosts)
        rng.shuffle(vms)
        rng.shuffle(hosts)
        shuffled.append(Inventory(inv.site, tuple(hosts), tuple(vms)))
    again = plan(shuffled, settings())
    assert again == first
    assert len(first.plan_id) == 64


def test_the_plan_id_does_not_depend_on_the_time_of_planning() -> None:
    later = make_plan([EAST], settings(), datetime(2026, 7, 1, 3, tzinfo=UTC), capabilities={"east": ALL})
    assert later.plan_id == plan([EAST], settings()).plan_id


def test_the_plan_id_changes_when_the_steps_change() -> None:
    assert plan([EAST], settings()).plan_id != plan([EAST, WEST], settings()).plan_id


# ------------------------------------------------------------------------------------ blockers
def test_a_vm_on_a_platform_without_snapshots_is_blocked_not_patched_unprotected() -> None:
    no_snap = ALL - {Capability.SNAPSHOT}
    p = plan([EAST, WEST], settings(), capabilities={"east": ALL, "west": no_snap})
    assert codes(p)["west/app-1"] == ["capability"]
    reason = next(b.reason for b in p.blocked if b.target == "west/app-1")
    assert "snapshot" in reason and "exclude" in reason
    assert all(s.vm.site == "east" for s in p.vm_steps)


def test_powered_off_and_locked_vms_are_blocked_with_the_fix() -> None:
    inv = Inventory("east", hosts=(E1,), vms=(
        vm("east", "off", E1, power=PowerState.STOPPED),
        vm("east", "busy", E1, locked="backup"),
        vm("east", "fine", E1),
    ))  # fmt: skip
    p = plan([inv], settings())
    assert codes(p) == {"east/busy": ["locked"], "east/off": ["powered_off"]}
    assert "start it" in next(b.reason for b in p.blocked if b.code == "powered_off")
    assert "backup" in next(b.reason for b in p.blocked if b.code == "locked")
    assert [s.vm.name for s in p.vm_steps] == ["fine"]


def test_the_agent_channel_needs_guest_exec_and_cannot_reach_containers() -> None:
    inv = Inventory(
        "east", hosts=(E1,), vms=(vm("east", "ct-1", E1, kind="container"), vm("east", "vm-1", E1))
    )
    p = plan([inv], settings(), capabilities={"east": ALL})
    assert codes(p) == {"east/ct-1": ["no_channel"]}
    assert 'channel = "ssh"' in p.blocked[0].reason
    p = plan([inv], settings(), capabilities={"east": ALL - {Capability.GUEST_EXEC}})
    assert codes(p)["east/vm-1"] == ["capability"]


def test_the_ssh_channel_needs_an_address() -> None:
    inv = Inventory(
        "east", hosts=(E1,), vms=(vm("east", "a", E1), vm("east", "b", E1, ip_addresses=("10.0.0.2",)))
    )
    config = settings('[guests]\nchannel = "ssh"\n[guests.overrides."c"]\nssh = { host = "10.0.0.3" }\n')
    p = plan([inv], config, capabilities={"east": GUESTS_ONLY - {Capability.GUEST_EXEC}}, hosts=False)
    assert codes(p) == {"east/a": ["no_channel"]}
    assert p.vm_steps[0].channel == "ssh"


def test_missing_memory_snapshots_downgrade_with_a_warning() -> None:
    config = settings("[policy]\nsnapshot_memory = true\n")
    p = plan([EAST], config, capabilities={"east": ALL - {Capability.SNAPSHOT_MEMORY}})
    assert p.blocked == () and len(p.vm_steps) == 3
    assert all(not s.policy.snapshot_memory for s in p.vm_steps)
    assert {w.code for w in p.warnings} == {"capability"}
    assert all(w.reason.startswith("downgraded:") for w in p.warnings)
    assert all(s.policy.snapshot_memory for s in plan([EAST], config).vm_steps)


#: What a Proxmox container lacks of its provider's capabilities (VmInfo.unsupported).
CT_LACKS = (Capability.GUEST_EXEC, Capability.SNAPSHOT_MEMORY)
BY_SSH = '[guests]\nchannel = "ssh"\nssh = { host = "{name}" }\n'


def test_a_guest_that_lacks_guest_exec_is_blocked_on_the_agent_channel_only() -> None:
    no_agent = vm("east", "no-agent", E1, unsupported=(Capability.GUEST_EXEC,))
    inv = Inventory("east", hosts=(E1,), vms=(no_agent, vm("east", "vm-1", E1)))
    p = plan([inv], settings(), capabilities={"east": ALL}, hosts=False)
    assert codes(p) == {"east/no-agent": ["capability"]}
    reason = p.blocked[0].reason
    assert "east/no-agent cannot run guest-agent commands" in reason and "guest agent" in reason
    assert '[guests.overrides."no-agent"] channel = "ssh"' in reason
    assert [s.vm.name for s in p.vm_steps] == ["vm-1"]
    assert [s.vm.name for s in plan([inv], settings(BY_SSH), hosts=False).vm_steps] == ["no-agent", "vm-1"]


def test_a_container_that_lacks_guest_exec_gets_one_blocker_not_two() -> None:
    ct = vm("east", "ct-1", E1, kind="container", unsupported=CT_LACKS)
    p = plan([Inventory("east", hosts=(E1,), vms=(ct,))], settings(), hosts=False)
    assert codes(p) == {"east/ct-1": ["no_channel"]}


def test_a_guest_that_lacks_snapshots_is_blocked_like_a_platform_without_them() -> None:
    inv = Inventory("east", hosts=(E1,), vms=(vm("east", "raw", E1, unsupported=(Capability.SNAPSHOT,)),))
    p = plan([inv], settings(), hosts=False)
    assert codes(p) == {"east/raw": ["capability"]}
    assert "east/raw cannot be snapshotted" in p.blocked[0].reason and "exclude" in p.blocked[0].reason


def test_a_guest_that_lacks_memory_snapshots_or_quiesce_is_downgraded_with_a_warning() -> None:
    ct = vm("east", "ct-1", E1, kind="container", unsupported=CT_LACKS)
    no_tools = vm("east", "no-tools", E1, unsupported=(Capability.GUEST_EXEC, Capability.SNAPSHOT_QUIESCE))
    inv = Inventory("east", hosts=(E1,), vms=(ct, no_tools, vm("east", "vm-1", E1)))
    config = settings(BY_SSH + "[policy]\nsnapshot_memory = true\nsnapshot_quiesce = true\n")
    p = plan([inv], config, hosts=False)
    assert p.blocked == ()
    flags = {s.vm.name: (s.policy.snapshot_memory, s.policy.snapshot_quiesce) for s in p.vm_steps}
    assert flags == {"ct-1": (False, True), "no-tools": (True, False), "vm-1": (True, True)}
    warned = {w.target: w.reason for w in p.warnings}
    assert set(warned) == {"east/ct-1", "east/no-tools"}
    assert warned["east/ct-1"].startswith("downgraded: east/ct-1 gets a disk-only snapshot")
    assert "cannot snapshot memory for this guest" in warned["east/ct-1"]
    assert warned["east/no-tools"].startswith("downgraded: east/no-tools gets a crash-consistent snapshot")
    assert "cannot quiesce for this guest" in warned["east/no-tools"]


def test_a_capability_the_provider_lacks_anyway_is_reported_as_the_providers() -> None:
    ct = vm("east", "ct-1", E1, kind="container", unsupported=(Capability.SNAPSHOT_MEMORY,))
    config = settings(BY_SSH + "[policy]\nsnapshot_memory = true\n")
    p = plan([Inventory("east", hosts=(E1,), vms=(ct,))], config,
             capabilities={"east": ALL - {Capability.SNAPSHOT_MEMORY}}, hosts=False)  # fmt: skip
    assert [w.reason for w in p.warnings] == [
        (
            "downgraded: east/ct-1 gets a disk-only snapshot (the provider of site 'east' cannot snapshot "
            "memory); set snapshot_memory = false for group 'default' to silence this"
        )
    ]


def test_hosts_need_maintenance_patch_and_reboot_capabilities_for_platform_patching() -> None:
    p = plan([EAST], settings(), capabilities={"east": GUESTS_ONLY})
    assert set(codes(p)) == {"east/e1", "east/e2", "east/e3"}
    reasons = [b.reason for b in p.blocked if b.target == "east/e1"]
    assert any("host maintenance" in r for r in reasons) and any('patch = "ssh"' in r for r in reasons)
    assert p.host_phase == () and len(p.vm_steps) == 3  # guests still go ahead


def test_disconnected_hosts_and_unknown_capabilities_are_blocked() -> None:
    gone = host("east", "e1", "c1", state=HostState.DISCONNECTED)
    inv = Inventory("east", hosts=(gone,), vms=(vm("east", "web-1", gone),))
    p = plan([inv, WEST], settings(), capabilities={"east": ALL})
    assert codes(p)["east/e1"] == ["host_state"]
    assert codes(p)["west/app-1"] == ["capability"] and "unknown" in p.blocked[-1].reason


# ------------------------------------------------------------------------------------ selection
def test_an_explicit_selection_replaces_the_targets() -> None:
    p = plan([EAST, WEST], settings(), selection=["web-2", "west/app-1"])
    assert [s.vm.name for s in p.vm_steps] == ["web-2", "app-1"]
    assert [h.host.name for h in p.host_steps] == ["e2", "w1"]


def test_an_explicit_host_selection_patches_only_that_host() -> None:
    p = plan([EAST], settings(), selection=["e3"])
    assert [h.host.name for h in p.host_steps] == ["e3"] and p.waves == ()


def test_an_unknown_selected_name_lists_close_matches() -> None:
    with pytest.raises(SelectionError) as caught:
        plan([EAST, WEST], settings(), selection=["web1"])
    assert "web-1" in caught.value.candidates
    assert "did you mean" in caught.value.fix and caught.value.exit_code == 2


def test_an_excluded_vm_selected_explicitly_is_shown_as_blocked() -> None:
    inv = Inventory(
        "east", hosts=(E1,), vms=(vm("east", "legacy", E1, tags=("no-patch",)), vm("east", "web-1", E1))
    )
    assert [s.vm.name for s in plan([inv], settings()).vm_steps] == ["web-1"]
    p = plan([inv], settings(), selection=["legacy"])
    assert codes(p) == {"east/legacy": ["excluded"]} and p.waves == ()


def test_targets_use_names_tags_regex_and_excludes() -> None:
    inv = Inventory("east", hosts=(E1,), vms=(
        vm("east", "web-1", E1), vm("east", "db-7", E1), vm("east", "misc", E1, tags=("patch-me",)),
        vm("east", "web-legacy", E1), vm("east", "other", E1),
    ))  # fmt: skip
    config = parse_settings_text(
        SITES + '[targets]\nnames = ["web-*"]\ntags = ["patch-me"]\nregex = \'^db-\\d+$\'\nexclude_names = ["web-legacy"]\n' + CHECKED,
        file=Path("/x.toml"), environ={},
    )  # fmt: skip
    assert sorted(s.vm.name for s in plan([inv], config).vm_steps) == ["db-7", "misc", "web-1"]


# ------------------------------------------------------------------------------------ estimates and windows
def test_estimates_are_the_median_of_history_else_the_default() -> None:
    p = plan([EAST], settings('[policy]\ndefault_vm_duration = "10m"\nhealth_deadline = "2m"\n'),
             history={"vm:east:uuid-web-1": [100.0, 300.0, 200.5, 900.0]})  # fmt: skip
    steps = {s.vm.name: s for s in p.vm_steps}
    assert steps["web-1"].est_duration_s == 251  # median 250.25, rounded up
    assert steps["web-2"].est_duration_s == 600
    assert steps["web-1"].est_rollback_s == 240  # failed verify + verify after revert


WINDOWED = """
[[groups]]
name = "weekend-group"
ring = "main"
match = {{ names = ["*"] }}
window = "weekend"
[rings]
order = ["main"]
[rings.main]
wave_size = {wave_size}
[policy]
concurrency = 1
default_vm_duration = "{duration}"
health_deadline = "5m"
[windows.weekend]
cron = "0 22 * * SAT"
duration = "2h"
timezone = "Europe/Berlin"
cutoff = "15m"
"""


def test_waves_start_in_the_next_window_and_fit() -> None:
    p = plan([EAST], settings(WINDOWED.format(wave_size=0, duration="10m")), hosts=False)
    assert p.window.window == "weekend" and p.window.fits
    assert (p.window.start, p.window.end, p.window.cutoff) == (
        "2026-05-09T20:00:00+00:00",
        "2026-05-09T22:00:00+00:00",
        "2026-05-09T21:45:00+00:00",
    )
    assert p.waves[0].est_start == "2026-05-09T20:00:00+00:00" and p.waves[0].est_duration_s == 3 * 600


def test_a_wave_predicted_past_the_cutoff_does_not_fit() -> None:
    p = plan([EAST], settings(WINDOWED.format(wave_size=1, duration="40m")), hosts=False)
    # 40 min per VM, worst-case rollback 10 min, work must end by 21:45 UTC (window 20:00-22:00, cutoff 15m):
    # the third VM would start at 21:20 and cannot, so it waits for next Saturday's window (as the run does).
    assert [w.est_start[:16] for w in p.waves] == ["2026-05-09T20:00", "2026-05-09T20:40", "2026-05-16T20:00"]
    assert [w.fits for w in p.waves] == [True, True, False]
    assert not p.window.fits and "main:2" in p.window.note


def test_a_vm_that_can_never_fit_its_window_is_blocked() -> None:
    p = plan([EAST], settings(WINDOWED.format(wave_size=0, duration="2h")), hosts=False)
    assert list(codes(p).values()) == [["window"]] * 3 and p.waves == ()
    assert "widen the window" in p.blocked[0].reason


def test_without_windows_the_run_starts_now() -> None:
    p = plan([EAST], settings(), hosts=False)
    assert p.window.window == "" and p.waves[0].est_start == "2026-05-06T12:00:00+00:00"
    assert p.created_at == "2026-05-06T12:00:00+00:00"


def test_the_failure_budget_resolves_percentages_against_planned_vms() -> None:
    assert plan([EAST, WEST], settings('[policy]\nfailure_budget = "40%"\n')).failure_budget == 2
    assert plan([EAST, WEST], settings("[policy]\nfailure_budget = 3\n")).failure_budget == 3


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        make_plan([EAST], settings(), datetime(2026, 5, 6, 12), capabilities={"east": ALL})


def test_guest_waves_are_timed_after_the_host_phase() -> None:
    p = plan([EAST], settings('[hosts]\ndefault_duration = "20m"\n'), history={"host:east:id-e3": [600.0]})
    assert [h.est_duration_s for h in p.host_steps] == [1200, 1200, 600]
    assert p.waves[0].est_start == "2026-05-06T12:50:00+00:00"  # 20 + 20 + 10 minutes of host work first
