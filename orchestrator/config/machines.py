"""How patchwave reaches and checks machines: the ``[hosts]``, ``[guests]`` and ``[[health]]`` tables."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

from orchestrator import secrets as secret_refs
from orchestrator.config.reader import MATCH_KEYS, match_spec, reported_in
from orchestrator.config.settings import (
    GuestOverride,
    GuestSettings,
    HealthCheckSettings,
    HostOverride,
    HostSettings,
    SshSettings,
    StateSettings,
)
from orchestrator.errors import ConfigError
from orchestrator.model import RebootPolicy
from providers.settings import MAX_TIMEOUT_S, Secret, SettingsReader

SSH_KEYS = ("user", "port", "host", "key_file", "known_hosts", "trust_on_first_use", "password")
HOST_KEYS = ("enabled", "scope", "patch", "reboot", "evacuate", "depot_urls", "default_duration", "ssh",
             "overrides", "window")  # fmt: skip
#: ``[hosts] window = "none"``: the host phase waits for no window, even when its guests have one.
NO_WINDOW = "none"
GUEST_KEYS = ("channel", "ssh", "overrides", "overrides_file", "local_root")
HEALTH_KEYS = ("name", "kind", "command", "url", "address", "unit", "expect_status", "timeout", "retries",
               "interval", "match")  # fmt: skip
CHANNELS = ("agent", "ssh", "local")
HEALTH_KINDS = ("command", "http", "tcp", "systemd")


def _ssh(t: SettingsReader, base: Path, default: SshSettings) -> SshSettings:
    return SshSettings(
        user=t.text("user", default.user) or default.user,
        port=t.integer("port", default.port, low=1, high=65535),
        host=t.text("host", default.host),
        key_file=t.path("key_file", base=base) or default.key_file,
        known_hosts=t.path("known_hosts", base=base) or default.known_hosts,
        trust_on_first_use=t.boolean("trust_on_first_use", default.trust_on_first_use),
        password=t.secret("password") or default.password,
    )


def hosts_table(t: SettingsReader, base: Path, windows: Sequence[str] = ()) -> HostSettings:
    """``windows``: the names of the ``[windows.X]`` tables (``window`` must name one, or "none")."""
    window = t.text("window", "")
    if window and window != NO_WINDOW and window not in windows:
        known = ", ".join(f'"{w}"' for w in windows)
        raise t.error(
            "window",
            f"unknown window {window!r}",
            (f'use one of: {known}, or "none"' if known else f"define [windows.{window}]")
            + ' (leave it out to use the window of the hosts\' guests; "none" patches hosts without one)',
        )
    return HostSettings(
        window=window,
        enabled=t.boolean("enabled", True),
        scope=t.text("scope", "targets", choices=("targets", "all")),
        patch=t.text("patch", "platform", choices=("platform", "ssh", "none")),
        reboot=RebootPolicy(t.text("reboot", "if-required", choices=[r.value for r in RebootPolicy])),
        evacuate=t.boolean("evacuate", True),
        depot_urls=t.strings("depot_urls"),
        default_duration_s=t.seconds("default_duration", 1800),
        ssh=_ssh(t.table("ssh", SSH_KEYS), base, SshSettings(host="")),
        overrides=_host_overrides(t.table("overrides"), base=base),
    )


def _host_overrides(t: SettingsReader, *, base: Path) -> tuple[HostOverride, ...]:
    """``[hosts.overrides."NAME"]`` (NAME = host name or "site/name"): ``ssh = { port = 2223, ... }``."""
    result = []
    for name in sorted(t.raw):
        ssh_table = t.table(name, ("ssh",)).table("ssh", SSH_KEYS)
        ssh = _ssh(ssh_table, base, SshSettings(host=""))
        pairs = tuple((f.name, getattr(ssh, f.name)) for f in fields(SshSettings) if f.name in ssh_table.raw)
        result.append(HostOverride(name=name, ssh=pairs))
    return tuple(result)


def guests_table(
    t: SettingsReader, base: Path, state: StateSettings, environ: Mapping[str, str]
) -> tuple[GuestSettings, list[Secret]]:
    templates = {"state": str(state.dir)}
    overrides_file = t.path("overrides_file", base=base, templates=templates)
    found: list[Secret] = []
    overrides: list[GuestOverride] = []
    if overrides_file is not None and overrides_file.exists():
        with reported_in(overrides_file):
            extra, found = _overrides_file(overrides_file, environ)
            overrides.extend(_overrides(extra, base=overrides_file.parent, templates=templates))
    overrides.extend(_overrides(t.table("overrides"), base=base, templates=templates))
    settings = GuestSettings(
        channel=t.text("channel", "agent", choices=CHANNELS),
        ssh=_ssh(t.table("ssh", SSH_KEYS), base, SshSettings()),
        overrides=tuple(overrides),
        overrides_file=overrides_file,
        local_root=t.path("local_root", base=base, templates=templates),
    )
    return settings, found


def _overrides_file(path: Path, environ: Mapping[str, str]) -> tuple[SettingsReader, list[Secret]]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            str(path),
            "-",
            f"cannot read the guest overrides file: {exc}",
            "regenerate it (`patchwave lab up`) or remove guests.overrides_file",
        ) from None
    resolved, found = secret_refs.resolve_table(raw, file=path, prefix="", environ=environ)
    top = SettingsReader(resolved, keys=("overrides",))
    return top.table("overrides"), found


def _overrides(t: SettingsReader, *, base: Path, templates: Mapping[str, str]) -> list[GuestOverride]:
    result = []
    for name in sorted(t.raw):
        o = t.table(name, ("channel", "ssh", "local_root"))
        channel = o.text("channel", "", choices=("", *CHANNELS))
        ssh_table = o.table("ssh", SSH_KEYS)
        ssh = _ssh(ssh_table, base, SshSettings())
        pairs = tuple((f.name, getattr(ssh, f.name)) for f in fields(SshSettings) if f.name in ssh_table.raw)
        result.append(
            GuestOverride(
                name=name,
                channel=channel,
                ssh=pairs,
                local_root=o.path("local_root", base=base, templates=templates),
            )
        )
    return result


def health_table(top: SettingsReader) -> tuple[HealthCheckSettings, ...]:
    checks: list[HealthCheckSettings] = []
    for t in top.tables("health"):
        t = t.check_keys(HEALTH_KEYS)
        name = t.text("name", required=True)
        if name in (c.name for c in checks):
            raise t.error(
                "name", f"health check {name!r} is defined twice", "give each [[health]] a unique name"
            )
        kind = t.text("kind", required=True, choices=HEALTH_KINDS)
        needed = {"command": "command", "http": "url", "tcp": "address", "systemd": "unit"}[kind]
        example = {"command": '"systemctl is-active nginx"', "http": '"http://{ip}:8080/health"',
                   "tcp": '"{ip}:22"', "systemd": '"nginx.service"'}[kind]  # fmt: skip
        if not t.text(needed):
            raise t.error(needed, f"a {kind} check needs {needed}", f"write {needed} = {example}")
        for other in {"command", "url", "address", "unit"} - {needed}:
            if t.has(other):
                raise t.error(
                    other, f"is not used by a {kind} check", f"remove it, or write {needed} = {example}"
                )
        if kind == "http" and not re.match(r"^https?://", t.text("url")):
            raise t.error("url", "must start with http:// or https://", f"write url = {example}")
        checks.append(HealthCheckSettings(
            name=name, kind=kind, command=t.text("command"), url=t.text("url"), address=t.text("address"),
            unit=t.text("unit"), expect_status=t.integer("expect_status", 200, low=100, high=599),
            timeout_s=float(t.seconds("timeout", 5, maximum=MAX_TIMEOUT_S)), retries=t.integer("retries", 3, high=100),
            interval_s=float(t.seconds("interval", 2)), match=match_spec(t.table("match", MATCH_KEYS)),
        ))  # fmt: skip
    return tuple(checks)
