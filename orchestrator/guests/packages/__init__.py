"""Package managers: apt, dnf and zypper command builders and output parsers, and the factory.

A package manager *describes* commands and *parses* their output; it never opens a connection
(:mod:`.base` holds the value types and the Protocol).
"""

from __future__ import annotations

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import PackageManager
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.zypper import Zypper


def package_manager_for(
    os_info: OsInfo, *, lock_timeout: float = 600, refresh: bool = True
) -> PackageManager:
    """The guest's package manager; ``refresh=False`` lists pending updates from the metadata the
    guest already has (apt: no ``apt-get update``; dnf: ``-C``; zypper: ``--no-refresh``)."""
    if os_info.family == "debian":
        return Apt(lock_timeout=lock_timeout, refresh=refresh)
    if os_info.family == "rhel":
        return Dnf(lock_timeout=lock_timeout, refresh=refresh)
    if os_info.family == "suse":
        return Zypper(lock_timeout=lock_timeout, refresh=refresh)
    raise PackageManagerError(
        f"no package manager for {os_info.pretty_name or os_info.id!r} (family {os_info.family!r})",
        code="unsupported_os",
    )
