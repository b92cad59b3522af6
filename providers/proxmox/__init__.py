"""The Proxmox VE (proxmoxer) adapter: ``parse_settings`` (no SDK) and ``open_provider`` (imports the SDK).

The modules of this package are the adapter; nothing outside ``providers.proxmox`` imports them except
through these two functions (``providers.open_provider`` / ``providers.parse_settings``).
"""

from __future__ import annotations

from typing import Any

from providers.base import Provider
from providers.proxmox.settings import ProxmoxSettings, parse_settings

__all__ = ["ProxmoxSettings", "open_provider", "parse_settings"]


def open_provider(settings: ProxmoxSettings, **kwargs: Any) -> Provider:
    """Connect to the platform named by ``settings`` (the SDK is imported here, not at import)."""
    from providers.proxmox.provider import open_provider as connect

    return connect(settings, **kwargs)
