"""The report's per-CVE section: the CVEs of the latest ``run --cve`` runs — machines affected, since
when (the advisory's date and the first assessment that found it), and where each is fixed (active or
pending a restart) or still open, from the proofs on record (:mod:`orchestrator.facts.cves`).

Bounded: the latest :data:`RUNS` CVE runs among the runs the report scans, at most :data:`NAMES`
machine names per verdict (the counts cover every machine; ``patchwave status RUN`` lists them all).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.facts.cves import FIXED_ACTIVE, FIXED_PENDING_RESTART, STILL_OPEN, CveStore
from orchestrator.facts.store import FactStore

#: CVE runs shown, and machine names listed per verdict.
RUNS = 5
NAMES = 20


@dataclass(frozen=True)
class CveSection:
    run_id: str
    cve: str
    severity: str
    kev: bool
    published: str  # the advisory's date ("" = unknown)
    first_assessed: str  # the earliest assessment that found it on one of the run's machines
    affected: int  # machines the run targeted for it
    fixed_active: int
    pending_restart: int
    still_open: int
    unproven: int
    fixed_on: tuple[str, ...] = ()  # site/name (active first), at most NAMES
    pending_on: tuple[str, ...] = ()
    open_on: tuple[str, ...] = ()
    now_override: bool = False  # the run overrode the maintenance windows (--now)


def cve_sections(
    facts: FactStore, run_ids: Sequence[str], *, runs: int = RUNS, names: int = NAMES
) -> tuple[CveSection, ...]:
    """One section per (CVE run, CVE), newest run first, among ``run_ids`` (newest first)."""
    store = CveStore(facts)
    out: list[CveSection] = []
    shown = 0
    for run_id in run_ids:
        run = store.run(run_id)
        if run is None:
            continue
        shown += 1
        where = _where(store, run_id, names)
        for s in store.summary(run_id, sample=0):
            on = where.get(s.cve, {})
            out.append(CveSection(
                run_id=run_id, cve=s.cve, severity=s.severity, kev=s.kev, published=s.published,
                first_assessed=s.first_assessed, affected=s.affected, fixed_active=s.verdicts[FIXED_ACTIVE],
                pending_restart=s.verdicts[FIXED_PENDING_RESTART], still_open=s.verdicts[STILL_OPEN],
                unproven=s.unproven, fixed_on=tuple(on.get(FIXED_ACTIVE, ())),
                pending_on=tuple(on.get(FIXED_PENDING_RESTART, ())), open_on=tuple(on.get(STILL_OPEN, ())),
                now_override=run.now_override,
            ))  # fmt: skip
        if shown >= runs:
            break
    return tuple(out)


def _where(store: CveStore, run_id: str, names: int) -> dict[str, dict[str, list[str]]]:
    """cve -> verdict -> machine names (worst package per machine), at most ``names`` each."""
    worst: dict[tuple[str, str], tuple[int, str]] = {}
    rank = {FIXED_ACTIVE: 0, FIXED_PENDING_RESTART: 1, STILL_OPEN: 2}
    offset = 0
    while page := store.proofs(run_id, offset=offset, limit=500):
        for p in page:
            key, name = (p.cve, p.step_id), f"{p.vm.site}/{p.vm.name}"
            if rank.get(p.verdict, 2) >= worst.get(key, (-1, ""))[0]:
                worst[key] = (rank.get(p.verdict, 2), name)
        offset += len(page)
    out: dict[str, dict[str, list[str]]] = {}
    verdict_of = {v: k for k, v in rank.items()}
    for (cve, _), (r, name) in sorted(worst.items(), key=lambda kv: kv[1][1]):
        listed = out.setdefault(cve, {}).setdefault(verdict_of[r], [])
        if len(listed) < names:
            listed.append(name)
    return out


def table_rows(sections: Sequence[CveSection]) -> list[tuple[str, ...]]:
    """Rows of the text table: run, CVE, severity/KEV, since, affected, fixed-active / pending / open."""
    return [
        (s.run_id + (" (--now)" if s.now_override else ""), s.cve, s.severity + (" KEV" if s.kev else ""),
         s.published or "-", str(s.affected), _listed(s.fixed_active, s.fixed_on), _listed(s.pending_restart, s.pending_on),
         _listed(s.still_open, s.open_on), str(s.unproven))
        for s in sections
    ]  # fmt: skip


def html_section(sections: Sequence[CveSection]) -> str:
    if not sections:
        return '<p class="note">No <code>patchwave run --cve</code> is on record yet.</p>'
    head = (
        '<thead><tr><th>Run</th><th>CVE</th><th>Severity</th><th>Since</th><th class="num">Affected</th>'
        '<th>Fixed (active)</th><th>Fixed, pending restart</th><th>Still open</th><th class="num">Unproven</th>'
        "</tr></thead>"
    )
    rows = "\n".join(
        f'<tr data-cve="{_e(s.cve)}" data-run="{_e(s.run_id)}"><td>{_e(s.run_id)}{" (--now)" if s.now_override else ""}'
        f"</td><td>{_e(s.cve)}</td><td>{_e(s.severity)}{' KEV' if s.kev else ''}</td><td>{_e(s.published or '-')}</td>"
        f'<td class="num" data-field="affected">{s.affected}</td>'
        f'<td data-field="fixed-active">{_e(_listed(s.fixed_active, s.fixed_on))}</td>'
        f'<td data-field="fixed-pending-restart">{_e(_listed(s.pending_restart, s.pending_on))}</td>'
        f'<td data-field="still-open">{_e(_listed(s.still_open, s.open_on))}</td>'
        f'<td class="num" data-field="unproven">{s.unproven}</td></tr>'
        for s in sections
    )  # fmt: skip
    return f'<div class="table-wrap"><table id="cves">{head}<tbody>\n{rows}\n</tbody></table></div>'


def _listed(count: int, names: Sequence[str]) -> str:
    if not count:
        return "0"
    more = f", +{count - len(names)} more" if count > len(names) else ""
    return f"{count}: {', '.join(names)}{more}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
