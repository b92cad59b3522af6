"""The guest layer: channels into guests, package managers, patching and reboots.

See docs/ARCHITECTURE.md, section "Guest layer". Package managers only build commands and parse
output; channels carry the commands; GuestPatcher and reboot_and_wait combine the two.
"""

from orchestrator.guests.channel import GUEST_ENV, AgentChannel, GuestChannel, LocalChannel
from orchestrator.guests.errors import (
    GuestUnreachable,
    PackageManagerError,
    PackageManagerLocked,
    RebootFailed,
)
from orchestrator.guests.osinfo import OsInfo, detect_os, parse_os_release
from orchestrator.guests.packages import package_manager_for
from orchestrator.guests.packages.base import (
    ApplyOutcome,
    PackageManager,
    PendingUpdate,
    UpdateSelection,
)
from orchestrator.guests.patcher import ApplyResult, Assessment, GuestPatcher
from orchestrator.guests.reboot import RebootOutcome, reboot_and_wait
from orchestrator.guests.ssh import SshChannel, SshTarget
from orchestrator.model import PackageChange
from providers.errors import HostKeyRejected

__all__ = [
    "GUEST_ENV",
    "AgentChannel",
    "ApplyOutcome",
    "ApplyResult",
    "Assessment",
    "GuestChannel",
    "GuestPatcher",
    "GuestUnreachable",
    "HostKeyRejected",
    "LocalChannel",
    "OsInfo",
    "PackageChange",
    "PackageManager",
    "PackageManagerError",
    "PackageManagerLocked",
    "PendingUpdate",
    "RebootFailed",
    "RebootOutcome",
    "SshChannel",
    "SshTarget",
    "UpdateSelection",
    "detect_os",
    "package_manager_for",
    "parse_os_release",
    "reboot_and_wait",
]
