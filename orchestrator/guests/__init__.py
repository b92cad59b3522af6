"""The guest layer: channels into guests, package managers, patching and reboots.

See docs/ARCHITECTURE.md, section "Guest layer". Package managers only build commands and parse
output; channels carry the commands; GuestPatcher and reboot_and_wait combine the two.
"""

from .channel import GUEST_ENV, AgentChannel, GuestChannel, LocalChannel
from .errors import GuestUnreachable, HostKeyRejected, PackageManagerError, PackageManagerLocked, RebootFailed
from .osinfo import OsInfo, detect_os, parse_os_release
from .packages import (
    ApplyOutcome,
    PackageChange,
    PackageManager,
    PendingUpdate,
    UpdateSelection,
    package_manager_for,
)
from .patcher import ApplyResult, Assessment, GuestPatcher
from .reboot import RebootOutcome, reboot_and_wait
from .ssh import SshChannel, SshTarget

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
