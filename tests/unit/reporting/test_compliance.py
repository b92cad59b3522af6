"""The compliance report: figures per machine and per group from a real fact store, in four formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from orchestrator.reporting.compliance import ComplianceReport, build_report, human_age
from orchestrator.reporting.render import CSV_COLUMNS, FORMATS, render
from tests.support.fleet import NOW, populate
from tests.support.paths import REPO


@pytest.fixture
def report(tmp_path: Path) -> ComplianceReport:
    fleet = populate(tmp_path / "facts.db")
    try:
        return build_report(fleet.store, NOW)
    finally:
        fleet.store.close()


def machines(report: ComplianceReport) -> dict:
    return {m.name: m for m in report.machines}


def test_each_machine_has_its_last_patch_last_result_and_pending_updates(report: ComplianceReport) -> None:
    m = machines(report)
    assert set(m) == {"web-1", "web-2", "db-1", "canary-1", "legacy-<b>1</b>"}
    web1, web2, db1, canary, legacy = (
        m[n] for n in ("web-1", "web-2", "db-1", "canary-1", "legacy-<b>1</b>")
    )
    assert (web1.last_patched, web1.last_result, web1.last_run) == (
        "2026-11-25T21:15:00+00:00",
        "succeeded",
        "run-2",
    )
    assert (web1.status, web1.pending_total, web1.reboot_required) == ("ok", 0, False)
    assert web1.kernel == "6.1.0-28-amd64" and web1.os == "Debian GNU/Linux 12 (bookworm)"
    # web-2 was rolled back and never patched successfully; its pending updates by severity:
    assert (web2.last_patched, web2.last_result, web2.status) == ("", "rolled_back", "attention")
    assert "HTTP 503" in web2.last_error
    assert dict(web2.pending) == {
        "critical": 1,
        "important": 2,
        "moderate": 1,
        "low": 0,
        "unrated": 0,
        "other": 1,
    }
    assert (web2.pending_total, web2.security, web2.cves) == (5, 4, 3)
    # db-1: nothing security-relevant pending, but a reboot is
    assert (db1.status, db1.reboot_required, db1.pending["other"], db1.snapshot_ages_s) == (
        "attention",
        True,
        2,
        (),
    )
    # canary-1 was patched on the 20th; its latest result (run-2) failed
    assert (canary.last_patched, canary.last_result, canary.status) == (
        "2026-11-20T20:20:00+00:00",
        "failed",
        "attention",
    )
    # never assessed: pending updates unknown
    assert (legacy.status, legacy.assessed_at, legacy.reboot_required, legacy.group) == (
        "unknown",
        "",
        None,
        "-",
    )


def test_snapshot_ages_count_only_snapshots_still_held(report: ComplianceReport) -> None:
    m = machines(report)
    assert m["web-1"].snapshot_ages_s == (15 * 3600,)  # kept, created 2026-11-25 21:00
    assert m["web-2"].snapshot_ages_s == (5 * 86400 + 16 * 3600,)  # reverted, created 2026-11-20 20:00
    assert m["legacy-<b>1</b>"].snapshot_ages_s == (15 * 3600,)  # an intent: the snapshot may exist
    assert human_age(m["web-2"].oldest_snapshot_s) == "5d 16h"


def test_groups_aggregate_their_machines(report: ComplianceReport) -> None:
    groups = {g.group: g for g in report.groups}
    assert list(groups) == ["-", "canary", "databases", "web"]
    web = groups["web"]
    assert (web.machines, web.ok, web.attention, web.unknown, web.pending_total, web.security) == (
        2,
        1,
        1,
        0,
        5,
        4,
    )
    assert (web.failed, web.never_patched, web.snapshots, web.least_recently_patched) == (
        1, 1, 2, "2026-11-25T21:15:00+00:00")  # fmt: skip
    t = report.totals
    assert (t.machines, t.ok, t.attention, t.unknown) == (5, 1, 3, 1)
    assert (t.security, t.pending["critical"], t.reboot_required, t.failed, t.never_patched) == (
        4,
        1,
        1,
        2,
        2,
    )
    assert (t.snapshots, t.oldest_snapshot_s) == (3, 5 * 86400 + 16 * 3600)


def test_json_holds_every_figure_and_the_status(report: ComplianceReport) -> None:
    data = json.loads(render(report, "json"))
    assert data["generated_at"] == "2026-11-26T12:00:00+00:00"
    web2 = next(m for m in data["machines"] if m["name"] == "web-2")
    assert (web2["status"], web2["pending"]["critical"], web2["last_result"]) == (
        "attention",
        1,
        "rolled_back",
    )
    assert data["totals"]["machines"] == 5 and len(data["groups"]) == 4


def test_csv_is_one_row_per_machine(report: ComplianceReport) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    web2 = next(r for r in rows if r["name"] == "web-2")
    assert (web2["pending_critical"], web2["pending_total"], web2["reboot_required"], web2["status"]) == (
        "1", "5", "false", "attention")  # fmt: skip
    legacy = next(r for r in rows if r["site"] == "dc2")
    assert legacy["reboot_required"] == "" and legacy["status"] == "unknown"


def test_the_table_names_every_machine_and_group(report: ComplianceReport) -> None:
    text = render(report, "table")
    for name in ("dc1/web-1", "dc1/web-2", "dc1/db-1", "dc1/canary-1", "databases", "canary", "all"):
        assert name in text
    assert "rolled_back" in text and "5d 16h" in text


def test_html_escapes_names_and_is_self_contained(report: ComplianceReport) -> None:
    page = render(report, "html")
    assert "legacy-&lt;b&gt;1&lt;/b&gt;" in page and "<b>1</b>" not in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # no external assets
    assert 'data-figure="machines"><span class="value">5</span>' in page


def test_an_empty_fact_store_gives_an_empty_report(tmp_path: Path) -> None:
    from orchestrator.facts.store import FactStore

    store = FactStore(tmp_path / "facts.db")
    try:
        report = build_report(store, NOW)
    finally:
        store.close()
    assert report.machines == () and report.totals.machines == 0
    for fmt in FORMATS:
        assert render(report, fmt)
    assert "No machine is on record yet" in render(report, "html")


def test_an_unknown_format_is_refused(report: ComplianceReport) -> None:
    with pytest.raises(ValueError, match="table, json, csv, html"):
        render(report, "pdf")


def test_the_report_command_writes_every_format(tmp_path: Path) -> None:
    import subprocess
    import sys

    state = tmp_path / "state"
    populate(state / "facts.db").store.close()
    config = tmp_path / "patchwave.toml"
    config.write_text(
        f'[state]\ndir = "{state}"\n[providers.dc1]\nkind = "libvirt"\nuri = "test:///default"\n'
    )

    def patchwave(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", "-c", str(config), *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)  # fmt: skip

    as_json = patchwave("report", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["totals"]["machines"] == 5
    written = patchwave("report", "-f", "html", "-o", str(tmp_path / "report.html"))
    assert written.returncode == 0 and "written to" in written.stderr
    assert 'data-figure="attention"><span class="value">3</span>' in (tmp_path / "report.html").read_text()
    table = patchwave("report")
    assert table.returncode == 0 and "dc1/web-2" in table.stdout
    wrong = patchwave("report", "--format", "pdf")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


def test_a_critical_machine_without_a_verified_backup_is_flagged(report: ComplianceReport) -> None:
    from dataclasses import replace

    base = machines(report)["web-1"]
    missing = replace(base, name="crit-1", critical=True)
    covered = replace(base, name="crit-2", critical=True, backup_verified_at="2026-11-30T00:00:00+00:00",
                      backup_how="agent")  # fmt: skip
    plain = replace(base, name="plain-1")
    assert (missing.backup_missing, covered.backup_missing, plain.backup_missing) == (True, False, False)
    assert missing.status == "attention" and plain.status == base.status
    flagged = replace(report, machines=(missing, covered, plain))
    table = render(flagged, "table")
    assert "MISSING (critical)" in table and "ago (critical)" in table
    html = render(flagged, "html")
    assert html.count('<td class="crit" data-field="backup">MISSING (critical)</td>') == 1
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(flagged, "csv")))}
    assert [(rows[n]["critical"], rows[n]["backup_missing"]) for n in ("crit-1", "crit-2", "plain-1")] == [
        ("true", "true"), ("true", "false"), ("false", "false")
    ]  # fmt: skip
    assert json.loads(render(flagged, "json"))["machines"][0]["backup_missing"] is True


def test_each_machine_shows_its_automatic_updater_as_last_checked(tmp_path: Path) -> None:
    from orchestrator.facts.autoupdates import AutoUpdateJournal
    from providers.base import VmRef

    fleet = populate(tmp_path / "facts.db")
    try:
        before = machines(build_report(fleet.store, NOW))
        journal = AutoUpdateJournal(fleet.store)
        detail = {"updater": "unattended-upgrades", "installed": True, "enabled": True, "drift": [],
                  "last_run": {"result": "ok"}, "paused_by": ""}  # fmt: skip
        web1, web2 = before["web-1"], before["web-2"]
        journal.record("op-1", VmRef(web1.site, web1.vm_id, "web-1"), "status", mode="security", ok=True,
                       detail=detail)  # fmt: skip
        drifted = {**detail, "drift": ["Automatic-Reboot: true, policy false"], "enabled": False}
        journal.record("op-1", VmRef(web2.site, web2.vm_id, "web-2"), "status", mode="security", ok=False,
                       detail=drifted)  # fmt: skip
        report = build_report(fleet.store, NOW)
    finally:
        fleet.store.close()
    found = machines(report)
    assert found["web-1"].updater == "unattended-upgrades enabled (policy security), last run ok"
    assert (found["web-1"].updater_ok, found["web-2"].updater_ok) == (True, False)
    assert found["web-2"].updater == "unattended-upgrades disabled (policy security), drift: 1, last run ok"
    assert all(
        m.updater == "" and m.updater_ok is None for n, m in found.items() if n not in ("web-1", "web-2")
    )
    table = render(report, "table")
    assert "automatic" in table and "DRIFT:" in table  # a column of its own (wrapped at the table's width)
    html = render(report, "html")
    assert (
        html.count('<td class="crit" data-field="updater">DRIFT: ') == 1
        and "<th>Automatic updater</th>" in html
    )
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(render(report, "csv")))}
    assert (rows["web-1"]["updater_ok"], rows["web-2"]["updater_ok"], rows["db-1"]["updater_ok"]) == (
        "true",
        "false",
        "",
    )
