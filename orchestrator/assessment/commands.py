"""What ``patchwave assess``, ``patchwave feeds load|list`` and the exposure part of ``plan`` do, as
library calls (the CLI parses and renders; everything here is callable from Python).

They open the fact store (and, to scan, the providers) in this process, without Temporal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from orchestrator.assessment import feeds
from orchestrator.assessment.cve_run import CveRunView, run_view
from orchestrator.assessment.exposure import VmExposure, plan_exposure
from orchestrator.assessment.fleet import assess_fleet
from orchestrator.assessment.report import AssessReport, latest_report, round_report
from orchestrator.assessment.vm import VmResult
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.facts.store import FactStore, open_store
from orchestrator.facts.vulns import FeedInfo
from orchestrator.model import Plan
from orchestrator.planning.selection import select_targets
from orchestrator.vulns.loading import Fetch, fetch_https


@contextmanager
def _store(settings: Settings) -> Iterator[FactStore]:
    facts = open_store(settings)
    try:
        yield facts
    finally:
        facts.close()


def assess(settings: Settings, *, selection: Sequence[str] = (), refresh: bool = False, requested_by: str = "",
           on_result: Callable[[VmResult], None] | None = None) -> AssessReport:  # fmt: skip
    """Scan the selected (else ``[targets]``) VMs read-only, record the round, and report it."""
    with _store(settings) as facts:
        ctx = Context(settings, facts)
        try:
            done = assess_fleet(ctx, selection=selection, refresh=refresh, requested_by=requested_by,
                                on_result=on_result)  # fmt: skip
        finally:
            ctx.close()
        return round_report(facts, done.round_id, notes=done.notes)


def cached(settings: Settings, *, selection: Sequence[str] = ()) -> AssessReport:
    """The latest assessment of every VM on record, or of the selected VMs (discovered to resolve the
    names); nothing is scanned."""
    with _store(settings) as facts:
        if not selection:
            return latest_report(facts)
        ctx = Context(settings, facts, record_inventory=False)
        try:
            chosen = select_targets(ctx.discover(), settings, selection)
        finally:
            ctx.close()
        return latest_report(facts, vms=[vm.ref for vm in chosen.vms])


def load_feeds(settings: Settings, sources: Sequence[str], *, fetch: Fetch = fetch_https,
               on_loaded: Callable[[FeedInfo], None] | None = None) -> list[FeedInfo]:  # fmt: skip
    """Load ``sources`` (none: ``[assess] feeds``) into the cache; a bad source is a FeedError."""
    with _store(settings) as facts:
        return feeds.load_into(facts, list(sources) or list(settings.assess.feeds), releases=settings.assess.releases,
                               fetch=fetch, on_loaded=on_loaded)  # fmt: skip


def feed_status(settings: Settings, now: datetime | None = None) -> list[feeds.FeedStatus]:
    with _store(settings) as facts:
        return feeds.status(facts, settings, now or datetime.now(UTC))


def exposure(settings: Settings, plan: Plan, now: datetime | None = None) -> tuple[VmExposure, ...]:
    """Per planned VM: risk, the approved set of its baseline, the CVEs that set fixes."""
    with _store(settings) as facts:
        return plan_exposure(facts, settings, plan, (now or datetime.now(UTC)).date())


def cve_run(settings: Settings, run_id: str, *, page: int = 1) -> CveRunView | None:
    """``status RUN`` of a ``run --cve`` run: its CVEs, their verdicts and a page of proofs (else None)."""
    if not settings.state.facts_path.exists():
        return None
    with _store(settings) as facts:
        return run_view(facts, run_id, page=page)
