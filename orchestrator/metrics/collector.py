"""The metrics, read from the fact store when they are scraped (no per-VM labels; see README "Metrics").

:class:`FactsCollector` is a ``prometheus_client`` custom collector. A read is a handful of aggregate
queries (:mod:`orchestrator.facts.fleet`) whose cost grows with the fleet, not with the history; the
step-duration histogram reads only the journal records added since the previous read (at most a
bounded chunk per read) and keeps the counts in memory, so it only ever grows, as a histogram must:
an endpoint counts the steps recorded during its lifetime, a one-off rendering the whole journal. Reads run on one dedicated thread —
the HTTP server answers each request on a new thread, and the fact store opens a connection per
thread — and scrapes within ``cache_s`` of a read get the same figures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from orchestrator.facts import fleet
from orchestrator.facts.inventory import InventoryStore
from orchestrator.facts.records import SEVERITIES, utc
from orchestrator.facts.runs import RUN_STATUSES
from orchestrator.facts.store import FactStore
from providers.timing import SYSTEM_CLOCK, Clock

#: Upper bounds (s) of the step-duration buckets: snapshots take seconds to minutes, patches and
#: reboots minutes, host patches up to an hour or two.
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


@dataclass
class _Durations:
    count: int = 0
    total_s: float = 0.0
    buckets: tuple[int, ...] = (0,) * len(DURATION_BUCKETS)

    def add(self, more: fleet.DurationFigures) -> None:
        self.count += more.count
        self.total_s += more.total_s
        self.buckets = tuple(a + b for a, b in zip(self.buckets, more.buckets, strict=True))


class FactsCollector(Collector):
    def __init__(
        self,
        facts: FactStore,
        *,
        grace_s: float,
        cache_s: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
        history: bool = True,
    ) -> None:
        """``history``: the histogram counts every step on record (a one-off rendering reads the whole
        journal); False: only steps recorded from now on (an endpoint's process lifetime, as any
        Prometheus histogram: no minutes-long first scrape over a large journal)."""
        self._facts = facts
        self._grace_s = grace_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchwave-metrics")
        self._cached: list[Metric] | None = None
        self._read_at = 0.0
        self._history = history
        self._cursor = 0  # the last journal record id counted
        self._durations: dict[str, _Durations] = {a: _Durations() for a in fleet.TIMED_ACTIONS}
        if not history:  # count from now on: mark the journal's end before any scrape (first on the reader)
            self._reader.submit(self._mark_journal_end)

    def describe(self) -> list[Metric]:
        return []  # registering must not read the fact store

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            moment = self._clock.monotonic()
            if self._cached is None or moment - self._read_at >= self._cache_s:
                self._cached = self._reader.submit(self._read).result()
                self._read_at = moment
            return iter(list(self._cached))

    def close(self) -> None:
        self._reader.shutdown(wait=True)

    def _mark_journal_end(self) -> None:
        self._cursor = fleet.journal_end(self._facts)

    # ------------------------------------------------------------------------------ one read
    def _read(self) -> list[Metric]:
        started = self._clock.monotonic()
        figures = fleet.fleet_figures(self._facts, self._clock.now(), self._grace_s)
        families = [
            self._runs(),
            _outcomes(figures),
            self._histogram(),
            self._maintenance(),
            *self._snapshots(),
            *_compliance(figures),
            *self._inventory(),
        ]
        took = GaugeMetricFamily("patchwave_facts_read_duration_seconds", "How long the last read of the fact store took",
                                 unit="seconds")  # fmt: skip
        took.add_metric([], max(0.0, self._clock.monotonic() - started))
        return [*families, took]

    def _runs(self) -> Metric:
        found = fleet.runs_by_status(self._facts)
        family = GaugeMetricFamily(
            "patchwave_runs", "Runs on record, by their current status", labels=["status"]
        )
        for status in sorted(RUN_STATUSES | set(found)):
            family.add_metric([status], found.get(status, 0))
        return family

    def _histogram(self) -> Metric:
        end = fleet.journal_end(self._facts)
        while self._cursor < end:  # a one-off rendering reads it all; an endpoint one chunk per read
            self._cursor, found = fleet.step_durations(self._facts, DURATION_BUCKETS, after_id=self._cursor)
            for action, more in found.items():
                self._durations.setdefault(action, _Durations()).add(more)
            if not self._history:
                break
        family = HistogramMetricFamily(
            "patchwave_step_duration_seconds",
            "Duration of completed steps (journal intent to result), by action",
            labels=["action"],
            unit="seconds",
        )
        for action, d in sorted(self._durations.items()):
            buckets = [(floatToGoString(b), n) for b, n in zip(DURATION_BUCKETS, d.buckets, strict=True)]
            family.add_metric([action], [*buckets, ("+Inf", d.count)], sum_value=d.total_s)
        return family

    def _maintenance(self) -> Metric:
        family = GaugeMetricFamily(
            "patchwave_hosts_in_maintenance", "Hosts patchwave put in maintenance mode that have not left it"
        )
        family.add_metric([], len(self._facts.hosts_in_maintenance()))
        return family

    def _snapshots(self) -> list[Metric]:
        now = utc(self._clock.now())
        count = GaugeMetricFamily("patchwave_snapshots", "Snapshots in patchwave's registry, by state (deleted ones not counted)",
                                  labels=["state"])  # fmt: skip
        oldest = GaugeMetricFamily("patchwave_snapshot_oldest_age_seconds", "Age of the oldest snapshot in each state",
                                   labels=["state"], unit="seconds")  # fmt: skip
        found = {s.state: s for s in fleet.snapshot_figures(self._facts)}
        for state in fleet.COUNTED_SNAPSHOTS:
            figures = found.get(state)
            count.add_metric([state], figures.count if figures else 0)
            if figures is not None:
                oldest.add_metric([state], max(0.0, (now - utc(figures.oldest_created_at)).total_seconds()))
        return [count, oldest]

    def _inventory(self) -> list[Metric]:
        machines = GaugeMetricFamily("patchwave_inventory_machines", "Machines in the latest inventory of each site",
                                     labels=["site", "kind"])  # fmt: skip
        taken = GaugeMetricFamily("patchwave_inventory_timestamp_seconds", "When each site's latest inventory was taken",
                                  labels=["site"], unit="seconds")  # fmt: skip
        for snap in InventoryStore(self._facts).current():
            machines.add_metric([snap.site, "host"], snap.hosts)
            machines.add_metric([snap.site, "vm"], snap.vms)
            taken.add_metric([snap.site], utc(snap.taken_at).timestamp())
        return [machines, taken]


def _outcomes(figures: fleet.FleetFigures) -> Metric:
    family = GaugeMetricFamily(
        "patchwave_vm_outcomes",
        "Fleet VMs by the status of their latest final outcome (ring: the configured ring at discovery)",
        labels=["status", "site", "ring"],
    )
    for (status, site, ring), count in sorted(figures.outcomes.items()):
        family.add_metric([status, site, ring], count)
    return family


def _compliance(figures: fleet.FleetFigures) -> list[Metric]:
    pending = GaugeMetricFamily("patchwave_pending_updates", "Updates pending on the fleet (latest assessments), by severity",
                                labels=["severity"])  # fmt: skip
    for severity in SEVERITIES:
        pending.add_metric([severity], sum(g.pending.get(severity, 0) for g in figures.groups))
    reboot = GaugeMetricFamily(
        "patchwave_reboot_required_machines", "Fleet machines whose latest assessment needs a reboot"
    )
    reboot.add_metric([], sum(g.reboot_required for g in figures.groups))
    families = {
        "patchwave_machines": ("Machines in the fleet, by group", "machines"),
        "patchwave_noncompliant_machines": ("Non-compliant machines, by group (see README: Non-compliance)", "noncompliant"),
        "patchwave_unassessed_machines": ("Machines never assessed, by group", "unassessed"),
    }  # fmt: skip
    per_group = []
    for name, (doc, attribute) in families.items():
        family = GaugeMetricFamily(name, doc, labels=["group"])
        for g in figures.groups:
            family.add_metric([g.group], getattr(g, attribute))
        per_group.append(family)
    return [pending, reboot, *per_group]


def registry_of(collector: FactsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
