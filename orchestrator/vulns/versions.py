"""Version ordering per package family: dpkg (Debian, Ubuntu) and rpm (RHEL and clones, SUSE).

dpkg order is python-debian's implementation of dpkg's rules (epochs, ``~`` before anything,
``+deb12u4`` < ``+deb12u10``); rpm order is :func:`orchestrator.guests.packages.rpm.compare_evr`
(epochs, ``~`` and ``^``, release strings such as ``el9_3`` < ``el9_3.1``). Both were checked
against the real tools (``tests/data/vulns/versions``).
"""

from __future__ import annotations

from typing import Literal

from debian.debian_support import version_compare

from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.rpm import compare_evr

Ordering = Literal["dpkg", "rpm"]
ORDERINGS: tuple[Ordering, ...] = ("dpkg", "rpm")


class VersionError(ValueError):
    """A version string the family's rules cannot read (e.g. a dpkg version with a space)."""


def compare(ordering: Ordering, one: str, two: str) -> int:
    """-1, 0 or 1 as ``one`` sorts before, equal to or after ``two`` under ``ordering``."""
    if ordering == "dpkg":
        try:
            rc = version_compare(one.strip(), two.strip())
        except ValueError as exc:
            raise VersionError(f"not a dpkg version: {one!r} or {two!r} ({exc})") from None
    elif ordering == "rpm":
        rc = compare_evr(one, two)
    else:
        raise VersionError(f"unknown version ordering {ordering!r}; use one of {ORDERINGS}")
    return (rc > 0) - (rc < 0)


def ordering_for(os_info: OsInfo) -> Ordering | None:
    """The ordering of the guest's package manager: dpkg on the debian family, rpm on rhel/suse."""
    if os_info.family == "debian":
        return "dpkg"
    if os_info.family in ("rhel", "suse"):
        return "rpm"
    return None


def at_least(ordering: Ordering, version: str, floor: str) -> bool:
    """``version >= floor``; False when either cannot be read (never claims a fix it cannot prove)."""
    try:
        return compare(ordering, version, floor) >= 0
    except VersionError:
        return False
