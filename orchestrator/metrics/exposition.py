"""Where the metrics go: the HTTP endpoint of ``patchwave serve`` and the text of ``patchwave report``.

* :func:`serving` — ``[metrics] port`` set: ``GET http://<address>:<port>/metrics`` (Prometheus text,
  or OpenMetrics when the scraper asks for it) for as long as the ``with`` block runs; nothing otherwise.
* :func:`render_metrics` — the same registry as one text: ``openmetrics`` (OpenMetrics 1.0) or
  ``prometheus`` (the classic text format, which node-exporter's textfile collector reads).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime

from prometheus_client import start_http_server
from prometheus_client.exposition import generate_latest as generate_prometheus
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from orchestrator.config.settings import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.facts.store import FactStore, open_store
from orchestrator.metrics.collector import FactsCollector, registry_of
from providers.timing import Clock

#: ``patchwave report --format`` values rendered from the metrics registry.
METRIC_FORMATS = ("openmetrics", "prometheus")


class MetricsEndpointError(OrchestratorError):
    code = "metrics"


class _At:
    """A clock stopped at ``moment`` (a report is rendered for one instant)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise AssertionError("rendering metrics never sleeps")


def render_metrics(facts: FactStore, now: datetime, *, grace_s: float, fmt: str = "openmetrics") -> str:
    if fmt not in METRIC_FORMATS:
        raise ValueError(f"unknown metrics format {fmt!r}; use one of {', '.join(METRIC_FORMATS)}")
    collector = FactsCollector(facts, grace_s=grace_s, clock=_At(now))
    try:
        registry = registry_of(collector)
        text = generate_openmetrics(registry) if fmt == "openmetrics" else generate_prometheus(registry)
    finally:
        collector.close()
    return text.decode("utf-8")


def url_of(address: str, port: int) -> str:
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"http://{host}:{port}/metrics"


@contextmanager
def serving(settings: Settings, *, clock: Clock | None = None) -> Iterator[str]:
    """Serve the metrics while the block runs; yields the URL ("" when ``[metrics]`` is off)."""
    config = settings.metrics
    if not config.enabled:
        yield ""
        return
    facts = open_store(settings)
    extra = {"clock": clock} if clock is not None else {}
    collector = FactsCollector(
        facts, grace_s=settings.compliance.grace_s, cache_s=config.cache_s, history=False, **extra
    )
    try:
        server, thread = start_http_server(config.port, addr=config.address, registry=registry_of(collector))
    except OSError as exc:
        collector.close()
        facts.close()
        raise MetricsEndpointError(
            f"cannot serve metrics on {config.address}:{config.port} ({exc.strerror or exc})",
            step="metrics",
            fix="set [metrics] port to a free port, or remove it to serve no metrics",
        ) from None
    try:
        yield url_of(config.address, config.port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        collector.close()
        facts.close()


@asynccontextmanager
async def endpoint(settings: Settings, on_ready: Callable[[str], None] | None = None) -> AsyncIterator[str]:
    """:func:`serving` for ``async with`` (``patchwave serve``); ``on_ready(url)`` once it listens."""
    with serving(settings) as url:
        if url and on_ready is not None:
            on_ready(url)
        yield url
