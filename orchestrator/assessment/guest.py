"""Reading one guest for an assessment: OS, installed packages (with source packages) and pending
updates, through its guest channel and without changing anything.

The package manager lists pending updates from the metadata the guest already has (apt without
``apt-get update``, dnf ``-C``, zypper ``--no-refresh``) unless the operator asks ``refresh=True``
(which refreshes the package lists, nothing else). The dry run reads guests the same way
(:func:`readonly_patcher`).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import InstalledPackage, PendingUpdate
from orchestrator.guests.patcher import GuestPatcher
from providers.timing import Clock

#: Seconds a read-only listing may wait for the package manager's lock, and then take.
LOCK_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GuestScan:
    os: OsInfo
    manager: str  # apt | dnf | zypper
    packages: tuple[InstalledPackage, ...]
    pending: tuple[PendingUpdate, ...]

    @property
    def os_name(self) -> str:
        return self.os.pretty_name or " ".join(p for p in (self.os.id, self.os.version_id) if p) or "unknown"


def readonly_patcher(channel: GuestChannel, clock: Clock, *, refresh: bool = False) -> GuestPatcher:
    """A patcher for queries only: short lock waits; the guest's cached metadata unless ``refresh``."""
    return GuestPatcher(
        channel, clock=clock, lock_timeout=LOCK_TIMEOUT_S, query_timeout=QUERY_TIMEOUT_S, refresh=refresh
    )


def scan_guest(channel: GuestChannel, clock: Clock, *, refresh: bool = False) -> GuestScan:
    """The guest's OS, installed packages and pending updates (three read-only queries, plus the
    package lists' refresh when asked). Raises the guest layer's errors."""
    patcher = readonly_patcher(channel, clock, refresh=refresh)
    pending = patcher.pending_updates()
    return GuestScan(patcher.os_info(), patcher.package_manager.name, patcher.packages(), pending)
