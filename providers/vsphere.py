"""vSphere adapter (pyVmomi): settings, validated without importing the SDK, and ``open_provider``.

Accepted table (``[providers.<site>]`` with ``kind = "vsphere"``)::

    host = "vcenter.example.org"       # vCenter name or IP (no scheme, no path)
    port = 443
    user = "patchwave@vsphere.local"
    password = { env = "VCENTER_PASSWORD" }
    ca_file = "/etc/patchwave/vcenter-ca.pem"   # verify against this CA bundle, or
    thumbprint = "AB:CD:..."           # pin the server certificate (SHA-256, or SHA-1)
    insecure = false                   # true = do not verify TLS at all (explicit opt-out)
    datacenter = ""                    # only this datacenter (name); "" = all
    cluster = ""                       # only this cluster (name); "" = all
    connect_timeout = "30s"            # per HTTP request (socket timeout)
    task_timeout = "30m"               # deadline for tasks whose verb has no timeout argument
    page_size = 500                    # RetrievePropertiesEx maxObjects per page
    tags_field = "tags"                # custom field whose value is a comma-separated tag list
    guest_user = "root"                # VMware Tools guest operations (enables guest_exec)
    guest_password = { env = "GUEST_PASSWORD" }
    guest_fallback = "none"            # tools not running: "none" (refuse) | "hard" (reset / power off)

With neither ``ca_file`` nor ``thumbprint`` the system trust store is used. Durations are seconds
(int/float) or strings such as ``"30s"``, ``"5m"``, ``"1h"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.base import Provider, Secret, SettingsError

GUEST_FALLBACKS = ("none", "hard")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+$|^[0-9A-Fa-f:.]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_KEYS = frozenset(
    {
        "kind", "host", "port", "user", "password", "ca_file", "thumbprint", "insecure", "datacenter",
        "cluster", "connect_timeout", "task_timeout", "page_size", "tags_field", "guest_user",
        "guest_password", "guest_fallback",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class VsphereSettings:
    site: str
    host: str
    user: str
    password: Secret
    port: int = 443
    ca_file: Path | None = None
    thumbprint: str = ""  # lower-case hex without colons; 40 (SHA-1) or 64 (SHA-256) digits
    insecure: bool = False
    datacenter: str = ""
    cluster: str = ""
    connect_timeout: float = 30.0
    task_timeout: float = 1800.0
    page_size: int = 500
    tags_field: str = "tags"
    guest_user: str = ""
    guest_password: Secret | None = None
    guest_fallback: str = "none"

    @property
    def guest_credentials(self) -> bool:
        return bool(self.guest_user) and bool(self.guest_password)


def _duration(field_name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise SettingsError(field_name, "must be a duration", 'write seconds (30) or a string like "30s"')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise SettingsError(
            field_name, f"cannot read {value!r} as a duration", 'write "30s", "5m" or seconds'
        )
    if seconds <= 0:
        raise SettingsError(field_name, "must be positive", 'write e.g. "30s"')
    return seconds


def _text(raw: Mapping[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(key, f"must be a string, not {type(value).__name__}", f'write {key} = "..."')
    value = value.strip()
    if required and not value:
        raise SettingsError(key, "is required", f'write {key} = "..."')
    return value


def _secret(raw: Mapping[str, Any], key: str, *, required: bool) -> Secret | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise SettingsError(key, "is required", f'write {key} = {{ env = "VCENTER_PASSWORD" }}')
        return None
    if not isinstance(value, Secret):
        raise SettingsError(
            key,
            "must be a secret reference, not a literal value",
            f'write {key} = {{ env = "NAME" }} or {{ file = "/path" }}',
        )
    if required and not value:
        raise SettingsError(key, "is empty", "point the reference at a non-empty secret")
    return value


def _thumbprint(value: str) -> str:
    pin = value.replace(":", "").replace(" ", "").lower()
    if pin and (not _HEX.match(pin) or len(pin) not in (40, 64)):
        raise SettingsError(
            "thumbprint",
            "must be a SHA-256 (64 hex digits) or SHA-1 (40 hex digits) certificate fingerprint",
            "copy it from `openssl x509 -noout -fingerprint -sha256 -in cert.pem`",
        )
    return pin


def parse_settings(site: str, raw: Mapping[str, Any]) -> VsphereSettings:
    """Validate the ``[providers.<site>]`` table of a vSphere site (no pyVmomi import)."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SettingsError(unknown[0], "unknown vSphere setting", f"use one of: {', '.join(sorted(_KEYS))}")
    host = _text(raw, "host", required=True)
    if "://" in host or "/" in host or not _HOST.match(host):
        raise SettingsError(
            "host", f"{host!r} is not a host name or IP", 'write host = "vcenter.example.org"'
        )
    port = raw.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise SettingsError("port", f"{port!r} is not a TCP port", "write port = 443")
    insecure = raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise SettingsError("insecure", "must be true or false", "write insecure = false")
    ca_text = _text(raw, "ca_file")
    ca_file = Path(ca_text).expanduser() if ca_text else None
    if ca_file is not None and not ca_file.is_file():
        raise SettingsError(
            "ca_file", f"{ca_file} is not a readable file", "point ca_file at a PEM CA bundle"
        )
    pin = _thumbprint(_text(raw, "thumbprint"))
    if insecure and (ca_file or pin):
        raise SettingsError("insecure", "contradicts ca_file/thumbprint", "remove insecure = true")
    if ca_file and pin:
        raise SettingsError("thumbprint", "set either ca_file or thumbprint, not both", "remove one of them")
    page_size = raw.get("page_size", 500)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 10000:
        raise SettingsError("page_size", "must be an integer from 1 to 10000", "write page_size = 500")
    fallback = _text(raw, "guest_fallback", default="none")
    if fallback not in GUEST_FALLBACKS:
        raise SettingsError("guest_fallback", f"unknown fallback {fallback!r}", 'write "none" or "hard"')
    guest_user = _text(raw, "guest_user")
    guest_password = _secret(raw, "guest_password", required=False)
    if bool(guest_user) != bool(guest_password):
        raise SettingsError(
            "guest_user" if not guest_user else "guest_password",
            "guest operations need both guest_user and guest_password",
            "set both, or neither (guest_exec is then not offered)",
        )
    password = _secret(raw, "password", required=True)
    assert password is not None
    return VsphereSettings(
        site=site,
        host=host,
        port=port,
        user=_text(raw, "user", required=True),
        password=password,
        ca_file=ca_file,
        thumbprint=pin,
        insecure=insecure,
        datacenter=_text(raw, "datacenter"),
        cluster=_text(raw, "cluster"),
        connect_timeout=_duration("connect_timeout", raw.get("connect_timeout", 30)),
        task_timeout=_duration("task_timeout", raw.get("task_timeout", 1800)),
        page_size=page_size,
        tags_field=_text(raw, "tags_field", default="tags"),
        guest_user=guest_user,
        guest_password=guest_password,
        guest_fallback=fallback,
    )


def open_provider(settings: VsphereSettings, **kwargs: Any) -> Provider:
    """Connect to vCenter (pyVmomi is imported here). ``kwargs``: ``clock`` for tests."""
    from providers.vsphere_provider import VsphereProvider

    return VsphereProvider.connect(settings, **kwargs)
