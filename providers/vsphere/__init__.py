"""The VMware vSphere (pyVmomi) adapter: ``parse_settings`` (no SDK) and ``open_provider`` (imports the SDK).

The modules of this package are the adapter; nothing outside ``providers.vsphere`` imports them except
through these two functions (``providers.open_provider`` / ``providers.parse_settings``).
"""

from __future__ import annotations

from typing import Any

from providers.base import Provider
from providers.vsphere.settings import VsphereSettings, parse_settings

__all__ = ["VsphereSettings", "open_provider", "parse_settings"]


def open_provider(settings: VsphereSettings, **kwargs: Any) -> Provider:
    """Connect to the platform named by ``settings`` (the SDK is imported here, not at import)."""
    from providers.vsphere.provider import open_provider as connect

    return connect(settings, **kwargs)
