"""A guest's OSV ecosystems and Debian release, checked against the names in the real records."""

from __future__ import annotations

import pytest

from orchestrator.guests.osinfo import parse_os_release
from orchestrator.vulns.ecosystems import scope_for
from tests.unit.vulns.conftest import DATA, os_release


def test_this_machines_debian_12() -> None:
    scope = scope_for(
        parse_os_release((DATA.parent / "guests" / "os-release-debian12-this-machine").read_text())
    )
    assert scope is not None
    assert scope.exact == {"Debian:12"} and scope.tracker_release == "bookworm" and scope.ordering == "dpkg"
    assert not scope.matches("Debian:7")  # DSA-3029-1's ecosystem


@pytest.mark.parametrize(
    ("fields", "matches", "misses"),
    [
        ({"ID": "ubuntu", "VERSION_ID": "22.04"}, ["Ubuntu:22.04:LTS"], ["Ubuntu:24.04:LTS", "Ubuntu:Pro:22.04:LTS"]),
        ({"ID": "ubuntu", "VERSION_ID": "23.10"}, ["Ubuntu:23.10"], ["Ubuntu:23.10:LTS"]),
        ({"ID": "almalinux", "VERSION_ID": "9.3", "ID_LIKE": "rhel centos fedora"}, ["AlmaLinux:9"], ["AlmaLinux:8"]),
        ({"ID": "rocky", "VERSION_ID": "9.4", "ID_LIKE": "rhel centos fedora"}, ["Rocky Linux:9"], ["AlmaLinux:9"]),
        ({"ID": "rhel", "VERSION_ID": "9.4", "ID_LIKE": "fedora"},
         ["Red Hat:enterprise_linux:9::baseos", "Red Hat:enterprise_linux:9::appstream"],
         ["Red Hat:enterprise_linux:8::baseos", "Red Hat:rhel_eus:9.2::baseos"]),
        ({"ID": "sles", "VERSION_ID": "15.5", "ID_LIKE": "suse"},
         ["SUSE:Linux Enterprise Server 15 SP5", "SUSE:Linux Enterprise Module for Basesystem 15 SP5",
          "SUSE:Linux Enterprise Server 15 SP5-LTSS"],
         ["SUSE:Linux Enterprise Server 15 SP4", "SUSE:Linux Enterprise Server 15 SP55", "openSUSE:Leap 15.5"]),
        ({"ID": "opensuse-leap", "VERSION_ID": "15.5", "ID_LIKE": "suse opensuse"}, ["openSUSE:Leap 15.5"],
         ["SUSE:Linux Enterprise Server 15 SP5"]),
        ({"ID": "opensuse-tumbleweed", "VERSION_ID": "20240801"}, ["openSUSE:Tumbleweed"], ["openSUSE:Leap 15.5"]),
    ],
)  # fmt: skip
def test_scopes(fields: dict[str, str], matches: list[str], misses: list[str]) -> None:
    scope = scope_for(os_release(**fields))
    assert scope is not None and scope.ordering == "rpm" or fields["ID"] == "ubuntu"
    assert all(scope.matches(m) for m in matches), scope.describe()
    assert not any(scope.matches(m) for m in misses), scope.describe()


def test_ubuntu_pro_is_opt_in() -> None:
    scope = scope_for(os_release(ID="ubuntu", VERSION_ID="22.04"), ubuntu_pro=True)
    assert scope is not None and scope.matches("Ubuntu:Pro:22.04:LTS") and scope.matches("Ubuntu:22.04:LTS")


@pytest.mark.parametrize("fields", [{"ID": "fedora", "VERSION_ID": "40"}, {"ID": "arch"}, {"ID": "debian"}])
def test_no_scope_where_no_feed_describes_the_release(fields: dict[str, str]) -> None:
    assert scope_for(os_release(**fields)) is None
