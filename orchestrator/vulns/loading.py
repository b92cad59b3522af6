"""Reading feeds from what the operator downloaded: a JSON file, a directory of OSV files, an OSV
``all.zip``, or an ``https://`` URL of any of those. The kind is detected from the content.

Every failure is a :class:`~orchestrator.vulns.errors.FeedError` that names the file and what to
download instead, never a traceback. URLs are fetched with certificate verification (the default SSL
context) and only when the operator names one.
"""

from __future__ import annotations

import io
import json
import ssl
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.vulns.debian_tracker import looks_like_tracker, parse_tracker
from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.feeds import Feed, Feeds
from orchestrator.vulns.kev import looks_like_kev, parse_kev
from orchestrator.vulns.osv import OsvRecord, parse_record

Fetch = Callable[[str], bytes]
URL_TIMEOUT = 120.0
MAX_DOWNLOAD = 2 * 1024**3  # bytes; the largest OSV all.zip is far below


def fetch_https(url: str) -> bytes:
    """GET ``url`` over verified TLS; errors become FeedError naming the URL."""
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT, context=context) as response:
            body: bytes = response.read(MAX_DOWNLOAD + 1)  # urlopen's response is untyped (Any)
            return body
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FeedError(url, f"download failed: {reason}",
                        fix="check the URL and the network, or download the file and give its path") from None  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def load_feeds(sources: Sequence[str | Path], *, releases: Collection[str] | None = None,
               fetch: Fetch = fetch_https, now: Callable[[], str] = _now) -> Feeds:  # fmt: skip
    """One :class:`Feed` per source. ``releases`` (Debian codenames) keeps only those tracker entries."""
    if not sources:
        raise FeedError("(no source)", "no feed given")
    return Feeds(tuple(load_feed(s, releases=releases, fetch=fetch, now=now) for s in sources))


def load_feed(source: str | Path, *, releases: Collection[str] | None = None, fetch: Fetch = fetch_https,
              now: Callable[[], str] = _now) -> Feed:  # fmt: skip
    text = str(source)
    loaded_at = now()
    if text.startswith("http://"):
        raise FeedError(text, "plain http is refused", fix="use the https:// URL of the feed")
    if text.startswith("https://"):
        data = fetch(text)
        if len(data) > MAX_DOWNLOAD:
            raise FeedError(text, f"larger than {MAX_DOWNLOAD} bytes", fix="download it and give the file")
        if data[:4] == b"PK\x03\x04":
            return _osv_feed(text, loaded_at, _zip_records(text, io.BytesIO(data)))
        return _json_feed(text, loaded_at, _decode(text, data), "", releases)
    path = Path(text).expanduser()
    if path.is_dir():
        return _osv_feed(text, loaded_at, _dir_records(path))
    if not path.is_file():
        raise FeedError(text, "no such file or directory")
    if zipfile.is_zipfile(path):
        return _osv_feed(text, loaded_at, _zip_records(text, path))
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return _json_feed(text, loaded_at, _decode(text, _read(path)), mtime, releases)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FeedError(
            str(path), f"cannot read it ({exc.strerror or exc})", fix="check its permissions"
        ) from None


def _decode(origin: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise FeedError(origin, "not JSON text (binary content)") from None
    except json.JSONDecodeError as exc:
        raise FeedError(
            origin, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _json_feed(origin: str, loaded_at: str, data: Any, mtime: str, releases: Collection[str] | None) -> Feed:
    if looks_like_kev(data):
        kev = parse_kev(data, origin=origin)
        return Feed("kev", origin, loaded_at, kev.version, kev=kev)
    if isinstance(data, dict) and "id" in data:
        return _osv_feed(origin, loaded_at, [parse_record(data, origin=origin)])
    if isinstance(data, list) and data and all(isinstance(d, dict) and "id" in d for d in data):
        return _osv_feed(
            origin, loaded_at, [parse_record(d, origin=f"{origin}[{i}]") for i, d in enumerate(data)]
        )
    if looks_like_tracker(data):
        return Feed(
            "debian-tracker",
            origin,
            loaded_at,
            mtime,
            tracker=parse_tracker(data, origin=origin, releases=releases),
        )
    raise FeedError(origin, "not a feed patchwave reads: expected an OSV record (or a list of them), "
                            "the Debian Security Tracker JSON or the CISA KEV catalog")  # fmt: skip


def _osv_feed(origin: str, loaded_at: str, records: Iterable[OsvRecord]) -> Feed:
    records = tuple(records)
    if not records:
        raise FeedError(origin, "holds no OSV record (*.json)")
    return Feed("osv", origin, loaded_at, max(r.modified for r in records), osv=records)


def _dir_records(path: Path) -> list[OsvRecord]:
    return [parse_record(_decode(str(p), _read(p)), origin=str(p)) for p in sorted(path.rglob("*.json"))]


def _zip_records(origin: str, file: Path | io.BytesIO) -> list[OsvRecord]:
    try:
        with zipfile.ZipFile(file) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".json"))
            return [
                parse_record(_decode(f"{origin}:{n}", archive.read(n)), origin=f"{origin}:{n}") for n in names
            ]
    except (zipfile.BadZipFile, OSError) as exc:
        raise FeedError(
            origin, f"not a readable zip archive ({exc})", fix="download the all.zip again"
        ) from None
