"""``run --cve`` selection: CVE ids, the plan narrowed to the affected VMs (policy "cve"), the others
blocked with a reason, the target set, and ``--now`` (no group bound to a window)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.config.loader import parse_settings_text
from orchestrator.errors import CveSelectionError
from orchestrator.model import Plan, UpdateMode, vm_step_id
from orchestrator.planning.cve import narrow, override_windows, packages_of, parse_cves
from orchestrator.planning.planner import make_plan
from orchestrator.vulns.findings import Finding
from providers.base import Capability, Inventory, PowerState, VmInfo, VmRef

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CVE, OTHER = "CVE-2099-0001", "CVE-2099-0002"
CONFIG = """[providers.east]
kind = "libvirt"
uri = "qemu:///system"
[targets]
names = ["*"]
[hosts]
enabled = false
[windows.nights]
cron = "0 2 * * *"
duration = "2h"
[[groups]]
name = "web"
ring = "main"
window = "nights"
match = { names = ["web-*"] }
[rings]
order = ["canary", "main"]
[rings.canary]
[rings.main]
[[health]]
name = "app"
kind = "command"
command = "true"
"""


def vm(name: str) -> VmInfo:
    return VmInfo(ref=VmRef("east", f"uuid-{name}", name), power=PowerState.RUNNING)


def step_id(name: str) -> str:
    return vm_step_id(VmRef("east", f"uuid-{name}", name))


def finding(cve: str, package: str = "demo-app", installed: str = "1.0", fixed: str = "1.1") -> Finding:
    return Finding(cve=cve, package=package, installed=installed, fixed_version=fixed, severity="critical",
                   cvss_score=9.8, kev=True, kev_due="", sources=("PW-2099-0001",), published="2026-11-20",
                   days_since_release=14, fix_available=True)  # fmt: skip


def plan(settings_body: str = "", *names: str) -> Plan:
    settings = parse_settings_text(CONFIG + settings_body, file=Path("/etc/patchwave/t.toml"), environ={})
    vms = tuple(vm(n) for n in names or ("web-1", "web-2", "web-3", "web-4", "db-1"))
    return make_plan(
        [Inventory("east", (), vms)], settings, NOW, capabilities={"east": frozenset(Capability)}
    )


def test_cve_ids_are_normalised_and_a_malformed_one_is_bad_input() -> None:
    assert parse_cves(["cve-2024-3094", "CVE-2099-0001", " CVE-2024-3094 "]) == (
        "CVE-2024-3094",
        "CVE-2099-0001",
    )
    with pytest.raises(CveSelectionError) as bad:
        parse_cves(["CVE-24-1"])
    assert bad.value.exit_code == 2 and "CVE-YYYY-NNNN" in str(bad.value) and "'CVE-24-1'" in str(bad.value)
    with pytest.raises(CveSelectionError):
        parse_cves([])


def test_only_affected_vms_are_planned_with_the_fixing_packages_the_rest_is_blocked_with_a_reason() -> None:
    full = plan()
    findings = {
        step_id("web-1"): [finding(CVE), finding(OTHER, "openssl", "3.0.11", "3.0.15")],
        step_id("web-2"): [finding(CVE, "demo-app", "1.0", "")],  # affected, no fix in the distribution
        step_id("db-1"): [finding(CVE), finding(CVE, "demo-lib", "1.0", "1.1")],
        step_id("web-3"): [finding(OTHER)],  # another CVE only
    }
    assessed = {step_id(n): "2026-12-04T11:00:00+00:00" for n in ("web-1", "web-2", "web-3", "db-1")}
    narrowed = narrow(full, [CVE], findings, assessed)

    planned = {s.vm.name: s for s in narrowed.plan.vm_steps}
    assert sorted(planned) == ["db-1", "web-1"]
    assert all(s.policy.update_mode is UpdateMode.CVE and s.policy.pins == () for s in planned.values())
    assert planned["web-1"].window == "nights"  # windows, rings and snapshots as for any run
    blocked = {b.target: (b.code, b.reason) for b in narrowed.plan.blocked}
    assert blocked["east/web-2"][0] == "no_fix" and "no fixed version" in blocked["east/web-2"][1]
    assert blocked["east/web-3"] == (
        "not_affected",
        f"not affected by {CVE} (latest assessment, 2026-12-04T11:00:00+00:00)",
    )
    assert blocked["east/web-4"][0] == "not_assessed" and "patchwave assess" in blocked["east/web-4"][1]
    assert all(w.vms for w in narrowed.plan.waves)  # no empty wave is left
    assert narrowed.plan.plan_id != full.plan_id

    targets = {(t.vm.name, t.cve, t.package, t.fixed_version) for t in narrowed.targets}
    assert targets == {("web-1", CVE, "demo-app", "1.1"), ("db-1", CVE, "demo-app", "1.1"),
                       ("db-1", CVE, "demo-lib", "1.1")}  # fmt: skip
    assert packages_of(t for t in narrowed.targets if t.vm.name == "db-1") == ("demo-app", "demo-lib")
    assert all(t.kev and t.published == "2026-11-20" for t in narrowed.targets)


def test_narrowing_is_deterministic() -> None:
    findings = {step_id("web-1"): [finding(CVE)]}
    one = narrow(plan(), [CVE], findings, {})
    two = narrow(plan(), [CVE], findings, {})
    assert one == two


def test_now_unbinds_every_group_from_its_window() -> None:
    settings = parse_settings_text(CONFIG, file=Path("/etc/patchwave/t.toml"), environ={})
    windowless = override_windows(settings)
    assert "nights" in [g.window for g in settings.groups] and {g.window for g in windowless.groups} == {""}
    made = make_plan([Inventory("east", (), (vm("web-1"),))], windowless, NOW,
                     capabilities={"east": frozenset(Capability)})  # fmt: skip
    assert [s.window for s in made.vm_steps] == [""] and not made.blocked


def test_cve_is_not_an_update_mode_a_configuration_may_name() -> None:
    from orchestrator.errors import ConfigError

    with pytest.raises(ConfigError) as bad:
        parse_settings_text(
            CONFIG + '[policy]\nupdates = "cve"\n', file=Path("/etc/patchwave/t.toml"), environ={}
        )
    assert "updates" in str(bad.value)
