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
    backup_folder = ""                 # VM folder (path under the datacenter's VM folder, "a/b") that
                                       # holds backup clones; "" = no backups (BACKUP not offered)
    backup_datastore = ""              # datastore for backup clones ("" = the VM's own: no protection
                                       # against losing that datastore)

With neither ``ca_file`` nor ``thumbprint`` the system trust store is used. Durations follow the one
grammar of :func:`providers.settings.parse_duration`: seconds (``30``, ``"90"``) or a number with a
unit (``"500ms"``, ``"30s"``, ``"10m"``, ``"6h"``, ``"3d"``), at most 366 days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.settings import Secret, SettingsError, SettingsReader

GUEST_FALLBACKS = ("none", "hard")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+$|^[0-9A-Fa-f:.]+$")
_HEX = re.compile(r"^[0-9a-f]+$")
_KEYS = frozenset(
    {
        "kind", "host", "port", "user", "password", "ca_file", "thumbprint", "insecure", "datacenter",
        "cluster", "connect_timeout", "task_timeout", "page_size", "tags_field", "guest_user",
        "guest_password", "guest_fallback", "backup_folder", "backup_datastore",
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
    backup_folder: str = ""  # "a/b" under the datacenter's VM folder
    backup_datastore: str = ""

    @property
    def guest_credentials(self) -> bool:
        return bool(self.guest_user) and bool(self.guest_password)


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
    t = SettingsReader(raw, keys=_KEYS)
    host = t.text("host", required=True)
    if "://" in host or "/" in host or not _HOST.match(host):
        raise SettingsError(
            "host", f"{host!r} is not a host name or IP", 'write host = "vcenter.example.org"'
        )
    insecure = t.boolean("insecure", False)
    ca_file = t.path("ca_file", must_exist=True)
    pin = _thumbprint(t.text("thumbprint"))
    if insecure and (ca_file or pin):
        raise SettingsError("insecure", "contradicts ca_file/thumbprint", "remove insecure = true")
    if ca_file and pin:
        raise SettingsError("thumbprint", "set either ca_file or thumbprint, not both", "remove one of them")
    guest_user = t.text("guest_user")
    guest_password = t.secret("guest_password")
    if bool(guest_user) != bool(guest_password):
        raise SettingsError(
            "guest_user" if not guest_user else "guest_password",
            "guest operations need both guest_user and guest_password",
            "set both, or neither (guest_exec is then not offered)",
        )
    return VsphereSettings(
        site=site,
        host=host,
        port=t.integer("port", 443, low=1, high=65535),
        user=t.text("user", required=True),
        password=t.secret("password", required=True),
        ca_file=ca_file,
        thumbprint=pin,
        insecure=insecure,
        datacenter=t.text("datacenter"),
        cluster=t.text("cluster"),
        connect_timeout=t.duration("connect_timeout", 30.0),
        task_timeout=t.duration("task_timeout", 1800.0),
        page_size=t.integer("page_size", 500, low=1, high=10000),
        tags_field=t.text("tags_field", "tags"),
        guest_user=guest_user,
        guest_password=guest_password,
        guest_fallback=t.text("guest_fallback", "none", choices=GUEST_FALLBACKS),
        backup_folder=_folder_path(t.text("backup_folder")),
        backup_datastore=t.text("backup_datastore"),
    )


def _folder_path(value: str) -> str:
    parts = [p for p in value.strip("/").split("/")]
    if value and any(not p.strip() or p in (".", "..") for p in parts):
        raise SettingsError(
            "backup_folder", f"{value!r} is not a folder path", 'write backup_folder = "patchwave/backups"'
        )
    return "/".join(p.strip() for p in parts) if value else ""
