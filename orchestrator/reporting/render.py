"""Render a :class:`~orchestrator.reporting.compliance.ComplianceReport`: table (rich), json, csv, html.

The HTML is one self-contained file (inline CSS, inline SVG charts, no scripts, no external assets) from
``orchestrator/reporting/templates/report.html`` (fleet-wide sections: :mod:`.sections`, charts:
:mod:`.charts`); every value is escaped. Figures carry ``data-figure`` /
``data-field`` attributes so tools (and the tests) can read them from the DOM.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Mapping
from dataclasses import asdict
from importlib import resources
from string import Template
from typing import TYPE_CHECKING

from orchestrator.facts.records import SEVERITIES
from orchestrator.reporting import cves, sections
from orchestrator.reporting.compliance import (
    ComplianceReport,
    GroupCompliance,
    MachineCompliance,
    human_age,
    since,
)

if TYPE_CHECKING:
    from rich.table import Table

FORMATS = ("table", "json", "csv", "html")
TITLE = "patchwave compliance report"
_LABELS = {"critical": "Critical", "important": "Important", "moderate": "Moderate", "low": "Low",
           "unrated": "Unrated", "other": "Other"}  # fmt: skip


def render(report: ComplianceReport, fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report)
    if fmt == "table":
        return to_table(report)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


# ------------------------------------------------------------------------------------ json / csv
def to_json(report: ComplianceReport) -> str:
    body = asdict(report)
    for machine, row in zip(report.machines, body["machines"], strict=True):
        row["status"] = machine.status
        row["backup_missing"] = machine.backup_missing
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


CSV_COLUMNS = ("site", "name", "vm_id", "group", "status", "os", "kernel", "last_patched", "last_result",
               "last_run", *(f"pending_{s}" for s in SEVERITIES), "pending_total", "security", "cves",
               "reboot_required", "snapshots", "oldest_snapshot_s", "assessed_at", "compliance", "state",
               "services_old_libraries", "critical", "backup_verified_at", "backup_missing", "updater",
               "updater_ok", "updater_checked_at")  # fmt: skip


def to_csv(report: ComplianceReport) -> str:
    """One row per machine (groups are a GROUP BY away)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in report.machines:
        reboot = "" if m.reboot_required is None else str(m.reboot_required).lower()
        writer.writerow([m.site, m.name, m.vm_id, m.group, m.status, m.os, m.kernel, m.last_patched, m.last_result,
                         m.last_run, *(m.pending.get(s, 0) for s in SEVERITIES), m.pending_total, m.security,
                         m.cves, reboot, len(m.snapshot_ages_s), m.oldest_snapshot_s or "", m.assessed_at,
                         m.compliance, m.state, " ".join(m.restart_needed), str(m.critical).lower(),
                         m.backup_verified_at, str(m.backup_missing).lower(), m.updater,
                         "" if m.updater_ok is None else str(m.updater_ok).lower(), m.updater_checked_at])  # fmt: skip
    return out.getvalue()


# ------------------------------------------------------------------------------------ table
def to_table(report: ComplianceReport, *, width: int = 200) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    groups = Table(title=f"{TITLE} — groups ({report.generated_at})", title_justify="left")
    for col in (
        "group",
        "machines",
        "ok",
        "attention",
        "unknown",
        "critical",
        "important",
        "pending",
        "reboot",
        "failed",
        "never patched",
        "oldest snapshot",
    ):
        groups.add_column(col, justify="left" if col == "group" else "right")
    for g in (*report.groups, report.totals):
        groups.add_row(escape(g.group), *map(str, (g.machines, g.ok, g.attention, g.unknown, g.pending["critical"],
                       g.pending["important"], g.pending_total, g.reboot_required, g.failed, g.never_patched)),
                       human_age(g.oldest_snapshot_s))  # fmt: skip
    machines = Table(title="machines", title_justify="left")
    for col in (
        "status",
        "machine",
        "group",
        "last patched",
        "last result",
        "crit",
        "imp",
        "mod",
        "low",
        "unrated",
        "other",
        "reboot",
        "old libs",
        "snapshots",
        "verified backup",
        "automatic updater",
    ):
        machines.add_column(col)
    for m in report.machines:
        machines.add_row(m.status, escape(f"{m.site}/{m.name}"), escape(m.group), since(m.last_patched, report.generated_at),
                         m.last_result or "-", *(_count(m, s) for s in SEVERITIES), _reboot(m), _stale(m),
                         _snaps(m), _backup(m, report.generated_at), escape(_updater(m)))  # fmt: skip
    console.print(groups)
    console.print(machines)
    if report.hosts:
        console.print(_hosts_table(report))
    if report.cves:
        console.print(_cves_table(report))
    for run in report.timelines:  # the latest runs' ring gate decisions (refusals, approvals, --force)
        for line in run.gates:
            console.print(escape(f"{run.run_id}: {line}"), soft_wrap=True)
    return buffer.getvalue()


def _cves_table(report: ComplianceReport) -> Table:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="patch by CVE (the latest `run --cve` runs)", title_justify="left")
    for col in ("run", "cve", "severity", "since", "affected", "fixed-active", "fixed-pending-restart",
                "still-open", "unproven"):  # fmt: skip
        table.add_column(col)
    for row in cves.table_rows(report.cves):
        table.add_row(*(escape(cell) for cell in row))
    return table


def _hosts_table(report: ComplianceReport) -> Table:
    from rich.markup import escape
    from rich.table import Table

    hosts = Table(title="hypervisor hosts", title_justify="left")
    for col in (
        "status",
        "host",
        "state",
        "build",
        "last patched",
        "last result",
        "pending",
        "reboot",
        "maintenance",
    ):
        hosts.add_column(col)
    for h in report.hosts:
        pending = "?" if h.pending is None else f"{h.pending} ({h.security} security)"
        reboot = "?" if h.reboot_required is None else ("yes" if h.reboot_required else "no")
        hosts.add_row(h.status, escape(f"{h.site}/{h.name}"), h.state or "-", escape(h.build or h.version or "-"),
                      since(h.last_patched, report.generated_at), h.last_result or "-", pending, reboot,
                      "yes" if h.in_maintenance else "no")  # fmt: skip
    return hosts


def _count(m: MachineCompliance, severity: str) -> str:
    return str(m.pending.get(severity, 0)) if m.assessed_at else "?"


def _reboot(m: MachineCompliance) -> str:
    return "?" if m.reboot_required is None else ("yes" if m.reboot_required else "no")


def _stale(m: MachineCompliance) -> str:
    """The services running old libraries: a count with the first names (table)."""
    if not m.assessed_at:
        return "?"
    shown = ", ".join(m.restart_needed[:2]) + (" ..." if len(m.restart_needed) > 2 else "")
    return f"{len(m.restart_needed)} ({shown})" if m.restart_needed else "0"


def _snaps(m: MachineCompliance) -> str:
    return f"{len(m.snapshot_ages_s)} (oldest {human_age(m.oldest_snapshot_s)})" if m.snapshot_ages_s else "0"


# ------------------------------------------------------------------------------------ html
def to_html(report: ComplianceReport) -> str:
    template = Template(
        resources.files("orchestrator.reporting.templates").joinpath("report.html").read_text("utf-8")
    )
    t = report.totals
    machines, machines_note = sections.shown_machines(report)
    return template.substitute(
        title=html.escape(TITLE),
        generated_at=html.escape(_day(report.generated_at)),
        machine_count=t.machines,
        group_count=len(report.groups),
        host_count=len(report.hosts),
        cards="\n".join(_cards(t, report)),
        trend=sections.trend_section(report),
        group_rows="\n".join(_group_row(g) for g in (*report.groups, t)),
        host_rows=sections.host_rows(report),
        timelines=sections.timelines_section(report),
        cves=cves.html_section(report.cves),
        machines_note=machines_note,
        machine_rows="\n".join(_machine_row(m, report.generated_at) for m in machines)
        or '<tr><td colspan="19">No machine is on record yet: run patchwave once.</td></tr>',
        notes=sections.notes(report),
    )


def _day(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC") if iso else "-"


def _cards(t: GroupCompliance, report: ComplianceReport) -> list[str]:
    in_maintenance = sum(1 for h in report.hosts if h.in_maintenance)
    cards = [
        ("machines", "Machines", t.machines, ""),
        ("ok", "OK", t.ok, "good" if t.ok == t.machines and t.machines else ""),
        ("noncompliant", "Non-compliant", t.noncompliant, "bad" if t.noncompliant else "good"),
        ("attention", "Need attention", t.attention, "bad" if t.attention else "good"),
        ("unknown", "Never assessed", t.unknown, "warn" if t.unknown else ""),
        ("security", "Pending security updates", t.security, "bad" if t.security else "good"),
        ("critical", "Critical", t.pending["critical"], "bad" if t.pending["critical"] else "good"),
        ("reboot", "Pending reboots", t.reboot_required, "warn" if t.reboot_required else "good"),
        (
            "old-libraries",
            "Services running old libraries",
            t.restart_needed,
            "warn" if t.restart_needed else "good",
        ),
        ("failed", "Last patch failed / rolled back", t.failed, "bad" if t.failed else "good"),
        ("oldest-snapshot", "Oldest snapshot", human_age(t.oldest_snapshot_s), "warn" if t.snapshots else ""),
        (
            "hosts-in-maintenance",
            "Hosts in maintenance",
            in_maintenance,
            "warn" if in_maintenance else "good",
        ),
    ]
    return [
        f'<div class="card {tone}" data-figure="{key}"><span class="value">{html.escape(str(value))}</span>'
        f'<span class="label">{html.escape(label)}</span></div>'
        for key, label, value, tone in cards
    ]


def _num(field: str, value: int, tone: str = "") -> str:
    css = "num zero" if not value else f"num {tone}".strip()
    return f'<td class="{css}" data-field="{field}">{value}</td>'


def _severity_cells(pending: Mapping[str, int], known: bool = True) -> str:
    cells = []
    for s in SEVERITIES:
        tone = {"critical": "crit", "important": "imp"}.get(s, "")
        if known:
            cells.append(_num(s, int(pending.get(s, 0)), tone))
        else:
            cells.append(f'<td class="num zero" data-field="{s}">?</td>')
    return "".join(cells)


def _group_row(g: GroupCompliance) -> str:
    e = html.escape
    name = (
        "<strong>All groups</strong>" if g.group == "all" else e(g.group if g.group != "-" else "(no group)")
    )
    return (
        f'<tr data-group="{e(g.group)}"><td>{name}</td>{_num("machines", g.machines)}{_num("ok", g.ok)}'
        f"{_num('attention', g.attention, 'crit')}{_num('noncompliant', g.noncompliant, 'crit')}"
        f"{_num('unknown', g.unknown)}{_severity_cells(g.pending)}"
        f"{_num('pending', g.pending_total)}{_num('reboot', g.reboot_required)}{_num('failed', g.failed, 'crit')}"
        f"{_num('never-patched', g.never_patched)}<td>{e(_day(g.least_recently_patched))}</td>"
        f"{_num('snapshots', g.snapshots)}<td>{e(human_age(g.oldest_snapshot_s))}</td></tr>"
    )


_STATUS_TEXT = {"unknown": "never assessed"}
_COMPLIANCE_TEXT = {"compliant": "compliant", "noncompliant": "non-compliant", "unassessed": "-"}


def _updater(m: MachineCompliance) -> str:
    """Its automatic updater as last checked ("DRIFT" when it did not match the policy), or "-"."""
    if not m.updater:
        return "-"
    return m.updater if m.updater_ok is not False else f"DRIFT: {m.updater}"


def _backup(m: MachineCompliance, now: str) -> str:
    """The last verified backup's age, or why there is none ("MISSING (critical)" flags it)."""
    if m.backup_verified_at:
        return since(m.backup_verified_at, now) + (" (critical)" if m.critical else "")
    return "MISSING (critical)" if m.critical else "none"


def _machine_row(m: MachineCompliance, now: str) -> str:
    e = html.escape
    known = bool(m.assessed_at)
    result = (m.last_result or "never run").replace("_", " ")
    error = f'<div class="sub">{e(m.last_error[:160])}</div>' if m.last_error else ""
    reboot = (
        '<td data-field="reboot">?</td>'
        if m.reboot_required is None
        else (
            '<td class="yes" data-field="reboot">yes</td>'
            if m.reboot_required
            else '<td data-field="reboot">no</td>'
        )
    )
    snaps = (f"{len(m.snapshot_ages_s)} &middot; oldest {e(human_age(m.oldest_snapshot_s))}"
             if m.snapshot_ages_s else "none")  # fmt: skip
    return (
        f'<tr data-machine="{e(m.site)}/{e(m.name)}"><td><span class="badge {m.status}" data-field="status">'
        f'{_STATUS_TEXT.get(m.status, m.status)}</span></td><td class="compliance-{m.compliance}" '
        f'data-field="compliance">{_COMPLIANCE_TEXT.get(m.compliance, m.compliance)}</td><td><strong>{e(m.name)}'
        f'</strong><div class="sub">{e(m.site)} &middot; {e(m.vm_id)}{" &middot; " + e(m.state) if m.state else ""}</div></td><td>{e(m.group)}</td><td>{e(m.os or "-")}<div class="sub">{e(m.kernel)}</div></td>'
        f'<td data-field="last-patched">{e(_day(m.last_patched) if m.last_patched else "never")}'
        f'<div class="sub">{e(since(m.last_patched, now)) if m.last_patched else ""}</div></td>'
        f'<td class="result-{e(m.last_result)}" data-field="last-result">{e(result)}{error}</td>'
        f"{_severity_cells(m.pending, known)}"
        + (_num("pending", m.pending_total) if known else '<td class="num zero" data-field="pending">?</td>')
        + f'{_num("cves", m.cves)}{reboot}{_stale_cell(m)}<td data-field="snapshots">{snaps}</td>'
        + ('<td class="crit" data-field="backup">' if m.backup_missing else '<td data-field="backup">')
        + f"{e(_backup(m, now))}</td>"
        + ('<td class="crit" data-field="updater">' if m.updater_ok is False else '<td data-field="updater">')
        + f"{e(_updater(m))}</td>"
        f'<td class="sub">{e(since(m.assessed_at, now)) if known else "never"}</td></tr>'
    )


def _stale_cell(m: MachineCompliance) -> str:
    """Services running old libraries (the latest assessment): their names, "none", "?" never assessed."""
    if not m.assessed_at:
        return '<td data-field="old-libraries">?</td>'
    if not m.restart_needed:
        return '<td data-field="old-libraries">none</td>'
    names = ", ".join(m.restart_needed[:5]) + (
        f" and {len(m.restart_needed) - 5} more" if len(m.restart_needed) > 5 else ""
    )
    return f'<td class="yes" data-field="old-libraries">{html.escape(names)}</td>'
