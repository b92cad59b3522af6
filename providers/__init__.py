"""Provider adapters. Each adapter module is the only importer of its SDK.

``open_provider(kind, site, settings)`` imports the adapter lazily, so a vSphere user never needs
libvirt-python installed; a missing SDK raises :class:`providers.base.SdkMissing` naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, cast

from providers.base import Provider
from providers.errors import SdkMissing
from providers.settings import SettingsError

#: kind -> (adapter module, SDK import name, pip extra)
KINDS: Mapping[str, tuple[str, str, str]] = {
    "libvirt": ("providers.libvirt", "libvirt", "libvirt"),
    "vsphere": ("providers.vsphere", "pyVmomi", "vsphere"),
    "proxmox": ("providers.proxmox", "proxmoxer", "proxmox"),
}


class _Adapter(Protocol):
    """What an adapter package (``providers.libvirt``, ...) exports: its two entry points."""

    def parse_settings(self, site: str, raw: Mapping[str, Any]) -> Any: ...

    def open_provider(self, settings: Any) -> Provider: ...


def _adapter(kind: str) -> _Adapter:
    if kind not in KINDS:
        raise SettingsError("kind", f"unknown provider kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    # A module imported by name is a ModuleType to mypy; the adapter packages export these two functions.
    return cast(_Adapter, importlib.import_module(KINDS[kind][0]))


def parse_settings(kind: str, site: str, raw: Mapping[str, Any]) -> Any:
    """Validate a provider's settings table without connecting (and without its SDK)."""
    return _adapter(kind).parse_settings(site, raw)


def open_provider(kind: str, settings: Any) -> Provider:
    """Connect an adapter with settings returned by :func:`parse_settings`."""
    _module, sdk, extra = KINDS[kind]
    try:
        importlib.import_module(sdk)
    except ImportError as exc:
        raise SdkMissing(
            f"the {kind} provider needs the {sdk!r} package: pip install 'patchwave[{extra}]'",
            code="sdk_missing",
        ) from exc
    return _adapter(kind).open_provider(settings)
