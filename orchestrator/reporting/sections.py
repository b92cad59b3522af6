"""The HTML report's fleet-wide sections: the compliance trend, the hypervisor hosts, the latest runs'
timelines, and the notes (inventories, departed machines, the non-compliance rule). Every value is
escaped; figures carry ``data-*`` attributes like the rest of the page."""

from __future__ import annotations

import html

from orchestrator.reporting import charts
from orchestrator.reporting.compliance import ComplianceReport, MachineCompliance, human_age, since
from orchestrator.reporting.hosts import HostCompliance

#: Machine rows drawn in the HTML page (json/csv list every machine); non-compliant ones first.
MAX_HTML_MACHINES = 2000


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _day(iso: str) -> str:
    return iso.replace("T", " ").split(".")[0].replace("+00:00", "") + " UTC" if iso else "-"


def trend_section(report: ComplianceReport) -> str:
    if not report.trend:
        return '<p class="note">No fleet machine is on record yet: no trend to draw.</p>'
    return (
        f'<figure class="chart-box">{charts.trend_machines(report.trend)}</figure>'
        f'<figure class="chart-box">{charts.trend_updates(report.trend)}</figure>'
        '<p class="note">Each day as the fleet stood at its end (UTC): today&rsquo;s fleet, from the assessment '
        "history. Hover a bar or a point for its figures.</p>"
    )


def timelines_section(report: ComplianceReport) -> str:
    if not report.timelines:
        return '<p class="note">No run with VM outcomes is on record yet.</p>'
    parts = []
    for index, run in enumerate(report.timelines):
        shown = len(run.rows)
        capped = (f" &middot; showing {shown} of {run.vms} VMs: rolled back and failed first "
                  f"(<code>patchwave status {_e(run.run_id)}</code> lists them all)") if run.vms > shown else (
                  f" &middot; {run.vms} VM(s)")  # fmt: skip
        parts.append(
            f'<figure class="chart-box" data-run="{_e(run.run_id)}"><figcaption><strong>{_e(run.run_id)}</strong>'
            f" &middot; {_e(run.status)} &middot; started {_e(_day(run.created_at))}{capped}</figcaption>"
            f"{charts.run_timeline(run, index)}{_gates(run.gates)}</figure>"
        )
    return "\n".join(parts)


def _gates(lines: tuple[str, ...]) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f'<ul class="note" data-field="gates">{items}</ul>' if lines else ""


def host_rows(report: ComplianceReport) -> str:
    if not report.hosts:
        return '<tr><td colspan="10">No hypervisor host is on record yet: run <code>patchwave inventory</code>.</td></tr>'
    return "\n".join(_host_row(h, report.generated_at) for h in report.hosts)


def _host_row(h: HostCompliance, now: str) -> str:
    known = h.assessed_at != ""
    pending = f"{h.pending}" + (f" ({h.security} security)" if h.security else "") if known else "?"
    reboot = "?" if h.reboot_required is None else ("yes" if h.reboot_required else "no")
    result = (h.last_result or "never run").replace("_", " ")
    maintenance = f'yes<div class="sub">left by {_e(h.maintenance_run)}</div>' if h.maintenance_run else (
        "yes" if h.in_maintenance else "no")  # fmt: skip
    note = h.last_error or h.detail
    return (
        f'<tr data-host="{_e(h.site)}/{_e(h.name)}"><td><span class="badge {h.status}" data-field="status">'
        f'{_e(h.status)}</span></td><td><strong>{_e(h.name)}</strong><div class="sub">{_e(h.site)} &middot; '
        f'{_e(h.host_id)}</div></td><td data-field="state">{_e(h.state or "not inventoried")}</td>'
        f'<td data-field="build">{_e(h.version or "-")}<div class="sub">{_e(h.build)}</div></td>'
        f'<td data-field="last-patched">{_e(_day(h.last_patched) if h.last_patched else "never")}<div class="sub">'
        f"{_e(since(h.last_patched, now)) if h.last_patched else ''}</div></td>"
        f'<td class="result-{_e(h.last_result)}" data-field="last-result">{_e(result)}'
        f"{f'<div class=sub>{_e(note[:160])}</div>' if note else ''}</td>"
        f'<td class="num" data-field="pending">{_e(pending)}</td><td data-field="reboot">{reboot}</td>'
        f'<td data-field="maintenance" class="{"yes" if h.in_maintenance else ""}">{maintenance}</td>'
        f'<td class="sub">{_e(since(h.assessed_at, now)) if known else "never"}</td></tr>'
    )


def shown_machines(report: ComplianceReport) -> tuple[tuple[MachineCompliance, ...], str]:
    """The machine rows of the page (all, or the :data:`MAX_HTML_MACHINES` that need it most) and a note."""
    if len(report.machines) <= MAX_HTML_MACHINES:
        return report.machines, ""
    ranked = sorted(report.machines, key=_need)
    chosen = set(map(id, ranked[:MAX_HTML_MACHINES]))
    rows = tuple(m for m in report.machines if id(m) in chosen)
    note = (f'<p class="note" data-figure="machines-shown">Showing {len(rows)} of {len(report.machines)} machines: '
            "non-compliant and needing attention first. <code>patchwave report --format csv</code> lists them all.</p>")  # fmt: skip
    return rows, note


def _need(m: MachineCompliance) -> int:
    if m.compliance == "noncompliant":
        return 0
    if m.status == "attention":
        return 1
    return 2 if m.compliance == "unassessed" else 3


def notes(report: ComplianceReport) -> str:
    days = report.grace_s // 86400
    grace = f"{days} days" if report.grace_s % 86400 == 0 else human_age(report.grace_s)
    rule = (
        "<p><strong>Non-compliant</strong>: the latest assessment lists a pending critical security update, or any "
        f"pending security update while the machine&rsquo;s last successful patch by patchwave is older than {_e(grace)} "
        "(<code>[compliance] grace</code>) or never happened. Never assessed machines are neither.</p>"
    )
    parts = [rule]
    if report.inventories:
        sites = "; ".join(
            f"{_e(i.site)}: {_e(_day(i.taken_at))} ({i.hosts} hosts, {i.vms} VMs)" for i in report.inventories
        )
        parts.append(f'<p data-figure="inventories">Latest inventory per site &mdash; {sites}.</p>')
    else:
        parts.append("<p>No inventory is on record: the machines are those patchwave touched. "
                     "<code>patchwave inventory</code> (or <code>report --refresh</code>) records the whole fleet.</p>")  # fmt: skip
    if report.departed_count:
        listed = ", ".join(_e(name) for name in report.departed)
        more = (
            f" and {report.departed_count - len(report.departed)} more"
            if report.departed_count > len(report.departed)
            else ""
        )
        parts.append(f'<p data-figure="departed">{report.departed_count} machine(s) on record are no longer in '
                     f"their site&rsquo;s inventory and are not counted: {listed}{more}.</p>")  # fmt: skip
    return "\n".join(parts)
