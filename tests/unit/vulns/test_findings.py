"""One machine's findings from every source, deduplicated and ordered: KEV first, then severity."""

from __future__ import annotations

import json
from datetime import date

from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.guests.packages.zypper import Zypper
from orchestrator.vulns.feeds import Feed, Feeds
from orchestrator.vulns.findings import Finding, InstalledPackage, assess, installed_from, sort_key
from orchestrator.vulns.osv import parse_record
from providers.base import ExecResult
from tests.unit.vulns.conftest import DATA, LOADED_AT, data, os_release

TODAY = date(2026, 1, 5)
UBUNTU = os_release(ID="ubuntu", VERSION_ID="22.04", ID_LIKE="debian", PRETTY_NAME="Ubuntu 22.04.3 LTS")
DEBIAN = os_release(ID="debian", VERSION_ID="12", PRETTY_NAME="Debian GNU/Linux 12 (bookworm)")
ALMA = os_release(ID="almalinux", VERSION_ID="9.2", ID_LIKE="rhel centos fedora")
SLES = os_release(
    ID="sles", VERSION_ID="15.5", ID_LIKE="suse", PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
)


def by_key(findings: tuple[Finding, ...]) -> dict[tuple[str, str], Finding]:
    return {(f.cve, f.package): f for f in findings}


def test_ubuntu_guest_with_vulnerable_openssl_and_libc6(all_feeds: Feeds) -> None:
    installed = installed_from(
        {"libssl3": "3.0.2-0ubuntu1.10", "openssl": "3.0.2-0ubuntu1.10", "libc6": "2.35-0ubuntu3.1",
         "libc-bin": "2.35-0ubuntu3.1", "bash": "5.1-6ubuntu1"},
        {"libssl3": "openssl", "libc6": "glibc", "libc-bin": "glibc"},
    )  # fmt: skip
    pending = [PendingUpdate("libc6", "2.35-0ubuntu3.1", "2.35-0ubuntu3.4", security=True)]
    findings = assess(UBUNTU, installed, pending, all_feeds, today=TODAY)
    assert [(f.cve, f.package) for f in findings] == [
        ("CVE-2023-4911", "libc-bin"), ("CVE-2023-4911", "libc6"),  # KEV first
        ("CVE-2024-6119", "libssl3"), ("CVE-2024-6119", "openssl"),
    ]  # fmt: skip
    libc6 = by_key(findings)[("CVE-2023-4911", "libc6")]
    assert libc6 == Finding(
        cve="CVE-2023-4911", package="libc6", installed="2.35-0ubuntu3.1", fixed_version="2.35-0ubuntu3.4",
        severity="important", cvss_score=7.8, kev=True, kev_due="2023-12-12", sources=("UBUNTU-CVE-2023-4911",),
        published="2023-10-03", days_since_release=(TODAY - date(2023, 10, 3)).days, fix_available=True,
        source_package="glibc",
    )  # fmt: skip
    assert by_key(findings)[("CVE-2023-4911", "libc-bin")].fix_available is False  # no candidate pending
    ssl = by_key(findings)[("CVE-2024-6119", "libssl3")]
    assert (ssl.severity, ssl.fixed_version, ssl.kev, ssl.sources) == (
        "moderate",
        "3.0.2-0ubuntu1.18",
        False,
        ("USN-6986-1",),
    )


def test_ubuntu_guest_already_fixed_has_no_findings(all_feeds: Feeds) -> None:
    installed = installed_from({"libssl3": "3.0.2-0ubuntu1.18", "libc6": "2.35-0ubuntu3.4"},
                               {"libssl3": "openssl", "libc6": "glibc"})  # fmt: skip
    assert assess(UBUNTU, installed, [], all_feeds, today=TODAY) == ()


def test_binary_names_match_without_source_information(all_feeds: Feeds) -> None:
    """Without dpkg's source names, OSV's binaries lists still tie libc6 to glibc."""
    findings = assess(UBUNTU, installed_from({"libc6": "2.35-0ubuntu3.1"}), [], all_feeds, today=TODAY)
    assert [(f.cve, f.package, f.fixed_version) for f in findings] == [
        ("CVE-2023-4911", "libc6", "2.35-0ubuntu3.4")
    ]


def test_without_a_distribution_rating_the_cvss_score_rates(all_feeds: Feeds) -> None:
    raw = data("osv/ubuntu/UBUNTU-CVE-2023-4911.json")
    for affected in raw["affected"]:
        del affected["ecosystem_specific"]["ubuntu_priority"]
    feeds = Feeds((Feed("osv", "x", LOADED_AT, "", osv=(parse_record(raw, origin="x"),)),))
    (finding,) = assess(UBUNTU, installed_from({"libc6": "2.35-0ubuntu3.1"}), [], feeds, today=TODAY)
    assert (finding.severity, finding.cvss_score, finding.kev) == (
        "important",
        7.8,
        False,
    )  # no KEV feed given


def test_debian_12_guest_from_the_security_tracker(all_feeds: Feeds) -> None:
    installed = installed_from(
        {"busybox": "1:1.35.0-4", "apparmor": "3.0.8-3", "libapparmor1": "3.0.8-3", "chromium": "97.0.4692.99-1",
         "nginx": "1.2.1-2.2", "openssl": "3.0.11-1~deb12u2", "libc6": "2.36-9+deb12u4"},
        {"libapparmor1": "apparmor", "libc6": "glibc"},
    )  # fmt: skip
    pending = [PendingUpdate("chromium", "97.0.4692.99-1", "98.0.4758.102-1", security=True)]
    findings = assess(DEBIAN, installed, pending, all_feeds, today=TODAY)
    assert [(f.cve, f.package, f.fixed_version, f.fix_available) for f in findings] == [
        ("CVE-2016-1585", "apparmor", "", False),  # open, "unimportant": low
        ("CVE-2016-1585", "libapparmor1", "", False),
        ("CVE-2018-1000500", "busybox", "", False),
        ("CVE-2022-0456", "chromium", "98.0.4758.80-1", True),  # "not yet assigned": unrated, but fixable
    ]  # fmt: skip
    assert {f.severity for f in findings} == {"low", "unrated"}
    assert all(f.sources == ("debian-tracker",) and f.days_since_release is None for f in findings)
    # DSA-3029-1 is for Debian 7: an nginx of that version on Debian 12 is not matched against it.
    assert not any(f.package == "nginx" for f in findings)


def test_almalinux_guest_osv_and_dnf_advisory_are_one_finding(all_feeds: Feeds) -> None:
    installed = installed_from({"glibc": "2.34-60.el9_2.3", "glibc-common": "2.34-60.el9_2.3",
                                "openssl-libs": "1:3.0.7-27.el9", "openssl": "1:3.5.1-7.el9_7"})  # fmt: skip
    pending = [PendingUpdate("glibc", "2.34-60.el9_2.3", "2.34-83.el9_3.7", security=True, severity="Important",
                             advisories=("ALSA-2023:5453",), cves=("CVE-2023-4911",), arch="x86_64")]  # fmt: skip
    findings = assess(ALMA, installed, pending, all_feeds, today=TODAY)
    glibc = by_key(findings)[("CVE-2023-4911", "glibc")]
    assert (glibc.kev, glibc.fixed_version, glibc.fix_available, glibc.sources, glibc.severity) == (
        True, "2.34-83.el9_3.7", True, ("ALSA-2023:5453",), "important")  # fmt: skip
    assert (glibc.published, glibc.days_since_release) == ("2023-10-05", (TODAY - date(2023, 10, 5)).days)
    assert by_key(findings)[("CVE-2023-4911", "glibc-common")].fixed_version == "2.34-60.el9_2.7"
    assert findings[0].kev and not any(f.package == "openssl" for f in findings)  # 1:3.5.1-7.el9_7 is the fix
    ssl = [f for f in findings if f.package == "openssl-libs"]
    assert len(ssl) == 12 and {f.fixed_version for f in ssl} == {"1:3.5.1-7.el9_7"}


def test_suse_guest_from_zypper_patches(all_feeds: Feeds) -> None:
    case = DATA.parent / "guests" / "zypper" / "list-updates-local"
    meta = json.loads((case / "case.json").read_text())
    pending = Zypper().parse_updates(ExecResult(meta["exit_code"], (case / "stdout.txt").read_text(), ""))
    installed = installed_from({u.name: u.current for u in pending})
    findings = assess(SLES, installed, pending, all_feeds, today=TODAY)
    assert [(f.cve, f.package, f.installed, f.fixed_version, f.severity, f.fix_available, f.sources) for f in findings] == [
        ("CVE-2026-10001", "pw-demo", "1.0-1", "1.1-1", "important", True, ("PWSA-2026:0001",)),
        ("CVE-2026-10002", "pw-demo", "1.0-1", "1.1-1", "important", True, ("PWSA-2026:0001",)),
    ]  # fmt: skip


def test_no_feed_for_the_distribution_leaves_only_native_findings(all_feeds: Feeds) -> None:
    fedora = os_release(ID="fedora", VERSION_ID="40")
    pending = [
        PendingUpdate(
            "sudo",
            "1.9.15-1.fc40",
            "1.9.15-2.fc40",
            True,
            "Important",
            ("FEDORA-2024-1",),
            ("CVE-2021-3156",),
        )
    ]
    findings = assess(fedora, [InstalledPackage("sudo", "1.9.15-1.fc40")], pending, all_feeds, today=TODAY)
    assert [(f.cve, f.kev, f.fix_available) for f in findings] == [("CVE-2021-3156", True, True)]


def test_order_is_deterministic() -> None:
    def f(cve: str, sev: str, score: float | None, kev: bool) -> Finding:
        return Finding(cve, "p", "1", "2", sev, score, kev, "", (), "", None, False)

    shuffled = [f("CVE-1", "low", None, False), f("CVE-2", "critical", 9.8, False), f("CVE-3", "low", 2.0, True),
                f("CVE-4", "critical", 10.0, False), f("CVE-5", "unrated", None, False)]  # fmt: skip
    assert [x.cve for x in sorted(shuffled, key=sort_key)] == ["CVE-3", "CVE-4", "CVE-2", "CVE-1", "CVE-5"]
