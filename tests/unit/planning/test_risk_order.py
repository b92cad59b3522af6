"""The ring order by risk: KEV fixes, then severity and CVSS, then exposure tags, then site/name/id."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.loader import parse_settings_text
from orchestrator.model import Plan, vm_step_id
from orchestrator.planning.planner import make_plan
from orchestrator.vulns.risk import VmRisk
from providers.base import Capability, Inventory, PowerState, VmInfo, VmRef

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CONFIG = """[providers.east]
kind = "libvirt"
uri = "qemu:///system"
[targets]
names = ["*"]
[hosts]
enabled = false
[policy]
require_health = false  # the order is what is tested here, not the health blocker
[[groups]]
name = "canary"
ring = "canary"
match = { names = ["canary-*"] }
[rings]
order = ["canary", "main"]
[rings.canary]
[rings.main]
wave_size = 2
"""


def vm(name: str, *tags: str) -> VmInfo:
    return VmInfo(ref=VmRef("east", f"uuid-{name}", name), power=PowerState.RUNNING, tags=tags)


VMS = (vm("a-quiet"), vm("b-edge", "internet-facing"), vm("c-kev"), vm("d-critical"), vm("e-critical-9.8"),
       vm("f-low"), vm("canary-1"), vm("canary-2", "internet-facing"))  # fmt: skip
RISKS = {
    vm_step_id(VmRef("east", "uuid-c-kev", "c-kev")): VmRisk(kev=1, severity="moderate", cvss=5.0, fixable=2),
    vm_step_id(VmRef("east", "uuid-d-critical", "d-critical")): VmRisk(
        severity="critical", cvss=9.1, fixable=1
    ),
    vm_step_id(VmRef("east", "uuid-e-critical-9.8", "e-critical-9.8")): VmRisk(
        severity="critical", cvss=9.8, fixable=4
    ),
    vm_step_id(VmRef("east", "uuid-f-low", "f-low")): VmRisk(severity="low", cvss=None, fixable=1),
}


def plan(risks: dict[str, VmRisk], body: str = "", vms: tuple[VmInfo, ...] = VMS) -> Plan:
    settings = parse_settings_text(CONFIG + body, file=Path("/etc/patchwave/t.toml"), environ={})
    return make_plan([Inventory("east", (), vms)], settings, NOW, capabilities={"east": frozenset(Capability)},
                     risks=risks)  # fmt: skip


def waves(p: Plan) -> list[list[str]]:
    return [[s.vm.name for s in w.vms] for w in p.waves]


def test_inside_a_ring_and_its_waves_the_most_at_risk_come_first() -> None:
    assert waves(plan(RISKS)) == [
        ["canary-2", "canary-1"],  # no risk known: the exposed one first
        ["c-kev", "e-critical-9.8"],  # KEV beats a higher severity; then CVSS decides between criticals
        ["d-critical", "f-low"],
        ["b-edge", "a-quiet"],  # nothing fixable: exposure, then name
    ]


def test_exposure_tags_are_configurable_and_without_risks_the_order_is_by_name() -> None:
    assert waves(plan({}, '[assess]\nexposure_tags = []\n')) == [
        ["canary-1", "canary-2"], ["a-quiet", "b-edge"], ["c-kev", "d-critical"], ["e-critical-9.8", "f-low"],
    ]  # fmt: skip
    assert waves(plan({}, '[assess]\nexposure_tags = ["dmz"]\n', (vm("a"), vm("b", "dmz"))))[0] == ["b", "a"]


def test_the_plan_id_is_deterministic_and_follows_the_risks() -> None:
    shuffled = list(VMS)
    random.Random(7).shuffle(shuffled)
    first, again = plan(RISKS), plan(RISKS, vms=tuple(shuffled))
    assert first.plan_id == again.plan_id and waves(first) == waves(again)
    assert plan({}).plan_id != first.plan_id  # the risks are an input: another order, another id
