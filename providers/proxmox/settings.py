"""Typed settings of the Proxmox VE adapter, validated without importing proxmoxer.

Accepted table (``[providers.<site>]`` with ``kind = "proxmox"``)::

    host = "pve1.example.org"          # API host (name or IP, no scheme, no path)
    port = 8006
    user = "root@pam"                  # user@realm
    password = { env = "PVE_PASSWORD" }                   # ticket auth, or
    token_name = "patchwave"; token_value = { file = "/etc/patchwave/pve.token" }   # API token
    verify_ssl = true                  # TLS is verified by default
    ca_file = "/etc/patchwave/pve-ca.pem"                 # CA bundle for a self-signed cluster CA
    timeout = "30s"                    # per HTTP request (proxmoxer's default of 5 s is too short)
    task_timeout = "15m"               # default deadline for a UPID task
    poll_interval = "1s"               # task / agent / node polling interval
    lock_wait = "5m"                   # how long a locked guest is waited for (LOCK_WAIT policy)
    agent_wait = "2m"                  # how long guest_exec waits for the guest agent to answer
    exec_output_cap = 1048576          # bytes kept per stream from guest exec (qemu-ga caps at 16 MiB)
    maintenance = "migrate"            # "ha" (ha-manager node-maintenance over SSH) | "migrate" | "none"
    migrate_max_workers = 1            # max-workers for POST /nodes/{node}/migrateall
    migrate_local_disks = false        # with-local-disks=1 for migrateall
    ssh = { user = "root", port = 22, host = "", key_file = "", known_hosts = "" }
    backup_storage = ""                # vzdump target storage id ("" = no backups: BACKUP not offered)
    backup_mode = "snapshot"           # vzdump mode: "snapshot" (no downtime) | "suspend" | "stop"
    backup_compress = "zstd"           # "zstd" | "gzip" | "lzo" | "none"
    restore_storage = ""               # where a restore-verify puts the copy's disks ("" = as backed up)
    verify_node = ""                   # the node restore-verify copies run on ("" = the VM's node)

Durations follow the one grammar of :func:`providers.settings.parse_duration`: seconds (``30``,
``"90"``) or a number with a unit (``"500ms"``, ``"30s"``, ``"10m"``, ``"6h"``, ``"3d"``), at most 366 days.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.settings import Secret, SettingsError, SettingsReader

MAINTENANCE_MODES = ("ha", "migrate", "none")
BACKUP_MODES = ("snapshot", "suspend", "stop")
BACKUP_COMPRESSIONS = ("zstd", "gzip", "lzo", "none")
#: ``pve-storage-id`` (PVE::JSONSchema): a storage identifier.
_STORAGE_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
_HOST = re.compile(r"^[A-Za-z0-9.\-]+$|^\[?[0-9A-Fa-f:.]+\]?$")
_TOKEN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_USER = re.compile(r"^[^\s:@!]+@[A-Za-z][A-Za-z0-9.\-_]*$")

_TOP_KEYS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "token_name",
        "token_value",
        "verify_ssl",
        "ca_file",
        "timeout",
        "task_timeout",
        "poll_interval",
        "lock_wait",
        "agent_wait",
        "exec_output_cap",
        "maintenance",
        "migrate_max_workers",
        "migrate_local_disks",
        "backup_storage",
        "backup_mode",
        "backup_compress",
        "restore_storage",
        "verify_node",
        "ssh",
        "kind",
    }
)
_SSH_KEYS = frozenset({"user", "port", "host", "key_file", "known_hosts"})


@dataclass(frozen=True, slots=True)
class SshSettings:
    """SSH to a cluster node, for ``ha-manager crm-command node-maintenance``.

    The host key is verified against ``known_hosts`` (or the user's ``~/.ssh/known_hosts`` when
    empty); unknown host keys are rejected. ``host`` defaults to the API host.
    """

    user: str = "root"
    port: int = 22
    host: str = ""
    key_file: Path | None = None
    known_hosts: Path | None = None


@dataclass(frozen=True, slots=True)
class ProxmoxSettings:
    site: str
    host: str
    port: int = 8006
    user: str = "root@pam"
    password: Secret | None = None
    token_name: str = ""
    token_value: Secret | None = None
    verify_ssl: bool = True
    ca_file: Path | None = None
    timeout: float = 30.0
    task_timeout: float = 900.0
    poll_interval: float = 1.0
    lock_wait: float = 300.0
    agent_wait: float = 120.0
    exec_output_cap: int = 1024 * 1024
    maintenance: str = "migrate"
    migrate_max_workers: int = 1
    migrate_local_disks: bool = False
    ssh: SshSettings = field(default_factory=SshSettings)
    backup_storage: str = ""
    backup_mode: str = "snapshot"
    backup_compress: str = "zstd"
    restore_storage: str = ""
    verify_node: str = ""

    @property
    def uses_token(self) -> bool:
        return bool(self.token_name)

    @property
    def ssh_host(self) -> str:
        return self.ssh.host or self.host

    @property
    def tls_verify(self) -> bool | str:
        """The value handed to requests' ``verify``: False, True or the CA bundle path."""
        if not self.verify_ssl:
            return False
        return str(self.ca_file) if self.ca_file else True


def _parse_host(t: SettingsReader) -> str:
    host = t.text("host")
    if not host:
        raise SettingsError(
            "host", "is required", 'write host = "pve1.example.org" (the API host name or IP)'
        )
    if "://" in host or "/" in host:
        raise SettingsError("host", f"must be a host name, not a URL: {host!r}", "drop the scheme and path")
    if not _HOST.match(host):
        raise SettingsError(
            "host", f"invalid host name {host!r}", "write a DNS name or an IP address; use port = N"
        )
    return host


def _parse_auth(t: SettingsReader) -> tuple[str, Secret | None, str, Secret | None]:
    user = t.text("user", "root@pam")
    if not _USER.match(user):
        raise SettingsError("user", f"must be user@realm, got {user!r}", 'write user = "root@pam"')
    password = t.secret("password")
    token_name = t.text("token_name")
    token_value = t.secret("token_value")
    if password is not None and (token_name or token_value is not None):
        raise SettingsError(
            "password", "give either password or token_name + token_value, not both", "remove one"
        )
    if token_name and "!" in token_name:
        raise SettingsError(
            "token_name", "write only the token id, without 'user@realm!'", 'write token_name = "patchwave"'
        )
    if token_name and not _TOKEN_NAME.match(token_name):
        raise SettingsError(
            "token_name", f"invalid token id {token_name!r}", "use letters, digits, '.', '-', '_'"
        )
    if bool(token_name) != (token_value is not None):
        missing = "token_value" if token_name else "token_name"
        raise SettingsError(missing, "token_name and token_value go together", f"set {missing} as well")
    if password is None and not token_name:
        raise SettingsError(
            "password",
            "no credentials: give password (ticket auth) or token_name + token_value (API token)",
            'write token_name = "patchwave" and token_value = { env = "PVE_TOKEN" }',
        )
    return user, password, token_name, token_value


def _parse_ssh(t: SettingsReader) -> SshSettings:
    return SshSettings(
        user=t.text("user", "root") or "root",
        port=t.integer("port", 22, low=1, high=65535),
        host=t.text("host"),
        key_file=t.path("key_file", must_exist=True),
        known_hosts=t.path("known_hosts", must_exist=True),
    )


def parse_settings(site: str, raw: Mapping[str, Any]) -> ProxmoxSettings:
    """Validate the provider table for ``site``; raises :class:`SettingsError` naming the field."""
    t = SettingsReader(raw, keys=_TOP_KEYS)
    host = _parse_host(t)
    user, password, token_name, token_value = _parse_auth(t)
    verify_ssl = t.boolean("verify_ssl", True)
    ca_file = t.path("ca_file", must_exist=True)
    if ca_file and not verify_ssl:
        raise SettingsError(
            "ca_file", "is set but verify_ssl = false disables verification", "remove one of them"
        )
    return ProxmoxSettings(
        site=site,
        host=host,
        port=t.integer("port", 8006, low=1, high=65535),
        user=user,
        password=password,
        token_name=token_name,
        token_value=token_value,
        verify_ssl=verify_ssl,
        ca_file=ca_file,
        timeout=t.duration("timeout", 30.0),
        task_timeout=t.duration("task_timeout", 900.0),
        poll_interval=t.duration("poll_interval", 1.0),
        lock_wait=t.duration("lock_wait", 300.0),
        agent_wait=t.duration("agent_wait", 120.0),
        exec_output_cap=t.integer("exec_output_cap", 1024 * 1024, low=1024, high=16 * 1024 * 1024),
        maintenance=t.text("maintenance", "migrate", choices=MAINTENANCE_MODES),
        migrate_max_workers=t.integer("migrate_max_workers", 1, low=1, high=64),
        migrate_local_disks=t.boolean("migrate_local_disks", False),
        ssh=_parse_ssh(t.table("ssh", _SSH_KEYS)),
        backup_storage=_storage_id(t, "backup_storage"),
        backup_mode=t.text("backup_mode", "snapshot", choices=BACKUP_MODES),
        backup_compress=t.text("backup_compress", "zstd", choices=BACKUP_COMPRESSIONS),
        restore_storage=_storage_id(t, "restore_storage"),
        verify_node=_node_name(t, "verify_node"),
    )


def _storage_id(t: SettingsReader, key: str) -> str:
    value = t.text(key)
    if value and not _STORAGE_ID.match(value):
        raise t.error(
            key,
            f"{value!r} is not a PVE storage id",
            f'write {key} = "backup-nfs" (as in Datacenter > Storage)',
        )
    return value


def _node_name(t: SettingsReader, key: str) -> str:
    value = t.text(key)
    if value and not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$", value):
        raise t.error(key, f"{value!r} is not a node name", f'write {key} = "pve2"')
    return value
