"""The rollout tables: [targets], [[groups]], [rings] and [policy] (with per-group overrides)."""

from __future__ import annotations

import re
from typing import Any

from orchestrator.config.assess import BaselineSettings, group_baselines
from orchestrator.config.backups import BACKUP_POLICIES
from orchestrator.config.names import NAME, NAME_FIX
from orchestrator.config.reader import MATCH_KEYS, match_spec
from orchestrator.config.settings import (
    DEFAULT_GROUP,
    DEFAULT_RING,
    FailureBudget,
    GroupSettings,
    MatchSpec,
    PolicySettings,
    RingSettings,
    TargetSettings,
)
from orchestrator.model import RebootPolicy, UpdateMode
from orchestrator.windows import WindowSpec
from providers.settings import MAX_TIMEOUT_S, SettingsReader, suggest

POLICY_KEYS = ("concurrency", "prepare_ahead", "failure_budget", "count_rolled_back", "reboot", "snapshot_memory", "snapshot_quiesce", "snapshot_ttl",
               "updates", "pins", "health_deadline", "patch_timeout", "reboot_timeout", "default_vm_duration",
               "require_health", "health", "restart_services", "backup",
               "promotion")  # fmt: skip
HEALTH_CHOICES = ("checks", "none")
RESTART_CHOICES = ("none", "needrestart")
#: ``[policy] promotion``: later rings install what the first ring installed ("pinned") or the newest ("latest").
PROMOTIONS = ("pinned", "latest")


#: The longest reboot wait [policy] reboot_timeout accepts (learned durations may raise it up to 3×).
MAX_REBOOT_S = 4 * 3600

_BUDGET_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def targets_table(t: SettingsReader) -> TargetSettings:
    return TargetSettings(
        include=match_spec(t),
        exclude=MatchSpec(
            names=t.strings("exclude_names"),
            tags=t.strings("exclude_tags", ("no-patch",)),
            regex=t.regex("exclude_regex"),
        ),
    )


def policy_table(t: SettingsReader, base: PolicySettings, *, run_wide: bool) -> PolicySettings:
    """``[policy]`` (``run_wide``) or a ``[groups.policy]`` over ``base``."""
    _check_scope(t, run_wide=run_wide)
    updates = UpdateMode(
        t.text(
            "updates", base.updates.value, choices=[m.value for m in UpdateMode if m is not UpdateMode.CVE]
        )
    )
    pins = t.strings("pins", base.pins)
    if updates is UpdateMode.PINNED and not pins:
        raise t.error(
            "pins", 'updates = "pinned" needs at least one pin', 'write pins = ["openssl=3.0.15-1~deb12u1"]'
        )
    return PolicySettings(
        concurrency=t.integer("concurrency", base.concurrency, low=1, high=1000),
        prepare_ahead=t.integer("prepare_ahead", base.prepare_ahead, low=0, high=1000),
        failure_budget=_budget(t, base.failure_budget),
        count_rolled_back=t.boolean("count_rolled_back", base.count_rolled_back),
        reboot=RebootPolicy(t.text("reboot", base.reboot.value, choices=[r.value for r in RebootPolicy])),
        snapshot_memory=t.boolean("snapshot_memory", base.snapshot_memory),
        snapshot_quiesce=t.boolean("snapshot_quiesce", base.snapshot_quiesce),
        snapshot_ttl_s=t.seconds("snapshot_ttl", base.snapshot_ttl_s),
        updates=updates,
        pins=pins,
        health_deadline_s=t.seconds("health_deadline", base.health_deadline_s),
        patch_timeout_s=t.seconds("patch_timeout", base.patch_timeout_s, maximum=MAX_TIMEOUT_S),
        reboot_timeout_s=t.seconds("reboot_timeout", base.reboot_timeout_s, minimum=10, maximum=MAX_REBOOT_S),
        default_vm_duration_s=t.seconds("default_vm_duration", base.default_vm_duration_s),
        require_health=t.boolean("require_health", base.require_health),
        health=t.text("health", base.health, choices=HEALTH_CHOICES),
        restart_services=t.text("restart_services", base.restart_services, choices=RESTART_CHOICES),
        backup=t.text("backup", base.backup, choices=BACKUP_POLICIES),
        promotion=t.text("promotion", base.promotion, choices=list(PROMOTIONS)),
    )


def _check_scope(t: SettingsReader, *, run_wide: bool) -> None:
    """``failure_budget`` and ``require_health`` are run-wide; ``health`` is a group's own choice."""
    if not run_wide and t.has("promotion"):
        raise t.error("promotion", "promotion is run-wide", "set promotion in [policy] only")
    for key in ("failure_budget", "count_rolled_back"):
        if not run_wide and t.has(key):
            raise t.error(key, "the failure budget is run-wide", f"set {key} in [policy] only")
    if not run_wide and t.has("require_health"):
        raise t.error(
            "require_health",
            "whether every VM needs a health check is run-wide",
            'set require_health in [policy]; let this group go unchecked with health = "none"',
        )
    if run_wide and t.has("health"):
        raise t.error(
            "health",
            "health is a group's own choice",
            'write health = "none" in the [groups.policy] of a group whose VMs have no health check',
        )


def _budget(t: SettingsReader, base: FailureBudget) -> FailureBudget:
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


def rings_table(top: SettingsReader) -> tuple[RingSettings, ...]:
    if not top.has("rings"):
        return (RingSettings(name=DEFAULT_RING),)
    t = top.table("rings")
    order = t.strings("order")
    if not order:
        raise t.error("order", "must name at least one ring", 'write order = ["canary", "main"]')
    for index, name in enumerate(order):
        if not NAME.match(name):
            raise t.error("order", f"{name!r} is not a valid ring name", NAME_FIX)
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
                soak_s=r.seconds("soak", 0, minimum=0),
                approval=r.boolean("approval", False),
                wave_size=r.integer("wave_size", 0),
            )
        )
    return tuple(rings)


# ---------------------------------------------------------------------------------- groups
def groups_table(
    top: SettingsReader,
    rings: tuple[RingSettings, ...],
    windows: tuple[WindowSpec, ...],
    policy: PolicySettings,
    baselines: tuple[BaselineSettings, ...] = (),
) -> tuple[GroupSettings, ...]:
    ring_names = [r.name for r in rings]
    window_names = [w.name for w in windows]
    groups: list[GroupSettings] = []
    for t in top.tables("groups"):
        t = t.check_keys(
            ("name", "ring", "match", "window", "policy", "autoupdates", "baseline")
        )  # autoupdates.py
        name = t.text("name", required=True)
        if not NAME.match(name):
            raise t.error("name", f"{name!r} is not a valid group name", NAME_FIX)
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
        match = match_spec(t.table("match", MATCH_KEYS))
        if match.empty and name != DEFAULT_GROUP:
            raise t.error("match", "matches nothing", 'write match = { names = ["web-*"] } (or tags / regex)')
        group_policy = policy_table(t.table("policy", POLICY_KEYS), policy, run_wide=False)
        groups.append(GroupSettings(name=name, ring=ring, match=match, window=window, policy=group_policy,
                                    baselines=group_baselines(t, baselines)))  # fmt: skip
    defaults = [g for g in groups if g.name == DEFAULT_GROUP]
    others = [g for g in groups if g.name != DEFAULT_GROUP]
    fallback = (
        defaults[0]
        if defaults
        else GroupSettings(name=DEFAULT_GROUP, ring=ring_names[-1], match=MatchSpec(), policy=policy)
    )
    return (*others, fallback)


def _hint(value: str, options: Any) -> str:
    fix = suggest(value, options)
    return f" ({fix})" if fix.startswith("did you mean") else ""
