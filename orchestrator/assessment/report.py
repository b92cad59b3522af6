"""The per-CVE and per-VM views of an assessment, read from the fact store, and their JSON.

Scope: one round (what ``patchwave assess`` just did), or every VM's latest assessment (``--cached``;
optionally only some VMs). The per-CVE view is aggregated in SQL
(:meth:`~orchestrator.facts.vuln_rounds.RoundStore.cve_summary`); each CVE names up to
:data:`MAX_MACHINES` machines. The per-VM view lists every VM of the scope with its counts, risk and
(in JSON) its findings; VMs that could not be assessed carry their note.

:func:`to_json` / :func:`from_json` round-trip: ``from_json(to_json(r)) == r``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import CveSummary, RoundStore
from orchestrator.facts.vulns import FeedInfo, VulnAssessment, VulnStore
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.risk import NO_RISK, VmRisk
from providers.base import VmRef

#: Machines named per CVE (the count is always complete).
MAX_MACHINES = 1000
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CveRow:
    summary: CveSummary
    machines: tuple[str, ...]  # "site/name", at most MAX_MACHINES


@dataclass(frozen=True)
class VmRow:
    vm: str  # "site/name"
    assessed: bool
    note: str = ""
    os: str = ""
    taken_at: str = ""
    packages: int = 0
    pending: int = 0
    findings: int = 0
    kev: int = 0
    severities: Mapping[str, int] = dataclasses.field(default_factory=dict)
    risk: VmRisk = NO_RISK
    cves: tuple[Finding, ...] = ()  # the VM's findings (KEV first, then by severity)


@dataclass(frozen=True)
class AssessReport:
    scope: str  # the round id, or "latest"
    feeds: tuple[FeedInfo, ...]
    cves: tuple[CveRow, ...]
    vms: tuple[VmRow, ...]
    notes: tuple[str, ...] = ()


def round_report(facts: FactStore, round_id: str, *, notes: Sequence[str] = ()) -> AssessReport:
    """The views of one round, the VMs it could not assess included (with the reason)."""
    store = VulnStore(facts)
    rows = [_vm_row(store, a) for a in store.round_assessments(round_id)]
    rows += [VmRow(str(t.vm), False, t.note) for t in RoundStore(facts).failed(round_id)]
    summaries = RoundStore(facts).cve_summary(round_id=round_id)
    cves = tuple(CveRow(s, _machines(facts, s.cve, round_id=round_id)) for s in summaries)
    return AssessReport(
        round_id, tuple(store.feeds()), cves, tuple(sorted(rows, key=lambda r: r.vm)), tuple(notes)
    )


def latest_report(facts: FactStore, *, vms: Sequence[VmRef] | None = None) -> AssessReport:
    """The views of every VM's latest assessment (or of ``vms`` only)."""
    store = VulnStore(facts)
    headers = store.latest_assessments()
    if vms is not None:
        wanted = {(v.site, v.id) for v in vms}
        headers = [a for a in headers if (a.vm.site, a.vm.id) in wanted]
    ids = [a.id for a in headers] if vms is not None else None
    summaries = RoundStore(facts).cve_summary(assessment_ids=ids)
    cves = tuple(CveRow(s, _machines(facts, s.cve, assessment_ids=ids)) for s in summaries)
    rows = tuple(_vm_row(store, a) for a in headers)
    return AssessReport("latest", tuple(store.feeds()), cves, rows)


def _vm_row(store: VulnStore, header: VulnAssessment) -> VmRow:
    full = store.assessment(header.id) or header
    return VmRow(
        vm=str(header.vm), assessed=True, os=header.os, taken_at=header.taken_at, packages=header.packages,
        pending=len(full.pending), findings=header.total, kev=header.kev, severities=dict(header.severities),
        risk=header.risk, cves=full.findings,
    )  # fmt: skip


def _machines(facts: FactStore, cve: str, *, round_id: str = "", assessment_ids: Sequence[int] | None = None) -> tuple[str, ...]:  # fmt: skip
    found = RoundStore(facts).machines_with(
        cve, limit=MAX_MACHINES, round_id=round_id, assessment_ids=assessment_ids
    )
    return tuple(str(vm) for vm in found)


# ------------------------------------------------------------------------------------------ JSON
def to_json(report: AssessReport) -> str:
    body = {"format": FORMAT_VERSION, **dataclasses.asdict(report)}
    return json.dumps(body, indent=2, sort_keys=True)


def from_json(text: str) -> AssessReport:
    """The report :func:`to_json` wrote (ValueError for another document)."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise ValueError(f"not a patchwave assessment report (format {FORMAT_VERSION})")
    return AssessReport(
        scope=data["scope"],
        feeds=tuple(FeedInfo(**f) for f in data["feeds"]),
        cves=tuple(CveRow(CveSummary(**c["summary"]), tuple(c["machines"])) for c in data["cves"]),
        vms=tuple(_vm_from(v) for v in data["vms"]),
        notes=tuple(data["notes"]),
    )


def _vm_from(v: dict[str, Any]) -> VmRow:
    return VmRow(**{**v, "severities": dict(v["severities"]), "risk": VmRisk(**v["risk"]),
                    "cves": tuple(_finding(f) for f in v["cves"])})  # fmt: skip


def _finding(f: dict[str, Any]) -> Finding:
    return Finding(**{**f, "sources": tuple(f["sources"])})
