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

Durations are seconds (int/float) or strings such as ``"30s"``, ``"5m"``, ``"1h"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from providers.base import Secret, SettingsError

MAINTENANCE_MODES = ("ha", "migrate", "none")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
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
        "ssh",
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


def parse_duration(value: Any, field_name: str) -> float:
    """Seconds from a number or a string like ``"30s"``, ``"5m"``, ``"1h"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise SettingsError(field_name, "must be a duration, not a boolean", 'write e.g. "30s" or 30')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise SettingsError(
            field_name, f"invalid duration {value!r}", 'write seconds or e.g. "30s", "5m", "1h"'
        )
    if seconds <= 0:
        raise SettingsError(field_name, "must be greater than zero", 'write e.g. "30s"')
    return seconds


def _string(raw: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(
            prefix + key, f"must be a string, got {type(value).__name__}", f'write {key} = "..."'
        )
    return value.strip()


def _integer(raw: Mapping[str, Any], key: str, default: int, low: int, high: int, prefix: str = "") -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(prefix + key, f"must be an integer, got {value!r}", f"write {key} = {default}")
    if not low <= value <= high:
        raise SettingsError(
            prefix + key, f"must be between {low} and {high}, got {value}", f"write {key} = {default}"
        )
    return value


def _boolean(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SettingsError(
            key, f"must be true or false, got {value!r}", f"write {key} = {str(default).lower()}"
        )
    return value


def _secret(raw: Mapping[str, Any], key: str) -> Secret | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, Secret):
        raise SettingsError(
            key,
            "must be a secret reference, not an inline value",
            f'write {key} = {{ env = "PVE_{key.upper()}" }} or {{ file = "/path" }}',
        )
    if not value:
        raise SettingsError(key, "the secret is empty", "check the environment variable or file it refers to")
    return value


def _path(value: str, field_name: str, *, must_exist: bool) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if must_exist and not path.is_file():
        raise SettingsError(field_name, f"file {str(path)!r} does not exist", "point it at an existing file")
    return path


def _reject_unknown(raw: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SettingsError(
            prefix + unknown[0], "unknown setting", f"remove it; known settings: {', '.join(sorted(allowed))}"
        )


def _parse_host(raw: Mapping[str, Any]) -> str:
    host = _string(raw, "host", "")
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


def _parse_auth(raw: Mapping[str, Any]) -> tuple[str, Secret | None, str, Secret | None]:
    user = _string(raw, "user", "root@pam")
    if not _USER.match(user):
        raise SettingsError("user", f"must be user@realm, got {user!r}", 'write user = "root@pam"')
    password = _secret(raw, "password")
    token_name = _string(raw, "token_name", "")
    token_value = _secret(raw, "token_value")
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


def _parse_ssh(raw: Any) -> SshSettings:
    if raw is None:
        return SshSettings()
    if not isinstance(raw, Mapping):
        raise SettingsError("ssh", "must be a table", 'write ssh = { user = "root", key_file = "..." }')
    _reject_unknown(raw, _SSH_KEYS, "ssh.")
    return SshSettings(
        user=_string(raw, "user", "root", "ssh.") or "root",
        port=_integer(raw, "port", 22, 1, 65535, "ssh."),
        host=_string(raw, "host", "", "ssh."),
        key_file=_path(_string(raw, "key_file", "", "ssh."), "ssh.key_file", must_exist=True),
        known_hosts=_path(_string(raw, "known_hosts", "", "ssh."), "ssh.known_hosts", must_exist=True),
    )


def parse_settings(site: str, raw: Mapping[str, Any]) -> ProxmoxSettings:
    """Validate the provider table for ``site``; raises :class:`SettingsError` naming the field."""
    raw = {k: v for k, v in raw.items() if k != "kind"}
    _reject_unknown(raw, _TOP_KEYS)
    host = _parse_host(raw)
    user, password, token_name, token_value = _parse_auth(raw)
    verify_ssl = _boolean(raw, "verify_ssl", True)
    ca_file = _path(_string(raw, "ca_file", ""), "ca_file", must_exist=True)
    if ca_file and not verify_ssl:
        raise SettingsError(
            "ca_file", "is set but verify_ssl = false disables verification", "remove one of them"
        )
    maintenance = _string(raw, "maintenance", "migrate")
    if maintenance not in MAINTENANCE_MODES:
        raise SettingsError(
            "maintenance", f"unknown mode {maintenance!r}", f"use one of: {', '.join(MAINTENANCE_MODES)}"
        )
    durations = {
        key: parse_duration(raw[key], key) if key in raw else default
        for key, default in (
            ("timeout", 30.0),
            ("task_timeout", 900.0),
            ("poll_interval", 1.0),
            ("lock_wait", 300.0),
            ("agent_wait", 120.0),
        )
    }
    return ProxmoxSettings(
        site=site,
        host=host,
        port=_integer(raw, "port", 8006, 1, 65535),
        user=user,
        password=password,
        token_name=token_name,
        token_value=token_value,
        verify_ssl=verify_ssl,
        ca_file=ca_file,
        exec_output_cap=_integer(raw, "exec_output_cap", 1024 * 1024, 1024, 16 * 1024 * 1024),
        maintenance=maintenance,
        migrate_max_workers=_integer(raw, "migrate_max_workers", 1, 1, 64),
        migrate_local_disks=_boolean(raw, "migrate_local_disks", False),
        ssh=_parse_ssh(raw.get("ssh")),
        **durations,
    )
