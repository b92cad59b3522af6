"""The metrics, read from a real fact store (tests/support/fleet.py) and parsed back with
prometheus_client's own parsers: names, types, labels and values."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from orchestrator.facts import fleet
from orchestrator.facts.actions import Action
from orchestrator.facts.details import PatchDetail, PatchIntent
from orchestrator.facts.store import FactStore
from orchestrator.metrics.collector import FactsCollector, registry_of
from orchestrator.metrics.exposition import render_metrics
from orchestrator.model import vm_step_id
from tests.support.fleet import NOW, WEB1, Fleet, populate, populate_fleet
from tests.support.postgres import ModuleSchema

GRACE = 30 * 86400
#: Every label the metrics may carry: nothing per VM.
LABELS = {"status", "site", "ring", "action", "state", "severity", "group", "kind", "le"}


@pytest.fixture(params=["sqlite", "postgres"])
def whole(request: pytest.FixtureRequest, tmp_path: Path, module_schema: ModuleSchema) -> Iterator[Fleet]:
    """The fleet on either engine (the metrics' SQL runs on both)."""
    where = tmp_path / "facts.db" if request.param == "sqlite" else module_schema.target()
    f = populate_fleet(where)
    yield f
    f.store.close()


def samples(text: str, *, openmetrics: bool = True) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = parse_openmetrics(text) if openmetrics else parse_prometheus(text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_openmetrics_text_has_every_gauge_of_the_fleet(whole: Fleet) -> None:
    text = render_metrics(whole.store, NOW, grace_s=GRACE)
    assert text.endswith("# EOF\n")
    types = {f.name: f.type for f in parse_openmetrics(text)}
    assert types == {
        "patchwave_runs": "gauge", "patchwave_vm_outcomes": "gauge", "patchwave_step_duration_seconds": "histogram",
        "patchwave_hosts_in_maintenance": "gauge", "patchwave_snapshots": "gauge",
        "patchwave_snapshot_oldest_age_seconds": "gauge", "patchwave_pending_updates": "gauge",
        "patchwave_reboot_required_machines": "gauge", "patchwave_machines": "gauge",
        "patchwave_noncompliant_machines": "gauge", "patchwave_unassessed_machines": "gauge",
        "patchwave_inventory_machines": "gauge", "patchwave_inventory_timestamp_seconds": "gauge",
        "patchwave_facts_read_duration_seconds": "gauge",
    }  # fmt: skip
    found = samples(text)
    assert (
        value(found, "patchwave_runs", status="planned") == 4
        and value(found, "patchwave_runs", status="failed") == 0
    )
    # the latest final outcome of each fleet VM, with the ring the configuration gives it
    assert (
        value(found, "patchwave_vm_outcomes", status="succeeded", site="dc1", ring="main") == 3
    )  # web-1 db-1 app-2
    assert value(found, "patchwave_vm_outcomes", status="failed", site="dc1", ring="canary") == 1
    assert value(found, "patchwave_vm_outcomes", status="rolled_back", site="dc1", ring="main") == 1
    assert value(found, "patchwave_vm_outcomes", status="skipped", site="dc1", ring="main") == 1  # app-1
    assert value(found, "patchwave_hosts_in_maintenance") == 1  # esx-2 never left it
    assert (
        value(found, "patchwave_snapshots", state="kept") == 1
        and value(found, "patchwave_snapshots", state="leaked") == 0
    )
    assert value(found, "patchwave_snapshot_oldest_age_seconds", state="reverted") == (5 * 86400 + 16 * 3600)
    pending = {
        s: value(found, "patchwave_pending_updates", severity=s)
        for s in ("critical", "important", "moderate", "other")
    }
    assert pending == {
        "critical": 1,
        "important": 4,
        "moderate": 1,
        "other": 3,
    }  # retired-1's critical: not in the fleet
    assert value(found, "patchwave_reboot_required_machines") == 1  # db-1
    groups = {
        g: value(found, "patchwave_machines", group=g)
        for g in ("apps", "canary", "databases", "default", "web")
    }
    assert groups == {"apps": 2, "canary": 1, "databases": 1, "default": 2, "web": 2}
    assert (
        value(found, "patchwave_noncompliant_machines", group="web") == 1
    )  # web-2: a critical update pending
    assert (
        value(found, "patchwave_noncompliant_machines", group="apps") == 1
    )  # app-1: important, patched 8 weeks ago
    assert value(found, "patchwave_unassessed_machines", group="default") == 2  # new-1 and legacy
    assert value(found, "patchwave_inventory_machines", site="dc1", kind="vm") == 7
    assert (
        value(found, "patchwave_inventory_timestamp_seconds", site="dc2")
        == (NOW - timedelta(hours=1)).timestamp()
    )


def test_step_durations_are_a_histogram_per_action(whole: Fleet) -> None:
    found = samples(render_metrics(whole.store, NOW, grace_s=GRACE))
    patch = {le: value(found, "patchwave_step_duration_seconds_bucket", action="patch", le=le)
             for le in ("120.0", "300.0", "600.0", "900.0", "+Inf")}  # fmt: skip
    # canary-1 4m50s, web-1 7m30s, web-2 7m30s, app-2 7m, db-1 12m
    assert patch == {"120.0": 0, "300.0": 1, "600.0": 4, "900.0": 5, "+Inf": 5}
    assert value(found, "patchwave_step_duration_seconds_sum", action="patch") == 290 + 450 + 450 + 420 + 720
    assert value(found, "patchwave_step_duration_seconds_count", action="revert") == 1
    assert value(found, "patchwave_step_duration_seconds_sum", action="host_patch") == 24 * 60
    # health checks are results without an intent: not timed
    assert not any(
        name.endswith("_bucket") and ("action", "verify_health") in labels for name, labels in found
    )


def test_the_classic_text_format_carries_the_same_figures(whole: Fleet) -> None:
    classic = samples(render_metrics(whole.store, NOW, grace_s=GRACE, fmt="prometheus"), openmetrics=False)
    assert value(classic, "patchwave_noncompliant_machines", group="web") == 1
    assert value(classic, "patchwave_step_duration_seconds_count", action="patch") == 5


def test_no_label_names_a_machine(whole: Fleet) -> None:
    found = samples(render_metrics(whole.store, NOW, grace_s=GRACE))
    names = {"web-1", "web-2", "db-1", "canary-1", "app-1", "app-2", "new-1", "retired-1", "esx-1", "esx-2"}
    for _, labels in found:
        assert {k for k, _ in labels} <= LABELS
        assert not names & {v for _, v in labels}


def test_a_longer_grace_period_makes_the_stale_machine_compliant(whole: Fleet) -> None:
    found = samples(render_metrics(whole.store, NOW, grace_s=90 * 86400))
    assert (
        value(found, "patchwave_noncompliant_machines", group="apps") == 0
    )  # patched 56 days ago: within 90
    assert (
        value(found, "patchwave_noncompliant_machines", group="web") == 1
    )  # a critical update: never tolerated


def test_a_site_never_inventoried_counts_the_machines_on_record(tmp_path: Path) -> None:
    f = populate(tmp_path / "facts.db")  # no inventory at all
    try:
        found = samples(render_metrics(f.store, NOW, grace_s=GRACE))
    finally:
        f.store.close()
    assert value(found, "patchwave_machines", group="-") == 4  # assessed or with an outcome
    assert value(found, "patchwave_vm_outcomes", status="succeeded", site="dc1", ring="-") == 2


@pytest.mark.parametrize(
    ("critical", "security", "patched_days_ago", "expected"),
    [(1, 1, 1, True), (0, 0, None, False), (0, 2, None, True), (0, 2, 29, False), (0, 2, 31, True),
     (0, 0, 400, False), (1, 0, 0, True)],
)  # fmt: skip
def test_the_rule_is_the_same_in_sql_and_in_python(critical, security, patched_days_ago, expected) -> None:
    patched = (
        ""
        if patched_days_ago is None
        else (NOW - timedelta(days=patched_days_ago)).isoformat(timespec="microseconds")
    )
    assert fleet.noncompliant(critical, security, patched, NOW, GRACE) is expected
    db = sqlite3.connect(":memory:")
    row = db.execute(
        f"SELECT {fleet.NONCOMPLIANT_SQL} FROM (SELECT :sev AS severities, :security AS security) a,"
        " (SELECT :patched AS recorded_at) p",
        {"sev": f'{{"critical": {critical}}}', "security": security, "patched": patched or None,
         "cutoff": fleet.cutoff(NOW, GRACE)},
    )  # fmt: skip
    assert bool(row.fetchone()[0]) is expected


class SteppedClock:
    def __init__(self) -> None:
        self.tick = 0.0

    def now(self):
        return NOW

    def monotonic(self) -> float:
        return self.tick

    def sleep(self, seconds: float) -> None:
        raise AssertionError


def patch_samples(registry) -> dict[tuple[str, str | None], float]:
    return {(s.name, s.labels.get("le")): s.value for m in registry.collect() for s in m.samples
            if s.labels.get("action") == "patch"}  # fmt: skip


def test_an_endpoint_counts_the_steps_of_its_lifetime_and_caches_reads(whole: Fleet) -> None:
    clock = SteppedClock()
    collector = FactsCollector(whole.store, grace_s=GRACE, cache_s=15, clock=clock, history=False)
    registry = registry_of(collector)
    try:
        first = patch_samples(registry)
        assert (
            first[("patchwave_step_duration_seconds_count", None)] == 0
        )  # the journal before it: not counted
        whole.clock.set_time(NOW)
        whole.store.record_intent("run-9", vm_step_id(WEB1), Action.PATCH, detail=PatchIntent(mode="all"))
        whole.clock.set_time(NOW + timedelta(seconds=95))
        whole.store.record_result("run-9", vm_step_id(WEB1), Action.PATCH, ok=True, detail=PatchDetail())
        cached = patch_samples(registry)
        assert (
            cached[("patchwave_step_duration_seconds_count", None)] == 0
        )  # within cache_s: the same figures
        clock.tick = 15.0
        fresh = patch_samples(registry)
        assert fresh[("patchwave_step_duration_seconds_count", None)] == 1
        assert fresh[("patchwave_step_duration_seconds_bucket", "60.0")] == 0
        assert fresh[("patchwave_step_duration_seconds_bucket", "120.0")] == 1
    finally:
        collector.close()


def test_a_large_journal_is_read_in_bounded_chunks(whole: Fleet) -> None:
    end = fleet.journal_end(whole.store)
    cursor, total = 0, 0
    reads = 0
    while cursor < end:
        cursor, found = fleet.step_durations(whole.store, (60.0,), after_id=cursor, limit=5)
        total += sum(d.count for d in found.values())
        reads += 1
    assert reads == -(-end // 5) and total == 16  # 5 snapshots, 5 patches, 3 reboots, 1 revert, 2 host steps
    assert fleet.step_durations(whole.store, (60.0,), after_id=end) == (end, {})


def test_the_fact_store_is_read_on_one_thread(whole: Fleet) -> None:
    """The HTTP server answers on a new thread per request; the fact store opens a connection per thread."""
    import threading

    if whole.store.engine != "sqlite":
        pytest.skip("SQLite's connection per thread; PostgreSQL's come from a bounded pool per process")
    collector = FactsCollector(whole.store, grace_s=GRACE)
    before = len(whole.store._connections)
    try:
        threads = [threading.Thread(target=lambda: list(collector.collect())) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        collector.close()
    assert len(whole.store._connections) == before + 1


def test_a_closed_store_is_not_needed_to_build_the_registry(tmp_path: Path) -> None:
    store = FactStore(tmp_path / "facts.db")
    collector = FactsCollector(store, grace_s=GRACE)
    try:
        registry_of(collector)  # registering reads nothing
        assert len(store._connections) == 1  # the store's own (migrations)
    finally:
        collector.close()
        store.close()
