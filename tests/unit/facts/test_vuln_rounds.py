"""Fleet assessments on record (migration 10): rounds and their targets, alerts once per CVE, the
per-CVE view in SQL, candidates' first sighting, details pruned per VM, risks for the planner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.facts.reader import FactReader
from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import RoundStore
from orchestrator.facts.vulns import KEEP_DETAILED, KEEP_HEADERS, VulnStore
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.risk import VmRisk
from providers.base import VmRef
from tests.support.clock import FakeClock

WEB, DB, APP = VmRef("lab", "uuid-1", "web-1"), VmRef("lab", "uuid-2", "db-1"), VmRef("dr", "uuid-3", "app-1")
DEMO = PendingUpdate("demo-app", "1.0", "1.1", security=False)
SSL = PendingUpdate("libssl3", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", security=True, cves=("CVE-2026-0001",))


def finding(cve: str, package: str, *, severity: str = "important", kev: bool = False, fixed: str = "1.1",
            fix: bool = True, score: float | None = 7.5) -> Finding:  # fmt: skip
    return Finding(cve=cve, package=package, installed="1.0", fixed_version=fixed, severity=severity,
                   cvss_score=score, kev=kev, kev_due="2026-12-11" if kev else "", sources=("PW-1",),
                   published="2026-11-20", days_since_release=14, fix_available=fix)  # fmt: skip


KEV = finding("CVE-2099-0001", "demo-app", severity="critical", kev=True, score=9.8)
SSL_BUG = finding("CVE-2026-0001", "libssl3", fixed="3.0.17-1~deb12u1", severity="moderate", score=None)


@pytest.fixture
def facts(store_at) -> Iterator[FactStore]:
    store = FactStore(store_at(), clock=FakeClock(datetime(2026, 12, 4, 12, 0, tzinfo=UTC)))
    yield store
    store.close()


def record(
    facts: FactStore, vm: VmRef, found: tuple[Finding, ...], round_id: str = "r1", **kw: object
) -> int:
    return VulnStore(facts).record_assessment(
        vm, taken_at="2026-12-04T12:00:00+00:00", os="Debian GNU/Linux 12 (bookworm)", findings=found,
        feeds={"osv": "v1"}, round_id=round_id, family="debian", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_round_is_recorded_once_and_its_targets_are_taken_by_position(facts: FactStore) -> None:
    rounds = RoundStore(facts)
    first = rounds.start("r1", requested_by="schedule:patchwave-assess")
    assert rounds.start("r1", requested_by="someone else") == first  # idempotent
    assert rounds.add_targets("r1", "lab", [(WEB, "10.0.0.1"), (DB, "")]) == 2
    assert rounds.add_targets("r1", "lab", [(DB, "")]) == 2  # a second call keeps the first list
    batch = rounds.targets("r1", "lab", 1, 5)
    assert [(t.position, t.vm, t.address, t.state) for t in batch] == [(1, DB, "", "pending")]
    rounds.mark("r1", batch[0], "failed", note="not assessed: guest unreachable")
    rounds.mark("r1", rounds.targets("r1", "lab", 0, 1)[0], "assessed", assessment_id=7)
    assert rounds.counts("r1") == {"assessed": 1, "failed": 1}
    assert [(t.vm, t.note) for t in rounds.failed("r1")] == [(DB, "not assessed: guest unreachable")]
    done = rounds.finish("r1", alerts=2)
    assert (done.targets, done.assessed, done.failed, done.alerts) == (2, 1, 1, 2) and done.finished_at
    assert rounds.finish("r1").finished_at == done.finished_at


def test_alerts_are_raised_once_per_cve_and_wait_for_a_delivery(facts: FactStore) -> None:
    rounds = RoundStore(facts)
    record(facts, WEB, (KEV, SSL_BUG))
    record(facts, DB, (replace(KEV, severity="important"),))
    alerts = rounds.raise_alerts("r1", min_rank=5)  # critical or KEV; the moderate one is not an alert
    assert [(a.cve, a.severity, a.kev, a.machines, a.round_id) for a in alerts] == [
        ("CVE-2099-0001", "critical", True, 2, "r1")
    ]
    assert [a.cve for a in rounds.raise_alerts("r2", min_rank=5)] == ["CVE-2099-0001"]  # not delivered yet
    rounds.mark_notified(["CVE-2099-0001"])
    assert rounds.raise_alerts("r3", min_rank=5) == []
    [recorded] = rounds.alerts()
    assert recorded.round_id == "r1" and recorded.notified_at  # first seen in r1, announced once
    assert [a.cve for a in rounds.raise_alerts("r4", min_rank=3)] == ["CVE-2026-0001"]  # a lower threshold


def test_the_per_cve_view_is_aggregated_over_the_latest_or_a_round(facts: FactStore) -> None:
    rounds = RoundStore(facts)
    record(facts, WEB, (KEV, SSL_BUG), round_id="r1")
    record(facts, DB, (replace(KEV, fix_available=False, fixed_version="1.2"),), round_id="r1")
    record(facts, APP, (SSL_BUG,), round_id="r2")
    latest = {c.cve: c for c in rounds.cve_summary()}
    kev = latest["CVE-2099-0001"]
    assert (kev.severity, kev.cvss, kev.kev, kev.kev_due, kev.machines, kev.fixable) == ("critical", 9.8, True,
                                                                                        "2026-12-11", 2, 1)  # fmt: skip
    assert (kev.fixed_version, kev.fixed_versions, kev.package, kev.days_since_release) == (
        "",
        2,
        "demo-app",
        14,
    )
    assert latest["CVE-2026-0001"].machines == 2 and list(latest) == ["CVE-2099-0001", "CVE-2026-0001"]
    assert [c.cve for c in rounds.cve_summary(round_id="r2")] == ["CVE-2026-0001"]
    assert rounds.machines_with("CVE-2099-0001") == [DB, WEB]
    assert rounds.machines_with("CVE-2026-0001", round_id="r2") == [APP]


def test_only_the_latest_assessments_keep_their_details_and_headers_are_bounded(facts: FactStore) -> None:
    store = VulnStore(facts)
    ids = [record(facts, WEB, (KEV,), round_id=f"r{i}", pending=(DEMO,)) for i in range(KEEP_HEADERS + 2)]
    kept = store.assessment(ids[-KEEP_DETAILED])
    assert kept is not None and kept.findings == (KEV,) and kept.pending == (DEMO,)
    older = store.assessment(ids[-KEEP_DETAILED - 1])
    assert older is not None and older.findings == () and older.pending == () and older.total == 1
    assert store.assessment(ids[1]) is None and store.assessment(ids[2]) is not None


def test_pending_updates_family_and_risk_read_back_and_feed_the_planner(facts: FactStore) -> None:
    store = VulnStore(facts)
    risk = VmRisk(kev=1, severity="critical", cvss=9.8, fixable=2)
    record(facts, WEB, (KEV,), pending=(DEMO, SSL), packages=412, risk=risk)
    record(facts, DB, (), pending=())
    latest = store.latest_assessment(WEB)
    assert latest is not None
    assert (latest.pending, latest.family, latest.packages, latest.risk, latest.round_id) == ((DEMO, SSL), "debian",
                                                                                              412, risk, "r1")  # fmt: skip
    assert store.risks() == {"vm:lab:uuid-1": risk}  # db-1 has nothing fixable
    if facts.engine != "sqlite":
        return  # the dry run's read-only FactReader reads SQLite files only (see orchestrator/dry_run.py)
    reader = FactReader(facts.path)
    try:
        assert reader.risks() == store.risks()
    finally:
        reader.close()


def test_candidates_are_first_seen_once(facts: FactStore) -> None:
    rounds = RoundStore(facts)
    clock = facts._clock
    assert isinstance(clock, FakeClock)
    rounds.record_candidates("debian", (DEMO,))
    clock.advance(timedelta(days=3).total_seconds())
    rounds.record_candidates("debian", (DEMO, SSL))
    seen = rounds.first_seen("debian", (DEMO, SSL, replace(DEMO, candidate="1.2")))
    assert seen[("demo-app", "1.1")].startswith("2026-12-04") and seen[("libssl3", SSL.candidate)].startswith(
        "2026-12-07"
    )
    assert ("demo-app", "1.2") not in seen and rounds.first_seen("rhel", (DEMO,)) == {}
