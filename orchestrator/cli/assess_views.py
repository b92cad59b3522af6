"""How ``assess``, ``feeds list`` and the exposure part of ``plan`` look: rich tables and CSV.

No logic, no I/O but output (JSON is :func:`orchestrator.assessment.report.to_json`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from orchestrator.assessment.cve_run import CveRunView
from orchestrator.assessment.exposure import VmExposure
from orchestrator.assessment.feeds import FeedStatus
from orchestrator.assessment.report import AssessReport, CveRow, VmRow

SHOWN_NAMES = 5
SHOWN_CVES = 6
CVE_COLUMNS = (
    "cve",
    "severity",
    "cvss",
    "kev",
    "machines",
    "package",
    "fixed version",
    "fix available",
    "since",
)
VM_COLUMNS = (
    "vm",
    "os",
    "packages",
    "pending",
    "findings",
    "kev",
    "critical",
    "important",
    "risk",
    "assessed",
)


def _names(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return f"{total}: {shown}" + (", ..." if total > SHOWN_NAMES else "")


def cve_cells(row: CveRow) -> tuple[str, ...]:
    s = row.summary
    return (
        s.cve,
        s.severity,
        f"{s.cvss:.1f}" if s.cvss is not None else "",
        ("yes" + (f" (due {s.kev_due})" if s.kev_due else "")) if s.kev else "",
        _names(row.machines, s.machines),
        s.package + (f" (+{s.packages - 1})" if s.packages > 1 else ""),
        s.fixed_version or (f"{s.fixed_versions} versions" if s.fixed_versions > 1 else "none yet"),
        f"{s.fixable}/{s.machines}",
        f"{s.days_since_release}d" if s.days_since_release is not None else "",
    )


def vm_cells(row: VmRow) -> tuple[str, ...]:
    if not row.assessed:
        return (row.vm, "", "", "", "", "", "", "", "", row.note)
    sev = row.severities
    return (row.vm, row.os, str(row.packages), str(row.pending), str(row.findings), str(row.kev),
            str(sev.get("critical", 0)), str(sev.get("important", 0)), row.risk.describe(), row.taken_at)  # fmt: skip


def report_table(report: AssessReport, view: str) -> Table:
    scope = "latest assessments" if report.scope == "latest" else f"round {report.scope}"
    if view == "vm":
        table = Table(title=f"vulnerabilities per VM ({scope})")
        rows = [vm_cells(r) for r in report.vms]
        columns: Sequence[str] = VM_COLUMNS
    else:
        table = Table(title=f"vulnerabilities per CVE ({scope}): {len(report.cves)} CVE(s)")
        rows = [cve_cells(r) for r in report.cves]
        columns = CVE_COLUMNS
    for col in columns:
        table.add_column(col)
    for cells in rows:
        table.add_row(*(escape(c) for c in cells))
    return table


def report_csv(report: AssessReport, view: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if view == "vm":
        writer.writerow(VM_COLUMNS)
        writer.writerows(vm_cells(r) for r in report.vms)
    else:
        writer.writerow((*CVE_COLUMNS, "machine names"))
        writer.writerows((*cve_cells(r), ";".join(r.machines)) for r in report.cves)
    return out.getvalue()


def summary_lines(report: AssessReport) -> list[str]:
    """One-line facts under the table: what was not assessed, the feeds' versions, notes."""
    lines = [f"not assessed: {r.vm}: {r.note}" for r in report.vms if not r.assessed]
    if not report.feeds:
        lines.append("no feed is loaded: only dnf/zypper advisories were matched (`patchwave feeds load`)")
    lines += [f"note: {n}" for n in report.notes]
    return lines


def _age(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
    return f"{seconds // 3600}h{(seconds % 3600) // 60}m"


def feeds_table(found: Sequence[FeedStatus]) -> Table:
    table = Table(title="vulnerability feeds (cached in the fact store)")
    for col in ("kind", "source", "version", "records", "loaded at", "age", "configured"):
        table.add_column(col)
    for f in found:
        age = _age(f.age_s) + (" [bold red]STALE[/]" if f.stale else "")
        table.add_row(f.info.kind, escape(f.info.source), escape(f.info.version or "-"), str(f.info.count),
                      f.info.loaded_at, age, "yes" if f.configured else "")  # fmt: skip
    return table


def exposure_table(found: Sequence[VmExposure]) -> Table:
    table = Table(title="vulnerabilities the run would fix (latest assessments, baselines)")
    for col in ("vm", "risk", "baseline", "approved", "fixes", "assessed"):
        table.add_column(col)
    for e in found:
        if not e.assessed_at:
            table.add_row(escape(e.vm), "", "", "", "", "not assessed (patchwave assess)")
            continue
        fixes = ", ".join(e.fixes[:SHOWN_CVES]) + (
            f" (+{len(e.fixes) - SHOWN_CVES})" if len(e.fixes) > SHOWN_CVES else ""
        )
        table.add_row(escape(e.vm), e.risk.describe(), escape(e.baseline or "[policy]"),
                      f"{len(e.approved)} of {e.pending}", fixes or "-", e.assessed_at)  # fmt: skip
    return table


def cve_run_tables(view: CveRunView) -> list[Table]:
    """``status RUN`` of a ``run --cve`` run: per CVE, then the proofs of the page."""
    override = " — maintenance windows overridden (--now)" if view.run.now_override else ""
    per_cve = Table(title=f"patch by CVE: {', '.join(view.run.cves)}{override}", title_justify="left")
    for col in (
        "cve",
        "severity",
        "since",
        "affected",
        "fixed-active",
        "fixed-pending-restart",
        "still-open",
        "unproven",
    ):
        per_cve.add_column(col)
    for s in view.cves:
        per_cve.add_row(escape(s.cve), s.severity + (" KEV" if s.kev else ""), s.published or "-", str(s.affected),
                        *(str(s.verdicts[v]) for v in ("fixed-active", "fixed-pending-restart", "still-open")),
                        str(s.unproven))  # fmt: skip
    proofs = Table(title="proof per VM", title_justify="left")
    for col in ("vm", "cve", "package", "verdict", "installed", "fixed version", "evidence"):
        proofs.add_column(col)
    for p in view.proofs:
        proofs.add_row(escape(f"{p.vm.site}/{p.vm.name}"), escape(p.cve), escape(p.package), p.verdict,
                       escape(p.installed or "-"), escape(p.fixed_version), escape(p.evidence))  # fmt: skip
    return [per_cve, proofs]
