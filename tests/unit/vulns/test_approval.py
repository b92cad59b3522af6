"""Baselines: which pending updates a run may install (the rules of orchestrator.vulns.approval, in order)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from orchestrator.config.assess import BaselineSettings
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.model import UpdateMode
from orchestrator.vulns.approval import approve, fixes
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.risk import VmRisk, order_key, risk_of

TODAY = date(2026, 12, 4)
DAY = 86400
OPENSSL = PendingUpdate("openssl", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", security=True)
LIBSSL = PendingUpdate("libssl3", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", security=True)
TZDATA = PendingUpdate("tzdata", "2025a-0+deb12u1", "2025b-0+deb12u1", security=False)
KERNEL = PendingUpdate("linux-image-amd64", "6.1.123-1", "6.1.128-1", security=True)
DEMO = PendingUpdate("demo-app", "1.0", "1.1", security=False)
PENDING = (OPENSSL, LIBSSL, TZDATA, KERNEL, DEMO)


def finding(cve: str, package: str, fixed: str, *, severity: str = "important", kev: bool = False,
            published: str = "2026-11-01", score: float | None = 7.5, fix: bool = True) -> Finding:  # fmt: skip
    return Finding(cve=cve, package=package, installed="", fixed_version=fixed, severity=severity, cvss_score=score,
                   kev=kev, kev_due="", sources=("osv",), published=published, days_since_release=None,
                   fix_available=fix)  # fmt: skip


FINDINGS = (
    finding("CVE-2026-0001", "openssl", "3.0.17-1~deb12u1", severity="important", published="2026-11-01"),
    finding("CVE-2026-0002", "libssl3", "3.0.17-1~deb12u1", severity="moderate", published="2026-12-02"),
    finding(
        "CVE-2099-0001", "demo-app", "1.1", severity="critical", kev=True, published="2026-12-03", score=9.8
    ),
    finding("CVE-2026-0003", "bash", "5.2.15-2+deb12u1", severity="low", fix=False),
)
BASELINE = BaselineSettings(name="deb", os="debian", classification="security", min_severity="important",
                            approve_after_s=7 * DAY, rejected=("linux-image-*",), holds=("postgresql-*",))  # fmt: skip


def decide(
    baseline: BaselineSettings | None, pending=PENDING, found=FINDINGS, **kw
) -> dict[str, tuple[bool, str]]:
    approval = approve(baseline, pending, found, family="debian", today=TODAY, **kw)
    return {d.update.name: (d.approved, d.reason) for d in approval.decisions}


def test_security_baseline_approves_old_enough_fixes_and_kev_fixes_at_once() -> None:
    got = decide(BASELINE)
    assert got["openssl"] == (True, "approved by the baseline's rules")  # important, released 33 days ago
    assert got["libssl3"] == (False, "moderate is below min_severity 'important'")
    assert got["tzdata"] == (False, "not in classification 'security'")
    assert got["linux-image-amd64"] == (False, "rejected")
    # not from a security archive, but it fixes a KEV CVE: security, and approve_kev = immediately
    assert got["demo-app"] == (True, "fixes a known-exploited CVE")


def test_approve_after_counts_days_since_the_newest_advisory_the_update_fixes() -> None:
    young = replace(BASELINE, min_severity="")
    assert decide(young)["libssl3"] == (False, "released 2d ago (approve_after 7d)")
    assert decide(replace(young, approve_after_s=2 * DAY))["libssl3"][0]
    # no advisory dates it: the day patchwave first saw the candidate pending, else unknown
    no_finding = (PendingUpdate("curl", "7.88.1-10", "7.88.1-10+deb12u8", security=True),)
    assert decide(young, no_finding, ()) == {
        "curl": (False, "release date unknown (approve_after 7d needs it)")
    }
    seen = {("curl", "7.88.1-10+deb12u8"): "2026-11-20T06:00:00+00:00"}
    assert decide(young, no_finding, (), first_seen=seen)["curl"] == (
        True,
        "approved by the baseline's rules",
    )


def test_holds_then_rejected_then_approved_lists_win_over_the_rules() -> None:
    held = replace(BASELINE, holds=("openssl",), approved=("openssl", "tzdata=2025b-0+deb12u1"))
    got = decide(held)
    assert got["openssl"] == (False, "held")  # a hold wins over an explicit approval
    assert got["tzdata"] == (True, "approved by name")  # not security, but named with its candidate version
    other_version = decide(replace(BASELINE, approved=("tzdata=2024a-0+deb12u1",)))
    assert other_version["tzdata"][0] is False
    assert decide(replace(BASELINE, rejected=("demo-app=1.1",)))["demo-app"] == (False, "rejected")


def test_kev_fixes_wait_for_approve_kev_when_it_is_a_duration() -> None:
    assert decide(replace(BASELINE, approve_kev_s=7 * DAY))["demo-app"] == (
        False,
        "released 1d ago (approve_kev 7d)",
    )
    assert decide(replace(BASELINE, approve_kev_s=DAY))["demo-app"][0]


@pytest.mark.parametrize(("classification", "approved"), [
    ("security", {"openssl", "demo-app"}),
    ("bugfix", {"openssl", "demo-app", "tzdata"}),  # Debian: every update of a stable release is a fix
    ("all", {"openssl", "demo-app", "tzdata"}),
])  # fmt: skip
def test_classifications(classification: str, approved: set[str]) -> None:
    baseline = replace(
        BASELINE,
        classification=classification,
        min_severity="",
        approve_after_s=0,
        rejected=("linux-*", "libssl3"),
    )
    got = decide(baseline)
    assert {name for name, (ok, _) in got.items() if ok} == approved


def test_bugfix_on_rpm_needs_an_advisory() -> None:
    plain = PendingUpdate("vim-minimal", "2:9.0.1-1.el9", "2:9.0.2-1.el9", security=False, arch="x86_64")
    errata = replace(plain, name="tzdata", advisories=("RHBA-2026:0001",), arch="noarch")
    baseline = BaselineSettings(name="rhel", os="rhel", classification="bugfix")
    approval = approve(baseline, (plain, errata), (), family="rhel", today=TODAY)
    assert [(d.update.name, d.approved) for d in approval.decisions] == [
        ("vim-minimal", False),
        ("tzdata", True),
    ]
    assert approval.pins == ("tzdata-2:9.0.2-1.el9.noarch",)  # NEVRA with the epoch, as dnf takes it


def test_without_a_baseline_the_groups_policy_decides() -> None:
    assert all(ok for ok, _ in decide(None).values())
    security = decide(None, mode=UpdateMode.SECURITY)
    assert {n for n, (ok, _) in security.items() if ok} == {"openssl", "libssl3", "linux-image-amd64"}
    pinned = decide(None, mode=UpdateMode.PINNED, pins=("tzdata=2025b-0+deb12u1", "not a pin"))
    assert {n for n, (ok, _) in pinned.items() if ok} == {"tzdata"}


def test_pins_and_the_cves_the_approved_set_fixes() -> None:
    approval = approve(BASELINE, PENDING, FINDINGS, family="debian", today=TODAY)
    assert approval.pins == ("openssl=3.0.17-1~deb12u2", "demo-app=1.1")
    demo = next(d for d in approval.decisions if d.update.name == "demo-app")
    assert (demo.severity, demo.kev, demo.released, demo.cves) == (
        "critical",
        True,
        "2026-12-03",
        ("CVE-2099-0001",),
    )
    fixed = fixes(FINDINGS, [d.update for d in approval.approved], "debian")
    assert [f.cve for f in fixed] == ["CVE-2026-0001", "CVE-2099-0001"]  # not libssl3's: not approved
    assert fixes(FINDINGS, [replace(OPENSSL, candidate="3.0.16-1")], "debian") == ()  # below the fix


def test_risk_counts_only_what_a_pending_update_fixes_and_orders_kev_severity_cvss_exposure() -> None:
    risk = risk_of(FINDINGS)
    assert risk == VmRisk(kev=1, severity="critical", cvss=9.8, fixable=3)
    assert risk_of([FINDINGS[3]]) == VmRisk()  # no fix available: no urgency
    keys = {
        "kev": order_key(VmRisk(kev=1, severity="moderate", cvss=5.0, fixable=1), exposed=False),
        "critical": order_key(VmRisk(severity="critical", cvss=9.1, fixable=1), exposed=False),
        "critical-exposed": order_key(VmRisk(severity="critical", cvss=9.1, fixable=1), exposed=True),
        "critical-9.8": order_key(VmRisk(severity="critical", cvss=9.8, fixable=1), exposed=False),
        "nothing-exposed": order_key(None, exposed=True),
        "nothing": order_key(None, exposed=False),
    }
    assert sorted(keys, key=keys.__getitem__) == ["kev", "critical-9.8", "critical-exposed", "critical",
                                                  "nothing-exposed", "nothing"]  # fmt: skip
