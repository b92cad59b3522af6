"""Render a :class:`~orchestrator.report.ComplianceReport`: table (rich), json, csv, html.

The HTML is one self-contained file (inline CSS, no scripts, no external assets) from
``orchestrator/templates/report.html``; every value is escaped. Figures carry ``data-figure`` /
``data-field`` attributes so tools (and the tests) can read them from the DOM.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict
from importlib import resources
from string import Template

from orchestrator.fact_records import SEVERITIES
from orchestrator.report import ComplianceReport, GroupCompliance, MachineCompliance, human_age, since

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
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


CSV_COLUMNS = ("site", "name", "vm_id", "group", "status", "os", "kernel", "last_patched", "last_result",
               "last_run", *(f"pending_{s}" for s in SEVERITIES), "pending_total", "security", "cves",
               "reboot_required", "snapshots", "oldest_snapshot_s", "assessed_at")  # fmt: skip


def to_csv(report: ComplianceReport) -> str:
    """One row per machine (groups are a GROUP BY away)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in report.machines:
        reboot = "" if m.reboot_required is None else str(m.reboot_required).lower()
        writer.writerow([m.site, m.name, m.vm_id, m.group, m.status, m.os, m.kernel, m.last_patched, m.last_result,
                         m.last_run, *(m.pending.get(s, 0) for s in SEVERITIES), m.pending_total, m.security,
                         m.cves, reboot, len(m.snapshot_ages_s), m.oldest_snapshot_s or "", m.assessed_at])  # fmt: skip
    return out.getvalue()


# ------------------------------------------------------------------------------------ table
def to_table(report: ComplianceReport, *, width: int = 160) -> str:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    groups = Table(title=f"{TITLE} — groups ({report.generated_at})", title_justify="left")
    for col in ("group", "machines", "ok", "attention", "unknown", "critical", "important", "pending", "reboot",
                "failed", "never patched", "oldest snapshot"):
        groups.add_column(col, justify="left" if col == "group" else "right")
    for g in (*report.groups, report.totals):
        groups.add_row(escape(g.group), *map(str, (g.machines, g.ok, g.attention, g.unknown, g.pending["critical"],
                       g.pending["important"], g.pending_total, g.reboot_required, g.failed, g.never_patched)),
                       human_age(g.oldest_snapshot_s))  # fmt: skip
    machines = Table(title="machines", title_justify="left")
    for col in ("status", "machine", "group", "last patched", "last result", "crit", "imp", "mod", "low", "unrated",
                "other", "reboot", "snapshots"):
        machines.add_column(col)
    for m in report.machines:
        machines.add_row(m.status, escape(f"{m.site}/{m.name}"), escape(m.group), since(m.last_patched, report.generated_at),
                         m.last_result or "-", *(_count(m, s) for s in SEVERITIES), _reboot(m), _snaps(m))  # fmt: skip
    console.print(groups)
    console.print(machines)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _count(m: MachineCompliance, severity: str) -> str:
    return str(m.pending.get(severity, 0)) if m.assessed_at else "?"


def _reboot(m: MachineCompliance) -> str:
    return "?" if m.reboot_required is None else ("yes" if m.reboot_required else "no")


def _snaps(m: MachineCompliance) -> str:
    return f"{len(m.snapshot_ages_s)} (oldest {human_age(m.oldest_snapshot_s)})" if m.snapshot_ages_s else "0"


# ------------------------------------------------------------------------------------ html
def to_html(report: ComplianceReport) -> str:
    template = Template(resources.files("orchestrator.templates").joinpath("report.html").read_text("utf-8"))
    t = report.totals
    return template.substitute(
        title=html.escape(TITLE),
        generated_at=html.escape(_day(report.generated_at)),
        machine_count=t.machines,
        group_count=len(report.groups),
        cards="\n".join(_cards(t)),
        group_rows="\n".join(_group_row(g) for g in (*report.groups, t)),
        machine_rows="\n".join(_machine_row(m, report.generated_at) for m in report.machines)
        or '<tr><td colspan="17">No machine is on record yet: run patchwave once.</td></tr>',
    )


def _day(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC") if iso else "-"


def _cards(t: GroupCompliance) -> list[str]:
    cards = [
        ("machines", "Machines", t.machines, ""),
        ("ok", "Compliant", t.ok, "good" if t.ok == t.machines and t.machines else ""),
        ("attention", "Need attention", t.attention, "bad" if t.attention else "good"),
        ("unknown", "Never assessed", t.unknown, "warn" if t.unknown else ""),
        ("security", "Pending security updates", t.security, "bad" if t.security else "good"),
        ("critical", "Critical", t.pending["critical"], "bad" if t.pending["critical"] else "good"),
        ("reboot", "Pending reboots", t.reboot_required, "warn" if t.reboot_required else "good"),
        ("failed", "Last patch failed / rolled back", t.failed, "bad" if t.failed else "good"),
        ("oldest-snapshot", "Oldest snapshot", human_age(t.oldest_snapshot_s), "warn" if t.snapshots else ""),
    ]
    return [
        f'<div class="card {tone}" data-figure="{key}"><span class="value">{html.escape(str(value))}</span>'
        f'<span class="label">{html.escape(label)}</span></div>'
        for key, label, value, tone in cards
    ]


def _num(field: str, value: int, tone: str = "") -> str:
    css = "num zero" if not value else f"num {tone}".strip()
    return f'<td class="{css}" data-field="{field}">{value}</td>'


def _severity_cells(pending: dict[str, int] | object, known: bool = True) -> str:
    cells = []
    for s in SEVERITIES:
        tone = {"critical": "crit", "important": "imp"}.get(s, "")
        if known:
            cells.append(_num(s, int(pending.get(s, 0)), tone))  # type: ignore[union-attr]
        else:
            cells.append(f'<td class="num zero" data-field="{s}">?</td>')
    return "".join(cells)


def _group_row(g: GroupCompliance) -> str:
    e = html.escape
    name = "<strong>All groups</strong>" if g.group == "all" else e(g.group if g.group != "-" else "(no group)")
    return (
        f'<tr data-group="{e(g.group)}"><td>{name}</td>{_num("machines", g.machines)}{_num("ok", g.ok)}'
        f'{_num("attention", g.attention, "crit")}{_num("unknown", g.unknown)}{_severity_cells(g.pending)}'
        f'{_num("pending", g.pending_total)}{_num("reboot", g.reboot_required)}{_num("failed", g.failed, "crit")}'
        f'{_num("never-patched", g.never_patched)}<td>{e(_day(g.least_recently_patched))}</td>'
        f'{_num("snapshots", g.snapshots)}<td>{e(human_age(g.oldest_snapshot_s))}</td></tr>'
    )


def _machine_row(m: MachineCompliance, now: str) -> str:
    e = html.escape
    known = bool(m.assessed_at)
    result = (m.last_result or "never run").replace("_", " ")
    error = f'<div class="sub">{e(m.last_error[:160])}</div>' if m.last_error else ""
    reboot = '<td data-field="reboot">?</td>' if m.reboot_required is None else (
        '<td class="yes" data-field="reboot">yes</td>' if m.reboot_required else '<td data-field="reboot">no</td>')
    snaps = (f"{len(m.snapshot_ages_s)} &middot; oldest {e(human_age(m.oldest_snapshot_s))}"
             if m.snapshot_ages_s else "none")  # fmt: skip
    return (
        f'<tr data-machine="{e(m.site)}/{e(m.name)}"><td><span class="badge {m.status}" data-field="status">'
        f'{m.status}</span></td><td><strong>{e(m.name)}</strong><div class="sub">{e(m.site)} &middot; '
        f'{e(m.vm_id)}</div></td><td>{e(m.group)}</td><td>{e(m.os or "-")}<div class="sub">{e(m.kernel)}</div></td>'
        f'<td data-field="last-patched">{e(_day(m.last_patched) if m.last_patched else "never")}'
        f'<div class="sub">{e(since(m.last_patched, now)) if m.last_patched else ""}</div></td>'
        f'<td class="result-{e(m.last_result)}" data-field="last-result">{e(result)}{error}</td>'
        f'{_severity_cells(m.pending, known)}'
        + (_num("pending", m.pending_total) if known else '<td class="num zero" data-field="pending">?</td>')
        + f'{_num("cves", m.cves)}{reboot}<td data-field="snapshots">{snaps}</td>'
        f'<td class="sub">{e(since(m.assessed_at, now)) if known else "never"}</td></tr>'
    )
