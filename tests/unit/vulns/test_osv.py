"""OSV records from Ubuntu, AlmaLinux and Debian: what is read, and matching installed versions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.osv import Affected, OsvRecord, affected_by, compact, is_withdrawn, parse_record
from tests.unit.vulns.conftest import DATA, data

FILES = sorted(p.relative_to(DATA).as_posix() for p in (DATA / "osv").rglob("*.json"))


def record(relative: str) -> OsvRecord:
    return parse_record(data(relative), origin=relative)


def entry(rec: OsvRecord, ecosystem: str, name: str) -> Affected:
    return next(a for a in rec.affected if a.ecosystem == ecosystem and a.name == name)


def test_ubuntu_notice_names_its_cve_upstream_and_rates_it_per_release() -> None:
    usn = record("osv/ubuntu/USN-6986-1.json")
    assert usn.cves == ("CVE-2024-6119",)  # from upstream UBUNTU-CVE-2024-6119
    jammy = entry(usn, "Ubuntu:22.04:LTS", "openssl")
    assert jammy.binaries == ("libssl3", "openssl")
    assert jammy.cve_ratings == (("CVE-2024-6119", "medium"),)
    assert usn.published == "2024-09-03T14:33:38Z" and usn.modified == "2026-04-27T14:11:36Z"


def test_ubuntu_cve_record_carries_a_vector_and_a_priority() -> None:
    rec = record("osv/ubuntu/UBUNTU-CVE-2023-4911.json")
    assert rec.cves == ("CVE-2023-4911",)
    assert rec.vectors == ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",)
    jammy = entry(rec, "Ubuntu:22.04:LTS", "glibc")
    assert jammy.rating == "high" and "libc6" in jammy.binaries and "locales" in jammy.binaries


def test_almalinux_advisory_lists_binary_rpms_and_rates_by_summary() -> None:
    rec = record("osv/almalinux/ALSA-2026-1473.json")
    assert rec.rating == "Important"
    assert [a.name for a in rec.affected] == ["openssl", "openssl-devel", "openssl-libs", "openssl-perl"]
    assert len(rec.cves) == 12 and rec.cves[0] == "CVE-2025-11187"
    assert {a.ecosystem for a in rec.affected} == {"AlmaLinux:9"}


def test_debian_advisory_names_its_cve_as_alias() -> None:
    rec = record("osv/debian/DSA-3029-1.json")
    assert rec.cves == ("CVE-2014-3616",)
    assert entry(rec, "Debian:7", "nginx").ranges[0].events[-1].version == "1.2.1-2.2+wheezy3"


@pytest.mark.parametrize(
    ("installed", "affected", "fixed"),
    [
        ("3.0.2-0ubuntu1.10", True, "3.0.2-0ubuntu1.18"),
        ("3.0.2-0ubuntu1.17", True, "3.0.2-0ubuntu1.18"),
        ("3.0.2-0ubuntu1.18", False, ""),
        ("3.0.2-0ubuntu1.19", False, ""),
        ("3.0.2-0ubuntu1.11", True, "3.0.2-0ubuntu1.18"),  # in no versions list, still in the range
    ],
)
def test_dpkg_ranges(installed: str, affected: bool, fixed: str) -> None:
    jammy = entry(record("osv/ubuntu/USN-6986-1.json"), "Ubuntu:22.04:LTS", "openssl")
    assert affected_by(jammy, installed, "dpkg") == (affected, fixed)


@pytest.mark.parametrize(
    ("installed", "affected"),
    [("1:3.0.7-27.el9", True), ("1:3.5.1-6.el9_7", True), ("1:3.5.1-7.el9_7", False), ("1:3.5.1-7.el9_7.1", False),
     ("3.5.1-8.el9_7", True)],  # no epoch = epoch 0, below 1:
)  # fmt: skip
def test_rpm_ranges_with_epochs(installed: str, affected: bool) -> None:
    libs = entry(record("osv/almalinux/ALSA-2026-1473.json"), "AlmaLinux:9", "openssl-libs")
    assert affected_by(libs, installed, "rpm") == (affected, "1:3.5.1-7.el9_7" if affected else "")


def test_last_affected_and_limit_close_a_range() -> None:
    glibc = entry(record("osv/almalinux/ALSA-2023-5453.json"), "AlmaLinux:9", "glibc")
    events = glibc.ranges[0].events
    last = dataclasses.replace(glibc, ranges=(dataclasses.replace(glibc.ranges[0], events=(
        events[0], dataclasses.replace(events[1], kind="last_affected")
    )),))  # fmt: skip
    assert affected_by(last, "2.34-60.el9_2.7", "rpm") == (True, "")
    assert affected_by(last, "2.34-60.el9_2.8", "rpm") == (False, "")


def test_git_ranges_are_ignored_and_unreadable_versions_never_match() -> None:
    jammy = entry(record("osv/ubuntu/USN-6986-1.json"), "Ubuntu:22.04:LTS", "openssl")
    git = dataclasses.replace(jammy, ranges=(dataclasses.replace(jammy.ranges[0], type="GIT"),), versions=())
    assert affected_by(git, "3.0.2-0ubuntu1.10", "dpkg") == (False, "")
    assert affected_by(jammy, "not a version!", "dpkg") == (False, "")


def test_withdrawn_records_are_recognised() -> None:
    raw = data("osv/debian/DSA-3029-1.json")
    assert not is_withdrawn(parse_record(raw, origin="x"))
    assert is_withdrawn(parse_record({**raw, "withdrawn": "2024-01-01T00:00:00Z"}, origin="x"))
    assert not is_withdrawn(parse_record({**raw, "withdrawn": "0001-01-01T00:00:00Z"}, origin="x"))


@pytest.mark.parametrize("relative", FILES)
def test_the_compact_form_reads_back_the_same(relative: str) -> None:
    rec = record(relative)
    assert parse_record(compact(rec), origin="cache") == dataclasses.replace(rec)
    assert "details" not in compact(rec) and "references" not in compact(rec)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "not an OSV record"),
        ({"summary": "no id"}, "not an OSV record"),
        ({"id": "X-1", "affected": [{"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]},
         "exactly one of"),
        ({"id": "X-1", "affected": ["not an object"]}, "not in the OSV schema"),
    ],
)  # fmt: skip
def test_bad_records_name_the_file(raw: object, message: str) -> None:
    with pytest.raises(FeedError) as info:
        parse_record(raw, origin=str(Path("feeds") / "bad.json"))
    assert message in str(info.value) and "bad.json" in str(info.value)
