"""Settings of the libvirt adapter, validated without importing libvirt.

A ``[providers.<site>]`` table of kind ``libvirt``::

    uri = "qemu:///system"            # or "qemu+ssh://root@host/system", "test:///default"
    failure_domain = ""               # "" = the hypervisor's hostname
    tag_namespace = "https://patchwave.dev/xmlns/tags/1"
    connect_timeout = "30s"
    agent_timeout = "5s"              # one guest agent command (guest-ping, exec status)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from providers.base import SettingsError

DEFAULT_TAG_NAMESPACE = "https://patchwave.dev/xmlns/tags/1"
SUPPORTED_DRIVERS = ("qemu", "test")
SUPPORTED_TRANSPORTS = ("", "unix", "ssh", "libssh", "libssh2", "tls", "tcp", "ext")


@dataclass(frozen=True, slots=True)
class LibvirtSettings:
    site: str
    uri: str
    failure_domain: str = ""  # "" = the hypervisor's hostname
    tag_namespace: str = DEFAULT_TAG_NAMESPACE
    connect_timeout: float = 30.0  # seconds for opening the connection
    agent_timeout: float = 5.0  # seconds for one guest agent command (guest-ping, exec status)


_URI = re.compile(r"^(?P<driver>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<transport>[A-Za-z0-9]+))?://")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_KEYS = ("uri", "failure_domain", "tag_namespace", "connect_timeout", "agent_timeout")


def parse_settings(site: str, raw: Mapping[str, Any]) -> LibvirtSettings:
    """Validate a ``[providers.<site>]`` table of kind libvirt; raises :class:`SettingsError`."""
    if not isinstance(site, str) or not site.strip():
        raise SettingsError("site", "must be a non-empty name", "name the table [providers.<site>]")
    if not isinstance(raw, Mapping):
        raise SettingsError("providers." + site, "must be a table", 'write uri = "qemu:///system" in it')
    unknown = sorted(set(raw) - set(_KEYS) - {"kind"})
    if unknown:
        raise SettingsError(
            unknown[0], "is not a libvirt setting", f"remove it; known settings: {', '.join(_KEYS)}"
        )
    return LibvirtSettings(
        site=site.strip(),
        uri=_parse_uri(raw.get("uri")),
        failure_domain=_string(raw, "failure_domain", ""),
        tag_namespace=_parse_namespace(_string(raw, "tag_namespace", DEFAULT_TAG_NAMESPACE)),
        connect_timeout=_duration(raw, "connect_timeout", 30.0),
        agent_timeout=_duration(raw, "agent_timeout", 5.0),
    )


def _parse_uri(value: Any) -> str:
    fix = 'write uri = "qemu:///system" (local) or "qemu+ssh://root@host/system" or "test:///default"'
    if value is None:
        raise SettingsError("uri", "is required", fix)
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("uri", f"must be a non-empty string, got {value!r}", fix)
    uri = value.strip()
    match = _URI.match(uri)
    if not match:
        raise SettingsError("uri", f"{uri!r} is not a libvirt connection URI", fix)
    driver, transport = match.group("driver").lower(), (match.group("transport") or "").lower()
    if driver not in SUPPORTED_DRIVERS:
        raise SettingsError("uri", f"driver {driver!r} is not supported by this adapter", fix)
    if transport not in SUPPORTED_TRANSPORTS:
        raise SettingsError(
            "uri", f"unknown transport {transport!r}", f"use one of: {', '.join(SUPPORTED_TRANSPORTS[1:])}"
        )
    if urlsplit(uri).password is not None:
        raise SettingsError(
            "uri", "contains a password", "use SSH keys (qemu+ssh://user@host/system); never inline secrets"
        )
    return uri


def _parse_namespace(value: str) -> str:
    parts = urlsplit(value)
    if not (parts.scheme and (parts.netloc or parts.scheme == "urn")):
        raise SettingsError(
            "tag_namespace", f"{value!r} is not an absolute URI", f'write e.g. "{DEFAULT_TAG_NAMESPACE}"'
        )
    return value


def _string(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(key, f"must be a string, got {type(value).__name__}", f'write {key} = "..."')
    return value.strip() or default


def _duration(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if isinstance(value, bool) or not (isinstance(value, int | float) or match):
        raise SettingsError(key, f"invalid duration {value!r}", f'write seconds or e.g. {key} = "30s"')
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else float(value)
    if not 0 < seconds <= 3600:
        raise SettingsError(
            key, f"must be between 0 and 1h, got {seconds:g}s", f'write e.g. {key} = "{default:g}s"'
        )
    return seconds
