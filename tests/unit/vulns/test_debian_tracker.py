"""The Debian Security Tracker JSON: statuses, fixed versions, urgencies, nodsa, per release."""

from __future__ import annotations

import pytest

from orchestrator.vulns.debian_tracker import (
    TrackerEntry,
    affects,
    compact,
    looks_like_tracker,
    parse_tracker,
)
from orchestrator.vulns.errors import FeedError
from tests.unit.vulns.conftest import data

VUNNEL = "debian-tracker/vunnel-excerpt.json"
OSV_DEV = "debian-tracker/osv-dev-excerpt.json"


def entries(relative: str, releases: set[str] | None = None) -> dict[tuple[str, str, str], TrackerEntry]:
    return {
        (e.package, e.cve, e.release): e
        for e in parse_tracker(data(relative), origin=relative, releases=releases)
    }


def test_every_release_of_every_cve_is_read() -> None:
    found = entries(VUNNEL)
    assert (
        len(found) == 4 * 4 + 5
    )  # four 4-release issues, chromium's five; chromium-browser has "releases": []
    assert found[("prototypejs", "CVE-2008-7220", "buster")] == TrackerEntry(
        "prototypejs", "CVE-2008-7220", "buster", "resolved", "1.6.0.2-1", "high**"
    )
    assert found[("chromium", "CVE-2022-0456", "stretch")].status == "open"
    assert found[("chromium", "CVE-2022-0456", "bookworm")].fixed_version == "98.0.4758.80-1"


def test_a_release_filter_keeps_only_that_release() -> None:
    found = entries(OSV_DEV, {"bookworm"})
    assert {k[2] for k in found} == {"bookworm"}
    assert set(found) == {("busybox", "CVE-2018-1000500", "bookworm"), ("apparmor", "CVE-2014-1424", "bookworm"),
                          ("apparmor", "CVE-2016-1585", "bookworm"), ("apparmor", "CVE-2017-6507", "bookworm")}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "installed", "expected"),
    [
        (("busybox", "CVE-2018-1000500", "bookworm"), "1:1.35.0-4", (True, "")),  # open: no fix
        (("apparmor", "CVE-2014-1424", "bookworm"), "3.0.8-3", (False, "")),  # fixed "0": never affected
        (("apparmor", "CVE-2017-6507", "bookworm"), "3.0.8-3", (False, "2.11.0-3")),  # fixed long before
        (("apparmor", "CVE-2017-6507", "bookworm"), "2.10.95-1", (True, "2.11.0-3")),
        (("apparmor", "CVE-2016-1585", "trixie"), "3.0.12-1", (False, "3.0.12-1")),
    ],
)
def test_affects(key: tuple[str, str, str], installed: str, expected: tuple[bool, str]) -> None:
    assert affects(entries(OSV_DEV)[key], installed) == expected


def test_undetermined_is_not_reported_and_nodsa_becomes_a_note() -> None:
    assert affects(TrackerEntry("x", "CVE-2024-1", "bookworm", "undetermined"), "1.0") == (False, "")
    entry = TrackerEntry("x", "CVE-2024-1", "bookworm", "open", nodsa="Minor issue", nodsa_reason="postponed")
    assert entry.note == "no DSA: Minor issue (postponed)"


def test_the_compact_form_reads_back_the_same() -> None:
    every = parse_tracker(data(VUNNEL), origin=VUNNEL)
    assert parse_tracker(compact(every), origin="cache") == every


def test_recognised_and_refused_shapes() -> None:
    assert looks_like_tracker(data(VUNNEL)) and looks_like_tracker(data(OSV_DEV))
    assert not looks_like_tracker(data("kev/known_exploited_vulnerabilities.json"))
    assert not looks_like_tracker(data("osv/debian/DSA-3029-1.json"))
    with pytest.raises(FeedError, match="package 'openssl'"):
        parse_tracker({"openssl": ["CVE-2024-1"]}, origin="tracker.json")
    with pytest.raises(FeedError, match="top level"):
        parse_tracker([], origin="tracker.json")
