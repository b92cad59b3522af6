"""Table-by-table validation of the configuration into :mod:`orchestrator.config` values."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import providers
from orchestrator import secrets as secret_refs
from orchestrator.config import (
    DEFAULT_GROUP,
    DEFAULT_RING,
    DEFAULT_STATE_DIR,
    FailureBudget,
    GroupSettings,
    LoggingSettings,
    MatchSpec,
    PolicySettings,
    ProviderSite,
    RingSettings,
    Settings,
    StateSettings,
    TargetSettings,
    TemporalSettings,
)
from orchestrator.config_access import GUEST_KEYS, HOST_KEYS, guests_table, health_table, hosts_table
from orchestrator.config_notifications import KEYS as NOTIFY_KEYS
from orchestrator.config_notifications import notifications_table
from orchestrator.config_reader import MATCH_KEYS, TableReader, suggest
from orchestrator.config_windows import holidays_table, windows_table
from orchestrator.errors import ConfigError
from orchestrator.model import RebootPolicy, UpdateMode
from orchestrator.windows import WindowSpec
from providers.base import Secret, SettingsError

TOP_KEYS = ("state", "temporal", "logging", "providers", "targets", "groups", "rings", "windows", "holidays",
            "policy", "hosts", "guests", "health", "notifications")  # fmt: skip
POLICY_KEYS = ("concurrency", "failure_budget", "reboot", "snapshot_memory", "snapshot_quiesce", "snapshot_ttl",
               "updates", "pins", "health_deadline", "patch_timeout", "default_vm_duration")  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SITE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_BUDGET_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def build_settings(raw: Mapping[str, Any], *, file: Path, environ: Mapping[str, str]) -> Settings:
    top = TableReader(raw, file=file, prefix="", keys=TOP_KEYS)
    resolved, found = secret_refs.resolve_table(raw, file=file, prefix="", environ=environ)
    top = TableReader(resolved, file=file, prefix="")
    base = file.parent
    state = _state(top.table("state", ("dir",)), base)
    policy = _policy(top.table("policy", POLICY_KEYS), PolicySettings(), allow_budget=True)
    rings = _rings(top)
    windows = windows_table(top.table("windows"), holidays_table(top.table("holidays"), base))
    guests, more_secrets = guests_table(top.table("guests", GUEST_KEYS), base, state, environ)
    notifications, notify_secrets = notifications_table(top.table("notifications", NOTIFY_KEYS), environ=environ)
    settings = {
        "file": file,
        "state": state,
        "temporal": _temporal(top.table("temporal", ("mode", "address", "namespace", "retention", "binary"))),
        "logging": _logging(top.table("logging", ("format", "level"))),
        "providers": _providers(top.table("providers")),
        "targets": _targets(
            top.table("targets", ("names", "tags", "regex", "exclude_names", "exclude_tags", "exclude_regex"))
        ),
        "groups": _groups(top, rings, windows, policy),
        "rings": rings,
        "windows": windows,
        "policy": policy,
        "hosts": hosts_table(top.table("hosts", HOST_KEYS), base),
        "guests": guests,
        "health": health_table(top),
    }
    digest = _digest(settings, raw.get("providers", {}))
    return Settings(
        **settings, digest=digest, secrets=tuple(found + more_secrets + notify_secrets), notifications=notifications
    )


# ---------------------------------------------------------------------------------- simple tables
def _state(t: TableReader, base: Path) -> StateSettings:
    text = t.text("dir", DEFAULT_STATE_DIR) or DEFAULT_STATE_DIR
    path = Path(text).expanduser()
    return StateSettings(dir=path if path.is_absolute() else (base / path).resolve())


def _temporal(t: TableReader) -> TemporalSettings:
    address = t.text("address", "127.0.0.1:7233")
    if not _ADDRESS.match(address):
        raise t.error("address", f"{address!r} is not host:port", 'write address = "127.0.0.1:7233"')
    return TemporalSettings(
        mode=t.text("mode", "embedded", choices=("embedded", "external")),
        address=address,
        namespace=t.text("namespace", "default", required=True) if t.has("namespace") else "default",
        retention_s=t.duration("retention", 30 * 86400, minimum=86400),
        binary=t.text("binary"),
    )


def _logging(t: TableReader) -> LoggingSettings:
    return LoggingSettings(
        format=t.text("format", "auto", choices=("auto", "json", "console")),
        level=t.text("level", "info", choices=("debug", "info", "warning", "error")),
    )


def _targets(t: TableReader) -> TargetSettings:
    return TargetSettings(
        include=t.match_spec(),
        exclude=MatchSpec(
            names=t.strings("exclude_names"),
            tags=t.strings("exclude_tags", ("no-patch",)),
            regex=t.regex("exclude_regex"),
        ),
    )


def _policy(t: TableReader, base: PolicySettings, *, allow_budget: bool) -> PolicySettings:
    if not allow_budget and t.has("failure_budget"):
        raise t.error(
            "failure_budget", "the failure budget is run-wide", "set failure_budget in [policy] only"
        )
    updates = UpdateMode(t.text("updates", base.updates.value, choices=[m.value for m in UpdateMode]))
    pins = t.strings("pins", base.pins)
    if updates is UpdateMode.PINNED and not pins:
        raise t.error(
            "pins", 'updates = "pinned" needs at least one pin', 'write pins = ["openssl=3.0.15-1~deb12u1"]'
        )
    return PolicySettings(
        concurrency=t.integer("concurrency", base.concurrency, low=1, high=1000),
        failure_budget=_budget(t, base.failure_budget),
        reboot=RebootPolicy(t.text("reboot", base.reboot.value, choices=[r.value for r in RebootPolicy])),
        snapshot_memory=t.boolean("snapshot_memory", base.snapshot_memory),
        snapshot_quiesce=t.boolean("snapshot_quiesce", base.snapshot_quiesce),
        snapshot_ttl_s=t.duration("snapshot_ttl", base.snapshot_ttl_s),
        updates=updates,
        pins=pins,
        health_deadline_s=t.duration("health_deadline", base.health_deadline_s),
        patch_timeout_s=t.duration("patch_timeout", base.patch_timeout_s),
        default_vm_duration_s=t.duration("default_vm_duration", base.default_vm_duration_s),
    )


def _budget(t: TableReader, base: FailureBudget) -> FailureBudget:
    value = t.raw.get("failure_budget")
    if value is None:
        return base
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**6:
        return FailureBudget(count=value)
    if isinstance(value, str) and (m := _BUDGET_PERCENT.match(value)) and float(m.group(1)) <= 100:
        return FailureBudget(count=0, percent=float(m.group(1)))
    raise t.error(
        "failure_budget",
        f"{value!r} is neither a count nor a percentage",
        'write failure_budget = 1 (VMs) or "10%" (of the VMs in the plan)',
    )


def _rings(top: TableReader) -> tuple[RingSettings, ...]:
    if not top.has("rings"):
        return (RingSettings(name=DEFAULT_RING),)
    t = top.table("rings")
    order = t.strings("order")
    if not order:
        raise t.error("order", "must name at least one ring", 'write order = ["canary", "main"]')
    for index, name in enumerate(order):
        if not _NAME.match(name):
            raise t.error(
                "order", f"{name!r} is not a valid ring name", "use letters, digits, '-', '_' and '.'"
            )
        if name in order[:index]:
            raise t.error("order", f"ring {name!r} is listed twice", "list each ring once")
    for key in sorted(set(t.raw) - {"order"}):
        if key not in order:
            raise t.error(
                key,
                f"ring {key!r} is not in rings.order",
                f"add {key!r} to order, or remove [rings.{key}]" + _hint(key, order),
            )
    rings = []
    for name in order:
        r = t.table(name, ("soak", "approval", "wave_size"))
        rings.append(
            RingSettings(
                name=name,
                soak_s=r.duration("soak", 0, minimum=0),
                approval=r.boolean("approval", False),
                wave_size=r.integer("wave_size", 0),
            )
        )
    return tuple(rings)


# ---------------------------------------------------------------------------------- groups
def _groups(
    top: TableReader, rings: tuple[RingSettings, ...], windows: tuple[WindowSpec, ...], policy: PolicySettings
) -> tuple[GroupSettings, ...]:
    ring_names = [r.name for r in rings]
    window_names = [w.name for w in windows]
    groups: list[GroupSettings] = []
    for t in top.tables("groups"):
        t = t.check_keys(("name", "ring", "match", "window", "policy"))
        name = t.text("name", required=True)
        if not _NAME.match(name):
            raise t.error(
                "name", f"{name!r} is not a valid group name", "use letters, digits, '-', '_' and '.'"
            )
        if name in (g.name for g in groups):
            raise t.error("name", f"group {name!r} is defined twice", "give each [[groups]] a unique name")
        ring = t.text("ring", ring_names[-1])
        if ring not in ring_names:
            raise t.error(
                "ring",
                f"unknown ring {ring!r}",
                f"use one of rings.order: {', '.join(ring_names)}" + _hint(ring, ring_names),
            )
        window = t.text("window")
        if window and window not in window_names:
            raise t.error(
                "window",
                f"unknown window {window!r}",
                (f"use one of: {', '.join(window_names)}" if window_names else f"define [windows.{window}]")
                + _hint(window, window_names),
            )
        match = t.table("match", MATCH_KEYS).match_spec()
        if match.empty and name != DEFAULT_GROUP:
            raise t.error("match", "matches nothing", 'write match = { names = ["web-*"] } (or tags / regex)')
        group_policy = _policy(t.table("policy", POLICY_KEYS), policy, allow_budget=False)
        groups.append(GroupSettings(name=name, ring=ring, match=match, window=window, policy=group_policy))
    defaults = [g for g in groups if g.name == DEFAULT_GROUP]
    others = [g for g in groups if g.name != DEFAULT_GROUP]
    fallback = (
        defaults[0]
        if defaults
        else GroupSettings(name=DEFAULT_GROUP, ring=ring_names[-1], match=MatchSpec(), policy=policy)
    )
    return (*others, fallback)


# ---------------------------------------------------------------------------------- sites
def _providers(t: TableReader) -> tuple[ProviderSite, ...]:
    if not t.raw:
        raise ConfigError(
            str(t.file),
            "providers",
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


def _adapter_settings(table: TableReader, kind: str, site: str, raw: dict[str, Any]) -> Any:
    try:
        return providers.parse_settings(kind, site, raw)
    except SettingsError as exc:
        raise ConfigError(
            str(table.file),
            table.field(exc.field),
            exc.message,
            exc.fix or "see config/patchwave.example.toml",
        ) from None
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


def _hint(value: str, options: Any) -> str:
    fix = suggest(value, options)
    return f" ({fix})" if fix.startswith("did you mean") else ""
