"""Loading what the operator downloaded: files, directories, all.zip, URLs; clear errors otherwise."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.feeds import Feeds
from orchestrator.vulns.loading import load_feed, load_feeds
from tests.unit.vulns.conftest import DATA, LOADED_AT


def now() -> str:
    return LOADED_AT


def all_zip(tmp_path: Path) -> Path:
    """An ``all.zip`` as the OSV exports lay it out: one <id>.json per record at the top."""
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted((DATA / "osv").rglob("*.json")):
            archive.write(file, file.name)
    return path


def test_each_kind_is_detected(all_feeds: Feeds) -> None:
    kinds = [(f.kind, Path(f.source).name, f.count) for f in all_feeds]
    assert kinds == [("osv", "osv", 5), ("debian-tracker", "vunnel-excerpt.json", 21),
                     ("debian-tracker", "osv-dev-excerpt.json", 20), ("kev", "known_exploited_vulnerabilities.json", 4)]  # fmt: skip
    assert all(f.loaded_at == LOADED_AT for f in all_feeds)


def test_a_feed_carries_its_own_date() -> None:
    osv = load_feed(DATA / "osv", now=now)
    assert osv.version == "2026-04-27T14:11:36Z"  # the newest "modified" (USN-6986-1)
    kev = load_feed(DATA / "kev" / "known_exploited_vulnerabilities.json", now=now)
    assert kev.version == "2025.08.25"
    tracker = load_feed(DATA / "debian-tracker" / "osv-dev-excerpt.json", now=now)
    assert tracker.version  # the file's modification time: the JSON has no date of its own


def test_a_single_record_a_zip_and_a_directory_read_the_same_records(tmp_path: Path) -> None:
    directory = load_feed(DATA / "osv", now=now)
    archive = load_feed(all_zip(tmp_path), now=now)
    single = load_feed(DATA / "osv" / "ubuntu" / "USN-6986-1.json", now=now)
    assert sorted(r.id for r in archive.osv) == sorted(r.id for r in directory.osv)
    assert [r.id for r in single.osv] == ["USN-6986-1"]


def test_the_tracker_can_be_cut_to_the_fleets_releases() -> None:
    feed = load_feed(DATA / "debian-tracker" / "vunnel-excerpt.json", releases={"bookworm"}, now=now)
    assert [(e.package, e.release) for e in feed.tracker] == [("chromium", "bookworm")]


def test_urls_are_fetched_over_https_only(tmp_path: Path) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return (
            all_zip(tmp_path).read_bytes()
            if url.endswith(".zip")
            else (DATA / "kev" / "known_exploited_vulnerabilities.json").read_bytes()
        )

    feeds = load_feeds(
        ["https://example.invalid/Ubuntu/all.zip", "https://example.invalid/kev.json"], fetch=fetch, now=now
    )
    assert [f.kind for f in feeds] == ["osv", "kev"] and len(fetched) == 2
    with pytest.raises(FeedError, match="plain http is refused"):
        load_feed("http://example.invalid/kev.json", fetch=fetch)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON (line 1, column 2"),
        (b"\xc3\x28", "not JSON text"),
        (b'{"title": "something else"}', "not a feed patchwave reads"),
        (b"[1, 2]", "not a feed patchwave reads"),
    ],
)
def test_bad_files_say_what_to_download_instead(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "feed.json"
    path.write_bytes(content)
    with pytest.raises(FeedError) as info:
        load_feed(path)
    text = info.value.render()
    assert text.startswith(f"feed error: {path}: ") and message in text
    assert "security-tracker.debian.org/tracker/data/json" in text and "all.zip" in text


def test_missing_empty_and_broken_sources(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no such file"):
        load_feed(tmp_path / "absent.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeedError, match="holds no OSV record"):
        load_feed(tmp_path / "empty")
    broken = tmp_path / "all.zip"
    broken.write_bytes(all_zip(tmp_path).read_bytes()[:200])
    with pytest.raises(FeedError):
        load_feed(broken)
    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "x.json").write_text('{"catalogVersion": "1", "vulnerabilities": []}')
    with pytest.raises(FeedError, match="not an OSV record"):
        load_feed(tmp_path / "osv")
    with pytest.raises(FeedError, match="no feed given"):
        load_feeds([])


def test_every_fixture_has_recorded_provenance() -> None:
    sources = (DATA / "SOURCES.md").read_text()
    files = [p for p in DATA.rglob("*") if p.is_file() and p.name != "SOURCES.md"]
    assert len(files) >= 10
    for path in files:
        name = path.relative_to(DATA).as_posix()
        assert f"`{name}`" in sources or f"`{path.name}`" in sources, name
