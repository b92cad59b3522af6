"""Which OSV ecosystems (and Debian tracker release) describe a guest, from its os-release.

Names as the OSV data spells them (ossf/osv-schema ``ecosystems.json``, checked against real records):
``Debian:12``; ``Ubuntu:22.04:LTS`` (``:LTS`` only on LTS releases) and ``Ubuntu:Pro:22.04:LTS`` for
fixes that need an Ubuntu Pro subscription; ``AlmaLinux:9``; ``Rocky Linux:9``; ``Red Hat:<CPE>``
(``Red Hat:enterprise_linux:9::baseos``, ``...::appstream``: every stream of the major release);
``SUSE:<product> 15 SP5`` (SUSE files packages under the product *or the module* that ships them,
``SUSE:Linux Enterprise Module for Basesystem 15 SP5``, and ``-LTSS`` once in long-term support:
all of those match); ``openSUSE:Leap 15.5`` and ``openSUSE:Tumbleweed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.guests.osinfo import OsInfo
from orchestrator.vulns.versions import Ordering, ordering_for

#: Debian VERSION_ID -> codename (the tracker's release keys); from debian distro-info-data.
DEBIAN_CODENAMES = {
    "8": "jessie", "9": "stretch", "10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie",
    "14": "forky",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scope:
    """The feeds' names for one guest's distribution release."""

    ordering: Ordering
    exact: frozenset[str] = frozenset()  # ecosystem names matched as they are
    prefix: str = ""  # with ``suffixes``: "SUSE:" + any product ending in one of the suffixes
    suffixes: tuple[str, ...] = ()
    tracker_release: str = ""  # Debian codename for the Security Tracker; "" when not Debian

    def matches(self, ecosystem: str) -> bool:
        if ecosystem in self.exact:
            return True
        return bool(self.prefix) and ecosystem.startswith(self.prefix) and ecosystem.endswith(self.suffixes)

    def describe(self) -> str:
        names = sorted(self.exact) + ([f"{self.prefix}*{'|'.join(self.suffixes)}"] if self.prefix else [])
        return ", ".join(names) or "none"


def _major(version_id: str) -> str:
    return version_id.split(".", 1)[0]


def _ubuntu(version_id: str, pro: bool) -> frozenset[str]:
    year, _, month = version_id.partition(".")
    lts = month == "04" and year.isdigit() and int(year) % 2 == 0
    release = f"{version_id}:LTS" if lts else version_id
    names = {f"Ubuntu:{release}"}
    if pro:
        names.add(f"Ubuntu:Pro:{release}")
    return frozenset(names)


def _suse(os_info: OsInfo) -> Scope:
    major, _, minor = os_info.version_id.partition(".")
    if os_info.id.startswith("opensuse-tumbleweed"):
        return Scope("rpm", exact=frozenset({"openSUSE:Tumbleweed"}))
    if os_info.id.startswith("opensuse"):
        return Scope("rpm", exact=frozenset({f"openSUSE:Leap {os_info.version_id}"}))
    release = f"{major} SP{minor}" if minor and minor != "0" else major
    return Scope("rpm", prefix="SUSE:", suffixes=(f" {release}", f" {release}-LTSS"))


def scope_for(os_info: OsInfo, *, ubuntu_pro: bool = False) -> Scope | None:
    """The scope of ``os_info``; None for a distribution no feed here describes (e.g. Fedora, Oracle)."""
    ordering = ordering_for(os_info)
    version = os_info.version_id
    if ordering is None or not version:
        return None
    if os_info.id == "debian":
        return Scope("dpkg", exact=frozenset({f"Debian:{_major(version)}"}),
                     tracker_release=DEBIAN_CODENAMES.get(_major(version), ""))  # fmt: skip
    if os_info.id == "ubuntu":
        return Scope("dpkg", exact=_ubuntu(version, ubuntu_pro))
    if os_info.id == "almalinux":
        return Scope("rpm", exact=frozenset({f"AlmaLinux:{_major(version)}"}))
    if os_info.id == "rocky":
        return Scope("rpm", exact=frozenset({f"Rocky Linux:{_major(version)}"}))
    if os_info.id == "rhel":
        return Scope("rpm", prefix="Red Hat:enterprise_linux:", suffixes=tuple(
            f":{_major(version)}::{stream}" for stream in ("baseos", "appstream", "crb", "highavailability",
                                                            "resilientstorage", "sap", "sap_hana", "supplementary")
        ))  # fmt: skip
    if os_info.family == "suse":
        return _suse(os_info)
    return None
