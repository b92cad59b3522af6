"""Settings of the libvirt adapter, validated without importing libvirt.

A ``[providers.<site>]`` table of kind ``libvirt``::

    uri = "qemu:///system"            # or "qemu+ssh://root@host/system", "test:///default"
    failure_domain = ""               # "" = the hypervisor's hostname
    tag_namespace = "https://patchwave.dev/xmlns/tags/1"
    connect_timeout = "30s"           # at most 1h
    agent_timeout = "5s"              # one guest agent command (guest-ping, exec status); at most 1h
    backup_dir = ""                   # full backups (virDomainBackupBegin) go here; "" = no backups.
                                      # A local absolute path: the QEMU driver on this machine only

Durations follow the one grammar of :func:`providers.settings.parse_duration`: seconds (``30``,
``"90"``) or a number with a unit (``"500ms"``, ``"30s"``, ``"10m"``, ``"6h"``, ``"3d"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from providers.settings import SettingsError, SettingsReader

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
    backup_dir: Path | None = None  # where full backups go (local URIs only); None = no backups


_URI = re.compile(r"^(?P<driver>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<transport>[A-Za-z0-9]+))?://")
_KEYS = ("kind", "uri", "failure_domain", "tag_namespace", "connect_timeout", "agent_timeout", "backup_dir")
_MAX_TIMEOUT_S = 3600


def parse_settings(site: str, raw: Mapping[str, Any]) -> LibvirtSettings:
    """Validate a ``[providers.<site>]`` table of kind libvirt; raises :class:`SettingsError`."""
    if not isinstance(site, str) or not site.strip():
        raise SettingsError("site", "must be a non-empty name", "name the table [providers.<site>]")
    if not isinstance(raw, Mapping):
        raise SettingsError("providers." + site, "must be a table", 'write uri = "qemu:///system" in it')
    t = SettingsReader(raw, keys=_KEYS)
    uri = _parse_uri(raw.get("uri"))
    return LibvirtSettings(
        site=site.strip(),
        uri=uri,
        failure_domain=t.text("failure_domain"),
        tag_namespace=_parse_namespace(t.text("tag_namespace") or DEFAULT_TAG_NAMESPACE),
        connect_timeout=t.duration("connect_timeout", 30.0, maximum=_MAX_TIMEOUT_S),
        agent_timeout=t.duration("agent_timeout", 5.0, maximum=_MAX_TIMEOUT_S),
        backup_dir=_parse_backup_dir(t, uri),
    )


def _parse_backup_dir(t: SettingsReader, uri: str) -> Path | None:
    path = t.path("backup_dir")
    if path is None:
        return None
    if not path.is_absolute():
        raise t.error(
            "backup_dir",
            f"{str(path)!r} is not an absolute path",
            'write backup_dir = "/var/lib/patchwave/backups"',
        )
    parts = urlsplit(uri)
    if not uri.lower().startswith("qemu") or parts.netloc or "+" in parts.scheme:
        raise t.error(
            "backup_dir",
            f"backups need the QEMU driver on this machine, not {uri!r} (checksums and qemu-img run here)",
            'use uri = "qemu:///system", or remove backup_dir',
        )
    return path


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
    try:
        password = urlsplit(uri).password
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 host
        raise SettingsError("uri", f"{uri!r} is not a libvirt connection URI ({exc})", fix) from None
    if password is not None:
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
