"""Both version orderings against what the real tools answered (tests/data/vulns/versions)."""

from __future__ import annotations

import pytest

from orchestrator.guests.osinfo import OsInfo
from orchestrator.vulns.versions import VersionError, at_least, compare, ordering_for
from tests.unit.vulns.conftest import DATA


def cases(name: str) -> list[tuple[str, str, int]]:
    rows = [line.split("\t") for line in (DATA / "versions" / f"{name}.tsv").read_text().splitlines()]
    return [(a, b, int(r)) for a, b, r in rows]


@pytest.mark.parametrize(("one", "two", "expected"), cases("rpm"), ids=lambda v: str(v))
def test_rpm_order_is_rpms_own(one: str, two: str, expected: int) -> None:
    assert compare("rpm", one, two) == expected
    assert compare("rpm", two, one) == -expected


@pytest.mark.parametrize(("one", "two", "expected"), cases("dpkg"), ids=lambda v: str(v))
def test_dpkg_order_is_dpkgs_own(one: str, two: str, expected: int) -> None:
    assert compare("dpkg", one, two) == expected
    assert compare("dpkg", two, one) == -expected


def test_the_tricky_cases_are_covered() -> None:
    rpm = {(a, b) for a, b, _ in cases("rpm")}
    dpkg = {(a, b) for a, b, _ in cases("dpkg")}
    assert {("1:2.0", "3.0"), ("1.0~rc1", "1.0"), ("1.0^git1", "1.0"), ("1.2.3-4.el9_3", "1.2.3-4.el9_3.1"),
            ("1.0", "1.0-1")} <= rpm  # fmt: skip
    assert {("1:2.0", "3.0"), ("1.0~rc1", "1.0"), ("2.36-9+deb12u4", "2.36-9+deb12u10")} <= dpkg


def test_an_unreadable_dpkg_version_is_an_error_and_never_a_fix() -> None:
    with pytest.raises(VersionError):
        compare("dpkg", "1.0 beta", "1.0")
    assert at_least("dpkg", "1.0 beta", "0.1") is False
    with pytest.raises(VersionError):
        compare("apk", "1", "2")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("family", "ordering"), [("debian", "dpkg"), ("rhel", "rpm"), ("suse", "rpm"), ("unknown", None)]
)
def test_the_family_picks_the_ordering(family: str, ordering: str | None) -> None:
    assert ordering_for(OsInfo("x", "1", family)) == ordering
