"""Feeds cached in a real SQLite fact store and read back offline; per-VM vulnerability assessments."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from orchestrator.facts.schema import LATEST_VERSION
from orchestrator.facts.store import FactStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.vulns.ecosystems import scope_for
from orchestrator.vulns.feeds import Feeds
from orchestrator.vulns.findings import assess, installed_from
from orchestrator.vulns.loading import load_feed
from providers.base import VmRef
from tests.unit.vulns.conftest import DATA, LOADED_AT, load_all, os_release

UBUNTU = os_release(ID="ubuntu", VERSION_ID="22.04")
VM = VmRef("lab", "uuid-1", "web-1")


@pytest.fixture(scope="module")
def all_feeds() -> Feeds:
    return load_all()


@pytest.fixture
def store(store_at) -> Iterator[VulnStore]:
    facts = FactStore(store_at())
    yield VulnStore(facts)
    facts.close()


def save_all(store: VulnStore, feeds: Feeds) -> None:
    for feed in feeds:
        store.save_feed(feed)


def test_the_migration_creates_the_tables(store: VulnStore) -> None:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if store._facts.engine == "sqlite"
        else "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    tables = {r[0] for r in store._facts._db().execute(query)}
    assert {
        "vuln_feeds",
        "vuln_feed_records",
        "vuln_feed_index",
        "vuln_assessments",
        "vuln_findings",
    } <= tables
    assert LATEST_VERSION >= 3


def test_every_feed_reads_back_the_same(store: VulnStore, all_feeds: Feeds) -> None:
    save_all(store, all_feeds)
    assert [(f.kind, f.source, f.version, f.loaded_at, f.count) for f in store.feeds()] == sorted(
        (f.kind, f.source, f.version, f.loaded_at, f.count) for f in all_feeds
    )
    cached = store.load()
    assert sorted(r.id for r in cached.osv) == sorted(r.id for r in all_feeds.osv)
    assert sorted(cached.tracker, key=repr) == sorted(all_feeds.tracker, key=repr)
    assert cached.kev("CVE-2023-4911") == all_feeds.kev("CVE-2023-4911")
    originals = {r.id: r for r in all_feeds.osv}
    assert all(r == originals[r.id] for r in cached.osv)  # prose aside, nothing is lost


def test_assess_offline_loads_only_what_the_guest_can_match(store: VulnStore, all_feeds: Feeds) -> None:
    save_all(store, all_feeds)
    installed = installed_from({"libc6": "2.35-0ubuntu3.1", "libssl3": "3.0.2-0ubuntu1.10"},
                               {"libc6": "glibc", "libssl3": "openssl"})  # fmt: skip
    names = {n for p in installed for n in (p.name, p.source_name)}
    cached = store.load(scope_for(UBUNTU), names)
    assert sorted(r.id for r in cached.osv) == ["UBUNTU-CVE-2023-4911", "USN-6986-1"]
    assert cached.tracker == ()
    today = date(2026, 1, 5)
    assert assess(UBUNTU, installed, [], cached, today=today) == assess(
        UBUNTU, installed, [], all_feeds, today=today
    )


def test_loading_a_feed_again_replaces_its_records(store: VulnStore) -> None:
    source = DATA / "debian-tracker" / "vunnel-excerpt.json"
    store.save_feed(load_feed(source, now=lambda: LOADED_AT))
    store.save_feed(load_feed(source, releases={"bookworm"}, now=lambda: "2026-01-06T00:00:00+00:00"))
    db = store._facts._db()
    assert [(f.loaded_at, f.count) for f in store.feeds()] == [("2026-01-06T00:00:00+00:00", 1)]
    assert db.execute("SELECT COUNT(*) FROM vuln_feeds").fetchone()[0] == 2  # the history stays
    assert db.execute("SELECT COUNT(*) FROM vuln_feed_records").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM vuln_feed_index").fetchone()[0] == 1


def test_assessments_round_trip(store: VulnStore, all_feeds: Feeds) -> None:
    installed = installed_from({"libc6": "2.35-0ubuntu3.1", "libssl3": "3.0.2-0ubuntu1.10"},
                               {"libc6": "glibc", "libssl3": "openssl"})  # fmt: skip
    findings = assess(UBUNTU, installed, [], all_feeds, today=date(2026, 1, 5))
    other = VmRef("lab", "uuid-2", "db-1")
    store.record_assessment(
        VM, taken_at="2026-01-04T00:00:00+00:00", os="Ubuntu 22.04", findings=(), feeds={}
    )
    aid = store.record_assessment(VM, taken_at="2026-01-05T00:00:00+00:00", os="Ubuntu 22.04",
                                  findings=findings, feeds=all_feeds.versions())  # fmt: skip
    store.record_assessment(other, taken_at="2026-01-05T00:00:00+00:00", os="Ubuntu 22.04",
                            findings=findings[:1], feeds=all_feeds.versions())  # fmt: skip
    latest = store.latest_assessment(VM)
    assert latest is not None and latest.id == aid and latest.findings == findings
    assert (latest.total, latest.kev, latest.unfixed) == (2, 1, 0)
    assert latest.severities == {"critical": 0, "important": 1, "moderate": 1, "low": 0, "unrated": 0}
    assert latest.feeds == all_feeds.versions()
    assert [(a.vm.name, a.total) for a in store.latest_assessments()] == [("db-1", 1), ("web-1", 2)]
    assert [(vm.name, f.package) for vm, f in store.findings_of("CVE-2023-4911")] == [
        ("db-1", "libc6"),
        ("web-1", "libc6"),
    ]
    assert (
        store.findings_of("CVE-1999-0001") == [] and store.latest_assessment(VmRef("lab", "x", "x")) is None
    )
