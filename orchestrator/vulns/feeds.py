"""Loaded feeds as values: one :class:`Feed` per file, directory, archive or URL; :class:`Feeds` all of them.

A feed knows its kind, where it came from, when it was loaded and its own date or version (OSV: the
newest ``modified``; KEV: ``catalogVersion``; tracker: the file's modification time, the JSON carries
no date), so an assessment can say how fresh its data was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from orchestrator.vulns.debian_tracker import TrackerEntry
from orchestrator.vulns.kev import KevCatalog, KevEntry
from orchestrator.vulns.osv import OsvRecord

FeedKind = Literal["osv", "debian-tracker", "kev"]
FEED_KINDS: tuple[FeedKind, ...] = ("osv", "debian-tracker", "kev")


@dataclass(frozen=True)
class Feed:
    kind: FeedKind
    source: str  # the path or URL the operator gave
    loaded_at: str  # ISO-8601 UTC
    version: str  # the feed's own date or version ("" when it has none)
    osv: tuple[OsvRecord, ...] = ()
    tracker: tuple[TrackerEntry, ...] = ()
    kev: KevCatalog | None = None

    @property
    def count(self) -> int:
        return len(self.osv) + len(self.tracker) + (len(self.kev.entries) if self.kev else 0)

    def describe(self) -> str:
        return f"{self.kind} {self.source} ({self.count} records, version {self.version or 'unknown'})"


@dataclass(frozen=True)
class Feeds:
    feeds: tuple[Feed, ...] = ()

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    @property
    def osv(self) -> tuple[OsvRecord, ...]:
        return tuple(r for f in self.feeds for r in f.osv)

    @property
    def tracker(self) -> tuple[TrackerEntry, ...]:
        return tuple(e for f in self.feeds for e in f.tracker)

    def kev(self, cve: str) -> KevEntry | None:
        """The KEV entry of ``cve`` from the newest catalog that lists it."""
        catalogs = sorted((f.kev for f in self.feeds if f.kev), key=lambda c: c.version, reverse=True)
        return next((e for c in catalogs if (e := c.get(cve)) is not None), None)

    def versions(self) -> dict[str, str]:
        """{source: version} for the assessment's record of what it was matched against."""
        return {f.source: f.version for f in self.feeds}
