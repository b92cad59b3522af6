"""Table-by-table validation of the configuration into :mod:`orchestrator.config` values."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypedDict

import providers
from orchestrator import secrets as secret_refs
from orchestrator.config.assess import ASSESS_KEYS, BaselineSettings, assess_table, baselines_table
from orchestrator.config.autoupdates import autoupdates_table
from orchestrator.config.backups import KEYS as BACKUP_KEYS
from orchestrator.config.backups import BackupSettings, backup_table
from orchestrator.config.facts import FACTS_KEYS, facts_table
from orchestrator.config.machines import GUEST_KEYS, HOST_KEYS, guests_table, health_table, hosts_table
from orchestrator.config.metrics import COMPLIANCE_KEYS, METRICS_KEYS, compliance_table, metrics_table
from orchestrator.config.notifications import KEYS as NOTIFY_KEYS
from orchestrator.config.notifications import notifications_table
from orchestrator.config.reader import reported_in
from orchestrator.config.rollout import POLICY_KEYS, groups_table, policy_table, rings_table, targets_table
from orchestrator.config.schedules import schedules_table
from orchestrator.config.settings import (
    DEFAULT_STATE_DIR,
    GroupSettings,
    GuestSettings,
    HealthCheckSettings,
    HostSettings,
    LoggingSettings,
    PolicySettings,
    ProviderSite,
    RingSettings,
    Settings,
    StateSettings,
    TargetSettings,
    TemporalSettings,
)
from orchestrator.config.windows import holidays_table, windows_table
from orchestrator.errors import ConfigError
from orchestrator.windows import WindowSpec
from providers.settings import Secret, SettingsError, SettingsReader

TOP_KEYS = ("state", "temporal", "logging", "providers", "targets", "groups", "rings", "windows", "holidays",
            "policy", "hosts", "guests", "health", "notifications", "metrics", "compliance",
            "schedules", "autoupdates", "assess", "baselines", "backup", "facts")  # fmt: skip
_SITE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
#: A Temporal namespace name as patchwave accepts it: letters, digits, '.', '_', '-', starting with a
#: letter or digit, at most 255 characters. The name travels in a gRPC header (ASCII only: a
#: non-ASCII name fails every call with "something went wrong"), in the dev server's command line
#: and in the `temporal` commands patchwave prints; Temporal Cloud's names (``name.account``) fit.
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}")


class _Digested(TypedDict):
    """The :class:`Settings` fields built first: the config digest covers them (less file, logging, providers)."""

    file: Path
    state: StateSettings
    temporal: TemporalSettings
    logging: LoggingSettings
    providers: tuple[ProviderSite, ...]
    targets: TargetSettings
    groups: tuple[GroupSettings, ...]
    rings: tuple[RingSettings, ...]
    windows: tuple[WindowSpec, ...]
    policy: PolicySettings
    hosts: HostSettings
    guests: GuestSettings
    health: tuple[HealthCheckSettings, ...]
    baselines: tuple[BaselineSettings, ...]
    backup: BackupSettings


def build_settings(raw: Mapping[str, Any], *, file: Path, environ: Mapping[str, str]) -> Settings:
    """Validate the TOML tree ``raw`` read from ``file``; every mistake is a ConfigError naming ``file``."""
    with reported_in(file):
        return _build(raw, file=file, environ=environ)


def _build(raw: Mapping[str, Any], *, file: Path, environ: Mapping[str, str]) -> Settings:
    SettingsReader(raw, keys=TOP_KEYS)
    resolved, found = secret_refs.resolve_table(raw, file=file, prefix="", environ=environ)
    top = SettingsReader(resolved)
    base = file.parent
    state = _state(top.table("state", ("dir",)), base)
    policy = policy_table(top.table("policy", POLICY_KEYS), PolicySettings(), run_wide=True)
    rings = rings_table(top)
    windows = windows_table(top.table("windows"), holidays_table(top.table("holidays"), base))
    baselines = baselines_table(top)
    guests, more_secrets = guests_table(top.table("guests", GUEST_KEYS), base, state, environ)
    notifications, notify_secrets = notifications_table(
        top.table("notifications", NOTIFY_KEYS), file=file, environ=environ
    )
    settings: _Digested = {
        "file": file,
        "state": state,
        "temporal": _temporal(top.table("temporal", ("mode", "address", "namespace", "retention", "binary"))),
        "logging": _logging(top.table("logging", ("format", "level"))),
        "providers": _providers(top.table("providers")),
        "targets": targets_table(
            top.table("targets", ("names", "tags", "regex", "exclude_names", "exclude_tags", "exclude_regex"))
        ),
        "groups": groups_table(top, rings, windows, policy, baselines),
        "rings": rings,
        "windows": windows,
        "policy": policy,
        "hosts": hosts_table(top.table("hosts", HOST_KEYS), base, [w.name for w in windows]),
        "guests": guests,
        "health": health_table(top),
        "baselines": baselines,
        "backup": backup_table(top.table("backup", BACKUP_KEYS)),
    }
    digest = _digest(settings, raw.get("providers", {}))
    return Settings(
        **settings,
        digest=digest,
        secrets=tuple(found + more_secrets + notify_secrets),
        notifications=notifications,
        metrics=metrics_table(top.table("metrics", METRICS_KEYS)),
        compliance=compliance_table(top.table("compliance", COMPLIANCE_KEYS)),
        schedules=schedules_table(
            top, settings["groups"], rings, windows, tuple(p.site for p in settings["providers"])
        ),
        # not in the digest: it does not change a plan
        autoupdates=autoupdates_table(top, {g.name: g.window for g in settings["groups"]}),
        assess=assess_table(top.table("assess", ASSESS_KEYS), base),
        facts=facts_table(top.table("facts", FACTS_KEYS)),
    )


# ---------------------------------------------------------------------------------- simple tables
def _state(t: SettingsReader, base: Path) -> StateSettings:
    text = t.text("dir", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR
    path = Path(text).expanduser()
    return StateSettings(dir=path if path.is_absolute() else (base / path).resolve())


def _temporal(t: SettingsReader) -> TemporalSettings:
    address = t.text("address", "127.0.0.1:7233")
    if not _ADDRESS.match(address):
        raise t.error("address", f"{address!r} is not host:port", 'write address = "127.0.0.1:7233"')
    namespace = t.text("namespace", "default", required=True) if t.has("namespace") else "default"
    if not _NAMESPACE.fullmatch(namespace):
        raise t.error(
            "namespace",
            f"{namespace[:40]!r} is not a Temporal namespace name",
            "use 1-255 letters, digits, '.', '_' or '-' starting with a letter or digit, e.g. \"default\"",
        )
    return TemporalSettings(
        mode=t.text("mode", "embedded", choices=("embedded", "external")),
        address=address,
        namespace=namespace,
        retention_s=t.seconds("retention", 30 * 86400, minimum=86400),
        binary=t.text("binary"),
    )


def _logging(t: SettingsReader) -> LoggingSettings:
    return LoggingSettings(
        format=t.text("format", "auto", choices=("auto", "json", "console")),
        level=t.text("level", "info", choices=("debug", "info", "warning", "error")),
    )


# ---------------------------------------------------------------------------------- sites
def _providers(t: SettingsReader) -> tuple[ProviderSite, ...]:
    if not t.raw:
        raise SettingsError(
            t.prefix,
            "no site is configured",
            'add a [providers.<site>] table, e.g. kind = "libvirt" and uri = "qemu:///system"',
        )
    sites = []
    for site in sorted(t.raw):
        if not _SITE.match(site):
            raise t.error(
                site,
                f"{site!r} is not a valid site name",
                "use lower-case letters, digits, '-' and '_' (it names a task queue)",
            )
        table = t.table(site)
        kind = table.text("kind", required=True, choices=tuple(providers.KINDS))
        raw = {k: v for k, v in table.raw.items() if k != "kind"}
        sites.append(ProviderSite(site=site, kind=kind, settings=_adapter_settings(table, kind, site, raw)))
    return tuple(sites)


def _adapter_settings(table: SettingsReader, kind: str, site: str, raw: dict[str, Any]) -> Any:
    """The adapter's own settings; its SettingsError (field relative to the site) gets the table's prefix."""
    try:
        return providers.parse_settings(kind, site, raw)
    except SettingsError as exc:
        raise SettingsError(table.field(exc.field), exc.message, exc.fix) from None
    except ImportError as exc:
        raise table.error(
            "kind",
            f"the {kind} adapter is not available in this installation ({exc})",
            f"install patchwave with the {kind} adapter, or remove [providers.{site}]",
        ) from None
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise table.error(
            "kind",
            f"the {kind} adapter refused this table: {exc}",
            "see config/patchwave.example.toml for the accepted keys",
        ) from None


# ---------------------------------------------------------------------------------- digest
def _canonical(value: Any) -> Any:
    if isinstance(value, Secret):
        return "<secret>"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _digest(settings: Mapping[str, Any], raw_providers: Any) -> str:
    body = {k: _canonical(v) for k, v in settings.items() if k not in ("file", "logging", "providers")}
    body["providers"] = secret_refs.reference_text(raw_providers)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_settings(
    path: str | Path, *, environ: Mapping[str, str] | None = None, state_dir: Path | None = None
) -> Settings:
    """Read, resolve and validate the TOML file at ``path``. Raises :class:`ConfigError`.

    ``environ`` is where ``{ env = "NAME" }`` references are looked up (default: ``os.environ``).
    ``state_dir`` replaces ``[state] dir`` before validation (so ``{state}`` templates follow it).
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(file),
            "-",
            f"cannot read the file ({exc.strerror or exc})",
            "pass an existing file with -c/--config",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(str(file), "-", "is not UTF-8 text", "save the file as UTF-8") from None
    return parse_settings_text(
        text, file=file, environ=os.environ if environ is None else environ, state_dir=state_dir
    )


def parse_settings_text(
    text: str, *, file: Path, environ: Mapping[str, str], state_dir: Path | None = None
) -> Settings:
    """Validate TOML ``text`` as if read from ``file`` (relative paths resolve against its folder)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            str(file), "-", f"is not valid TOML: {exc}", "fix the TOML syntax at that line"
        ) from None
    if state_dir is not None and isinstance(raw.get("state", {}), Mapping):
        raw["state"] = {**raw.get("state", {}), "dir": str(Path(state_dir).expanduser().absolute())}
    return build_settings(raw, file=file, environ=environ)
