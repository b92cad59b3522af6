"""The libvirt (libvirt-python) adapter: ``parse_settings`` (no SDK) and ``open_provider`` (imports the SDK).

The modules of this package are the adapter; nothing outside ``providers.libvirt`` imports them except
through these two functions (``providers.open_provider`` / ``providers.parse_settings``).
"""

from __future__ import annotations

from typing import Any

from providers.base import Provider
from providers.libvirt.settings import LibvirtSettings, parse_settings

__all__ = ["LibvirtSettings", "open_provider", "parse_settings"]


def open_provider(settings: LibvirtSettings, **kwargs: Any) -> Provider:
    """Connect to the platform named by ``settings`` (the SDK is imported here, not at import)."""
    from providers.libvirt.provider import open_provider as connect

    return connect(settings, **kwargs)
