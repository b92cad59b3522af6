"""os-release parsing (os-release(5)): family detection and tolerance of odd files."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.osinfo import detect_os, family_of, parse_os_release
from tests.support import paths

DATA = paths.DATA / "guests"


def test_this_machines_debian_12_os_release() -> None:
    info = parse_os_release((DATA / "os-release-debian12-this-machine").read_text())
    assert (info.id, info.version_id, info.family) == ("debian", "12", "debian")
    assert info.pretty_name == "Debian GNU/Linux 12 (bookworm)"


@pytest.mark.parametrize(
    ("text", "os_id", "version", "family"),
    [
        ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', "ubuntu", "22.04", "debian"),
        (
            'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n',
            "rocky",
            "9.4",
            "rhel",
        ),
        (
            'NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.4"\n',
            "rhel",
            "9.4",
            "rhel",
        ),
        ('NAME="Amazon Linux"\nID="amzn"\nID_LIKE="fedora"\nVERSION_ID="2023"\n', "amzn", "2023", "rhel"),
        ('NAME="SLES"\nID="sles"\nID_LIKE="suse"\nVERSION_ID="15.5"\n', "sles", "15.5", "suse"),
        (
            'NAME="openSUSE Leap"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\nVERSION_ID="15.6"\n',
            "opensuse-leap",
            "15.6",
            "suse",
        ),
        ('NAME="Some Derivative"\nID=acme\nID_LIKE="ubuntu debian"\n', "acme", "", "debian"),
        ('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.0\n', "alpine", "3.20.0", "unknown"),
    ],
)
def test_families(text: str, os_id: str, version: str, family: str) -> None:
    info = parse_os_release(text)
    assert (info.id, info.version_id, info.family) == (os_id, version, family)


def test_odd_lines_are_tolerated() -> None:
    text = '# comment\n\nGARBAGE\nID="unterminated\nVERSION_ID=\'12\'\n  PRETTY_NAME="Spaced \\"quoted\\""\n'
    info = parse_os_release(text)
    assert info.id == "unterminated" and info.version_id == "12"
    assert info.pretty_name == 'Spaced "quoted"'
    assert parse_os_release("").family == "unknown"


def test_family_of_prefers_the_id_then_id_like() -> None:
    assert family_of("fedora") == "rhel"
    assert family_of("weird", ("suse",)) == "suse"


def test_detect_os_on_this_machine_through_a_real_channel() -> None:
    info = detect_os(LocalChannel())
    assert info == parse_os_release(Path("/etc/os-release").read_text())
