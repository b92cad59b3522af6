"""Pinned promotion, the pure part: the pin set from what the first ring installed, and what a later-ring
VM installs from it (exact pins) and holds back (with the reason)."""

from __future__ import annotations

from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.promotion.pins import (
    Contribution,
    HeldBack,
    PinEntry,
    Promotion,
    compute_pin_set,
    os_key,
    os_label,
    pin_text,
    promote,
)

DEB12 = "debian:debian:12"
EL9 = "rhel:rocky:9.3"


def update(name: str, current: str, candidate: str, arch: str = "") -> PendingUpdate:
    return PendingUpdate(name, current, candidate, security=False, arch=arch)


def test_the_os_key_is_family_id_and_release() -> None:
    info = OsInfo(id="debian", version_id="12", family="debian", pretty_name="Debian GNU/Linux 12")
    assert os_key(info) == DEB12 and os_label(DEB12) == "debian 12"


def test_the_pin_set_is_what_the_contributors_installed_per_os_release() -> None:
    tested = [
        Contribution("vm:a", DEB12, {"demo-app": "1.1", "openssl": "3.0.15"}),
        Contribution("vm:b", DEB12, {"demo-app": "1.1"}),
        Contribution("vm:c", EL9, {"bash": "5.1.8-9.el9"}),
        Contribution("vm:d", DEB12, {}),  # nothing to do: covers its release, pins nothing
    ]
    assert compute_pin_set(tested) == (
        PinEntry(DEB12, "demo-app", "1.1", 2),
        PinEntry(DEB12, "openssl", "3.0.15", 1),
        PinEntry(EL9, "bash", "5.1.8-9.el9", 1),
    )


def test_a_conflict_takes_the_version_most_contributors_run_then_the_lower_one() -> None:
    most = [
        Contribution("a", DEB12, {"x": "1.3"}),
        Contribution("b", DEB12, {"x": "1.1"}),
        Contribution("c", DEB12, {"x": "1.3"}),
    ]
    assert compute_pin_set(most) == (PinEntry(DEB12, "x", "1.3", 2),)
    # dpkg order, not text order: 1.10 is newer than 1.9, so the tie goes to 1.9
    tie = [Contribution("a", DEB12, {"x": "1.10"}), Contribution("b", DEB12, {"x": "1.9"})]
    assert compute_pin_set(tie) == (PinEntry(DEB12, "x", "1.9", 1),)


def test_a_later_ring_vm_gets_the_tested_version_and_the_newer_one_is_held_back() -> None:
    updates = [update("demo-app", "1.0", "1.3"), update("openssl", "3.0.11", "3.0.15")]
    chosen = promote(
        updates, {"demo-app": "1.1", "openssl": "3.0.15"}, key=DEB12, ring="canary", manager="apt"
    )
    assert chosen == Promotion(
        pins=("demo-app=1.1", "openssl=3.0.15"),
        held=(
            HeldBack(
                "demo-app", "1.0", "1.3", "1.1", "1.3 is newer than the version ring 'canary' tested (1.1)"
            ),
        ),
    )


def test_a_vm_already_at_or_past_the_tested_version_installs_nothing_of_it() -> None:
    chosen = promote(
        [update("demo-app", "1.1", "1.3")], {"demo-app": "1.1"}, key=DEB12, ring="canary", manager="apt"
    )
    assert chosen.pins == () and [(h.candidate, h.pinned) for h in chosen.held] == [("1.3", "")]


def test_untested_packages_and_releases_without_a_canary_are_held_back_entirely() -> None:
    updates = [update("demo-app", "1.0", "1.1"), update("curl", "7.88.1-10", "7.88.1-10+deb12u5")]
    chosen = promote(updates, {"demo-app": "1.1"}, key=DEB12, ring="canary", manager="apt")
    assert chosen.pins == ("demo-app=1.1",)
    assert chosen.held == (
        HeldBack(
            "curl", "7.88.1-10", "7.88.1-10+deb12u5", "", "ring 'canary' did not install curl on debian 12"
        ),
    )
    nobody = promote(updates, None, key="debian:debian:11", ring="canary", manager="apt")
    assert nobody.pins == ()
    assert {h.reason for h in nobody.held} == {
        "no VM of ring 'canary' running debian 11 was patched and healthy"
    }


def test_an_older_candidate_than_the_tested_one_is_not_installed() -> None:
    chosen = promote(
        [update("demo-app", "1.0", "1.1")], {"demo-app": "1.3"}, key=DEB12, ring="canary", manager="apt"
    )
    assert chosen.pins == ()
    assert chosen.held[0].reason == "1.1 is not the version ring 'canary' tested (1.3)"


def test_rpm_pins_are_nevras_with_the_vms_own_arch() -> None:
    bash = update("bash", "5.1.8-6.el9", "5.1.8-9.el9", arch="x86_64")
    assert pin_text("dnf", bash, "5.1.8-9.el9") == "bash-5.1.8-9.el9.x86_64"
    assert pin_text("zypper", update("vim", "9.0-1", "9.1-1"), "9.1-1") == "vim-9.1-1"
    chosen = promote([bash], {"bash": "5.1.8-9.el9"}, key=EL9, ring="canary", manager="dnf")
    assert chosen == Promotion(("bash-5.1.8-9.el9.x86_64",), ())
