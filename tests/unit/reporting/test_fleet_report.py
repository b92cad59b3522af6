"""The compliance report of the whole fleet (tests/support/fleet.py: populate_fleet): every machine of the
latest inventories, the hypervisor hosts, the compliance trend and the runs' timelines — and the charts
drawn from them (inline SVG: well-formed, accessible, escaped)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.facts.fleet import fleet_figures
from orchestrator.facts.records import StepRecord
from orchestrator.reporting import charts, sections
from orchestrator.reporting.compliance import ComplianceReport, build_report
from orchestrator.reporting.render import render
from orchestrator.reporting.timelines import RunTimeline, TimelineRow, bars_of
from tests.support.fleet import NOW, Fleet, populate_fleet
from tests.support.postgres import ModuleSchema

GRACE = 30 * 86400


@pytest.fixture(params=["sqlite", "postgres"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path, module_schema: ModuleSchema) -> Iterator[Fleet]:
    """The fleet on either engine (the report's SQL runs on both)."""
    where = tmp_path / "facts.db" if request.param == "sqlite" else module_schema.target()
    f = populate_fleet(where)
    yield f
    f.store.close()


@pytest.fixture
def report(fleet: Fleet) -> ComplianceReport:
    return build_report(fleet.store, NOW)


def machines(report: ComplianceReport) -> dict:
    return {m.name: m for m in report.machines}


def test_every_machine_of_the_inventory_is_reported_never_assessed_ones_too(report: ComplianceReport) -> None:
    m = machines(report)
    assert set(m) == {"web-1", "web-2", "db-1", "canary-1", "app-1", "app-2", "new-1", "legacy-<b>1</b>"}
    new = m["new-1"]
    assert (new.status, new.compliance, new.state, new.group, new.last_result) == (
        "unknown", "unassessed", "running", "default", "")  # fmt: skip
    assert m["legacy-<b>1</b>"].state == "stopped" and m["legacy-<b>1</b>"].group == "default"
    # retired-1 was assessed, but its site's latest inventory no longer lists it
    assert (report.departed, report.departed_count) == (("dc1/retired-1",), 1)
    assert [(i.site, i.hosts, i.vms) for i in report.inventories] == [("dc1", 2, 7), ("dc2", 1, 1)]


def test_compliance_follows_the_rule_and_agrees_with_the_metrics(
    fleet: Fleet, report: ComplianceReport
) -> None:
    m = machines(report)
    assert {n: x.compliance for n, x in m.items()} == {
        "web-1": "compliant", "web-2": "noncompliant", "db-1": "compliant", "canary-1": "compliant",
        "app-1": "noncompliant", "app-2": "compliant", "new-1": "unassessed", "legacy-<b>1</b>": "unassessed",
    }  # fmt: skip
    figures = {g.group: g for g in fleet_figures(fleet.store, NOW, GRACE).groups}
    for group in report.groups:
        assert (group.machines, group.noncompliant, group.unknown) == (
            figures[group.group].machines, figures[group.group].noncompliant, figures[group.group].unassessed)  # fmt: skip
    assert report.totals.noncompliant == 2


def test_hypervisor_hosts_show_state_build_patches_pending_updates_and_maintenance(
    report: ComplianceReport,
) -> None:
    hosts = {h.name: h for h in report.hosts}
    esx1, esx2, kvm1 = hosts["esx-1"], hosts["esx-2"], hosts["kvm-1"]
    assert (esx1.state, esx1.build, esx1.last_patched, esx1.last_result, esx1.last_run) == (
        "connected", "24022515", "2026-11-25T20:48:00+00:00", "succeeded", "run-2")  # fmt: skip
    assert (esx1.pending, esx1.in_maintenance, esx1.status) == (None, False, "ok")
    assert (esx2.in_maintenance, esx2.maintenance_run, esx2.last_result, esx2.status) == (
        True,
        "run-2",
        "failed",
        "attention",
    )
    # report-only: pending updates listed, never patched
    assert (kvm1.pending, kvm1.security, kvm1.reboot_required, kvm1.last_patched) == (3, 1, True, "")
    assert kvm1.detail.startswith("report only")


def test_the_trend_is_one_point_per_day_ending_with_today(fleet: Fleet, report: ComplianceReport) -> None:
    trend = {p.day: p for p in report.trend}
    assert (
        len(report.trend) == 30
        and report.trend[0].day == "2026-10-28"
        and report.trend[-1].day == "2026-11-26"
    )
    before, first_run = trend["2026-11-19"], trend["2026-11-20"]
    assert (before.compliant, before.noncompliant, before.unassessed) == (2, 0, 6)  # app-1, app-2 (run-0)
    assert (first_run.noncompliant, first_run.critical) == (1, 1)  # web-2's critical update
    assert trend["2026-11-24"].noncompliant == 2  # app-1: an important update, last patched 54 days before
    last = report.trend[-1]
    figures = fleet_figures(fleet.store, NOW, GRACE).groups
    assert (last.compliant + last.noncompliant + last.unassessed) == sum(g.machines for g in figures)
    assert last.noncompliant == sum(g.noncompliant for g in figures)
    assert last.unassessed == sum(g.unassessed for g in figures)
    assert last.security == 4 + 1 + 1  # web-2, app-1, app-2


def test_timelines_draw_each_vm_steps_from_the_journal(report: ComplianceReport) -> None:
    runs = {t.run_id: t for t in report.timelines}
    assert [t.run_id for t in report.timelines] == ["run-2", "run-3", "run-1", "run-0"]  # newest first
    web2 = next(r for r in runs["run-1"].rows if r.vm == "dc1/web-2")
    assert [(b.kind, b.start[11:19], b.end[11:19], b.ok) for b in web2.bars] == [
        ("snapshot", "21:10:00", "21:11:00", True), ("health", "21:11:00", "21:11:20", True),
        ("patch", "21:12:30", "21:20:00", True), ("reboot", "21:20:10", "21:23:00", True),
        ("health", "21:23:00", "21:28:00", False), ("rollback", "21:28:30", "21:33:00", True),
        ("health", "21:33:00", "21:38:00", True),
    ]  # fmt: skip
    assert [r.vm for r in runs["run-1"].rows] == [
        "dc1/canary-1",
        "dc1/db-1",
        "dc1/web-1",
        "dc1/web-2",
    ]  # by start
    # run-0 has outcomes but no journal: one bar per VM for the whole outcome
    assert {b.kind for r in runs["run-0"].rows for b in r.bars} == {"outcome"}


def test_a_big_run_shows_a_bounded_number_of_vms_the_failed_first(fleet: Fleet) -> None:
    report = build_report(fleet.store, NOW, timeline_runs=3, timeline_vms=2)
    run1 = next(t for t in report.timelines if t.run_id == "run-1")
    # web-2 (rolled back) chosen first, then the succeeded ones by step id (canary-1); drawn by start time
    assert (run1.vms, [r.vm for r in run1.rows]) == (4, ["dc1/canary-1", "dc1/web-2"])
    assert "showing 2 of 4 VMs" in sections.timelines_section(report)


def record(id_: int, action: str, phase: str, at: str, ok: bool | None = None) -> StepRecord:
    return StepRecord(id_, "r", "vm:s:1", action, phase, "", ok, {}, "", f"2026-01-01T{at}+00:00", 1)


def test_bars_of_an_interrupted_step_and_of_results_without_intent() -> None:
    bars = bars_of([
        record(1, "snapshot", "intent", "10:00:00"), record(2, "snapshot", "result", "10:01:00", True),
        record(3, "patch", "result", "10:01:05", True),  # nothing to patch: no intent
        record(4, "reboot", "intent", "10:02:00"),  # the worker died: no result
        record(5, "notify_run_finished", "result", "10:03:00", True),  # not a step of the VM: no bar
    ])  # fmt: skip
    assert [(b.kind, b.start[11:19], b.end[11:19], b.ok) for b in bars] == [
        ("snapshot", "10:00:00", "10:01:00", True), ("patch", "10:01:00", "10:01:05", True),
        ("reboot", "10:02:00", "10:03:00", None)]  # fmt: skip


def svg_root(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML: every text escaped


def test_charts_are_accessible_well_formed_svg(report: ComplianceReport) -> None:
    for svg in (charts.trend_machines(report.trend), charts.trend_updates(report.trend),
                *(charts.run_timeline(t, i) for i, t in enumerate(report.timelines))):  # fmt: skip
        root = svg_root(svg)
        assert root.get("role") == "img"
        title_id, desc_id = root.get("aria-labelledby", "").split()
        assert root.find("title").get("id") == title_id and root.find("desc").get("id") == desc_id
        assert root.find("desc").text
    bars = svg_root(charts.trend_machines(report.trend))
    day = bars.find(".//*[@data-day='2026-11-24']")
    assert {r.get("data-kind"): r.find("title").text for r in day} == {
        "compliant": "2026-11-24: 2 compliant", "noncompliant": "2026-11-24: 2 non-compliant",
        "unassessed": "2026-11-24: 4 never assessed"}  # fmt: skip


def test_a_timeline_escapes_names_and_titles_every_bar(report: ComplianceReport) -> None:
    run = report.timelines[0]
    hostile = RunTimeline("run-<x>", "failed", run.created_at, 1,
                          (TimelineRow('dc9/"><script>alert(1)</script>', "failed", "<b>boom</b>", run.rows[0].bars),))  # fmt: skip
    svg = charts.run_timeline(hostile)
    assert "<script>" not in svg and "<b>" not in svg
    root = svg_root(svg)
    assert root.find(".//*[@data-vm]").get("data-vm") == 'dc9/"><script>alert(1)</script>'
    assert all(
        rect.find("title").text for rect in root.iter("rect") if rect.get("data-kind") in charts.BAR_KINDS
    )


def test_the_html_page_has_the_fleet_sections_and_stays_offline(report: ComplianceReport) -> None:
    page = render(report, "html")
    for marker in ('data-chart="trend-machines"', 'data-chart="trend-updates"', 'data-chart="timeline"',
                   'id="hosts"', 'data-host="dc1/esx-2"', 'data-figure="departed"', 'data-figure="inventories"',
                   'data-figure="noncompliant"><span class="value">2</span>'):  # fmt: skip
        assert marker in page, marker
    assert page.count("<svg") == 2 + len(report.timelines)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "legacy-&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page


def test_a_huge_fleet_page_lists_the_machines_that_need_it_most(
    report: ComplianceReport, monkeypatch
) -> None:
    monkeypatch.setattr(sections, "MAX_HTML_MACHINES", 3)
    page = render(report, "html")
    assert page.count("<tr data-machine=") == 3 and "Showing 3 of 8 machines" in page
    assert 'data-machine="dc1/web-2"' in page and 'data-machine="dc1/app-1"' in page  # non-compliant first


def test_json_carries_hosts_trend_timelines_and_departed(report: ComplianceReport) -> None:
    data = json.loads(render(report, "json"))
    assert {h["name"] for h in data["hosts"]} == {"esx-1", "esx-2", "kvm-1"}
    assert len(data["trend"]) == 30 and data["departed"] == ["dc1/retired-1"]
    assert data["timelines"][0]["run_id"] == "run-2" and data["grace_s"] == GRACE
    assert next(m for m in data["machines"] if m["name"] == "new-1")["compliance"] == "unassessed"


def test_report_refresh_discovers_first_and_reports_what_it_found(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    config = tmp_path / "patchwave.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n[providers.lab]\nkind = "libvirt"\nuri = "test:///default"\n'
    )
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "-c", str(config), "report", "--refresh", "-f", "json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # libvirt's test driver: one host, one domain "test"; never assessed, recorded by the discovery
    assert [(m["name"], m["status"], m["group"]) for m in data["machines"]] == [
        ("test", "unknown", "default")
    ]
    assert [h["state"] for h in data["hosts"]] == ["connected"] and data["inventories"][0]["site"] == "lab"
    again = subprocess.run([sys.executable, "-m", "orchestrator.cli", "-c", str(config), "report", "-f", "json"],
                           env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert json.loads(again.stdout)["machines"] == data["machines"]  # from the fact store alone
