"""Feeds in the product: load what the operator names (or ``[assess] feeds``) into the fact store's
cache, refresh the configured ones when they are old, and say how old each cached feed is.

Each source is read and saved on its own (one feed in memory at a time: the Debian tracker is ~70 MB
of JSON). A source that cannot be read is a :class:`~orchestrator.vulns.errors.FeedError` naming it
and what to download instead (the CLI: one line, exit 2). ``refresh`` (``serve``'s rounds) never
raises for a feed: a failure is counted and logged, and the cached copy keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from orchestrator.config.settings import Settings
from orchestrator.facts.store import FactStore
from orchestrator.facts.vulns import FeedInfo, VulnStore
from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.loading import Fetch, fetch_https, load_feed

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FeedStatus:
    info: FeedInfo
    age_s: int  # since it was loaded
    stale: bool  # loaded longer ago than [assess] stale
    configured: bool  # one of [assess] feeds


@dataclass(frozen=True)
class Refreshed:
    loaded: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # fresh enough
    failed: tuple[str, ...] = ()  # "source: reason"


def load_into(facts: FactStore, sources: Sequence[str], *, releases: Sequence[str] = (),
              fetch: Fetch = fetch_https, on_loaded: Callable[[FeedInfo], None] | None = None) -> list[FeedInfo]:  # fmt: skip
    """Read each source and cache it (replacing its earlier load); the cached feeds, in order."""
    if not sources:
        raise FeedError("(no source)", "no feed given and [assess] feeds names none",
                        fix="name a file, directory or https:// URL, or list them in [assess] feeds")  # fmt: skip
    store = VulnStore(facts)
    done = []
    for source in sources:
        feed = load_feed(source, releases=releases or None, fetch=fetch)
        feed_id = store.save_feed(feed)
        info = next(i for i in store.feeds() if i.id == feed_id)
        done.append(info)
        log.info("feed_loaded", kind=info.kind, source=info.source, version=info.version, records=info.count)
        if on_loaded is not None:
            on_loaded(info)
    return done


def refresh(facts: FactStore, settings: Settings, now: datetime, *, fetch: Fetch = fetch_https) -> Refreshed:
    """Reload every ``[assess] feeds`` source whose cached copy is older than ``refresh_feeds``."""
    cfg = settings.assess
    cached = {i.source: i for i in VulnStore(facts).feeds()}
    loaded, kept, failed = [], [], []
    for source in cfg.feeds:
        info = cached.get(source)
        if info is not None and _age_s(info, now) < cfg.refresh_feeds_s:
            kept.append(source)
            continue
        try:
            load_into(facts, [source], releases=cfg.releases, fetch=fetch)
        except FeedError as exc:
            log.warning("feed_refresh_failed", source=source, error=str(exc))
            failed.append(f"{source}: {exc.message}")
            continue
        loaded.append(source)
    return Refreshed(tuple(loaded), tuple(kept), tuple(failed))


def status(facts: FactStore, settings: Settings, now: datetime) -> list[FeedStatus]:
    """Every cached feed with its age; ``stale`` when loaded longer ago than ``[assess] stale``."""
    configured = set(settings.assess.feeds)
    return [
        FeedStatus(i, age, age > settings.assess.stale_s, i.source in configured)
        for i in VulnStore(facts).feeds()
        for age in [_age_s(i, now)]
    ]


def _age_s(info: FeedInfo, now: datetime) -> int:
    try:
        return max(0, int((now - datetime.fromisoformat(info.loaded_at)).total_seconds()))
    except (TypeError, ValueError):
        return 10**9  # an unreadable date: as old as can be (reloaded, reported stale)
