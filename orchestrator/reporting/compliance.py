"""The compliance report: the whole fleet, per machine and per group, from the fact store (no platform calls).

The machines are those of every site's latest inventory (:mod:`orchestrator.facts.inventory`), never
assessed ones included; at a site never inventoried, the machines on record there. Machines on record
whose site's latest inventory no longer lists them are counted as *departed*, not reported.

Per machine: when it was last patched (the latest succeeded VM outcome), the last result, what is
pending by severity (the latest assessment), whether a reboot is pending, which services still run old
libraries (the latest assessment's ``restart_needed``), whether it is compliant
(:mod:`orchestrator.facts.fleet`: the rule), the age of the snapshots patchwave still holds for it,
when its newest backup was verified by a restore, and whether it is marked critical ([backup]
critical_tag) — a critical machine without a verified backup needs attention.
Per group (the configured group at the latest discovery, else the group of the latest plan naming the
VM): the same figures aggregated. Also the hypervisor hosts (:mod:`.hosts`), the fleet's compliance
per day (:mod:`.trend`) and the latest runs' timelines (:mod:`.timelines`).
``build_report(facts, now)`` reads, :mod:`orchestrator.reporting.render` renders (table, json, csv, html).
``now`` is an argument: nothing here reads the clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from orchestrator.facts.autoupdates import AutoUpdateJournal, AutoUpdateRecord
from orchestrator.facts.backups import BackupRecord, BackupStore
from orchestrator.facts.fleet import noncompliant
from orchestrator.facts.inventory import InventoryMachine, InventorySnapshot, InventoryStore
from orchestrator.facts.records import SEVERITIES, AssessmentRecord, utc
from orchestrator.facts.store import FactStore
from orchestrator.model import STALE_KERNEL, VmOutcome, vm_step_id
from orchestrator.reporting.cves import CveSection, cve_sections
from orchestrator.reporting.hosts import HostCompliance, build_hosts
from orchestrator.reporting.timelines import RunTimeline, run_timelines
from orchestrator.reporting.trend import TrendPoint, compliance_trend
from providers.base import VmRef

#: Snapshot states that mean "still on the platform" (see the fact store's snapshot registry).
LIVE_SNAPSHOTS = ("intent", "created", "kept", "reverted")
UNGROUPED = "-"
GRACE_S = 30 * 86400  # [compliance] grace
DEPARTED_LISTED = 100
Key = tuple[str, str]  # (site, platform id)


@dataclass(frozen=True)
class MachineCompliance:
    site: str
    name: str
    vm_id: str
    group: str
    os: str = ""
    kernel: str = ""
    last_patched: str = ""  # ISO UTC of the latest succeeded patch; "" = never
    last_result: str = ""  # succeeded | rolled_back | failed | skipped; "" = never run
    last_run: str = ""
    last_error: str = ""
    assessed_at: str = ""  # "" = never assessed: pending updates unknown
    pending: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    pending_total: int = 0
    security: int = 0
    cves: int = 0
    reboot_required: bool | None = None  # None = unknown
    restart_needed: tuple[str, ...] = ()  # services running old libraries (latest assessment; not the kernel)
    snapshot_ages_s: tuple[int, ...] = ()  # snapshots patchwave still holds, oldest first
    state: str = ""  # power state at the latest discovery; "" = not in an inventory
    compliance: str = "unassessed"  # compliant | noncompliant | unassessed (the rule: facts.fleet)
    critical: bool = False  # marked with [backup] critical_tag (tag or label) at the latest discovery
    backup_verified_at: str = ""  # when its newest restore-verified backup (still existing) was verified
    backup_how: str = ""  # how that verification saw it boot: agent | heartbeat
    updater: str = ""  # its automatic updater at the latest `autoupdates status` ("" = never checked)
    updater_ok: bool | None = (
        None  # that status matched the group's [autoupdates] policy (None = never checked)
    )
    updater_checked_at: str = ""

    @property
    def backup_missing(self) -> bool:
        """Marked critical, and no backup of it was verified by a restore."""
        return self.critical and not self.backup_verified_at

    @property
    def status(self) -> str:
        """``unknown`` (never assessed), ``attention`` (security updates pending, reboot pending, services
        running old libraries, last result failed/rolled back, marked critical without a verified backup)
        or ``ok``."""
        if not self.assessed_at:
            return "unknown"
        if self.security or self.reboot_required or self.restart_needed:
            return "attention"
        if self.last_result in ("failed", "rolled_back"):
            return "attention"
        if self.backup_missing:
            return "attention"
        return "ok"

    @property
    def oldest_snapshot_s(self) -> int | None:
        return max(self.snapshot_ages_s) if self.snapshot_ages_s else None


@dataclass(frozen=True)
class GroupCompliance:
    group: str
    machines: int = 0
    ok: int = 0
    attention: int = 0
    unknown: int = 0
    noncompliant: int = 0
    pending: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    pending_total: int = 0
    security: int = 0
    reboot_required: int = 0
    restart_needed: int = 0  # machines with services running old libraries
    failed: int = 0  # last result failed or rolled back
    never_patched: int = 0
    snapshots: int = 0
    oldest_snapshot_s: int | None = None
    least_recently_patched: str = ""  # the oldest "last patched" among machines that were patched


@dataclass(frozen=True)
class ComplianceReport:
    generated_at: str  # ISO UTC (the ``now`` it was built for)
    machines: tuple[MachineCompliance, ...]
    groups: tuple[GroupCompliance, ...]
    totals: GroupCompliance
    hosts: tuple[HostCompliance, ...] = ()
    inventories: tuple[InventorySnapshot, ...] = ()  # each site's latest discovery
    departed: tuple[str, ...] = ()  # site/name of machines gone from their site's inventory (the first 100)
    departed_count: int = 0
    trend: tuple[TrendPoint, ...] = ()  # per day, oldest first
    timelines: tuple[RunTimeline, ...] = ()  # the latest runs, newest first
    grace_s: int = GRACE_S
    cves: tuple[CveSection, ...] = ()  # the latest `run --cve` runs, per CVE (reporting/cves.py)


@dataclass(frozen=True)
class _History:
    """What the fact store holds per machine (site, platform id)."""

    assessed: Mapping[Key, AssessmentRecord]
    results: Mapping[Key, tuple[str, VmOutcome]]  # run id, latest final outcome
    patched: Mapping[Key, tuple[str, VmOutcome]]  # recorded_at, latest succeeded outcome
    ages: Mapping[Key, list[int]]
    names: Mapping[Key, str]


def build_report(
    facts: FactStore, now: datetime, *, grace_s: int = GRACE_S, runs_scanned: int = 200, trend_days: int = 30,
    timeline_runs: int = 5, timeline_vms: int = 40, critical_tag: str = "critical",
) -> ComplianceReport:  # fmt: skip
    """Read the fact store and aggregate. ``runs_scanned``: recent runs whose plans name the groups (and
    whose journals hold the hosts' read-only assessments)."""
    store = InventoryStore(facts)
    snapshots, inventory = store.current(), store.machines()
    inventoried = {s.site for s in snapshots}
    seen = _history(facts, now)
    vms = {(m.site, m.id): m for m in inventory if m.kind == "vm"}
    keys = set(vms) | {k for k in seen.names if k[0] not in inventoried}
    departed = sorted(f"{k[0]}/{seen.names[k]}" for k in seen.names if k[0] in inventoried and k not in vms)
    groups = _groups(facts, runs_scanned)
    critical, verified = store.vms_marked(critical_tag), BackupStore(facts).last_verified()
    updaters = {(r.vm.site, r.vm.id): r for r in AutoUpdateJournal(facts).latest("status")}
    machines = sorted(
        (_with_updater(_with_backup(_machine(key, vms.get(key), groups, seen, now, grace_s), key, critical,
                                    verified), updaters.get(key))
         for key in keys),
        key=lambda m: (m.group, m.site, m.name, m.vm_id),
    )  # fmt: skip
    by_group: dict[str, list[MachineCompliance]] = {}
    for m in machines:
        by_group.setdefault(m.group, []).append(m)
    run_ids = [r.run_id for r in facts.list_runs(limit=runs_scanned)]
    return ComplianceReport(
        generated_at=utc(now).isoformat(timespec="seconds"),
        machines=tuple(machines),
        groups=tuple(aggregate(name, members) for name, members in sorted(by_group.items())),
        totals=aggregate("all", machines),
        hosts=build_hosts(facts, [m for m in inventory if m.kind == "host"], inventoried, run_ids),
        inventories=tuple(snapshots),
        departed=tuple(departed[:DEPARTED_LISTED]),
        departed_count=len(departed),
        trend=compliance_trend(facts, now, grace_s, days=trend_days) if trend_days else (),
        timelines=run_timelines(facts, runs=timeline_runs, vms=timeline_vms) if timeline_runs else (),
        grace_s=grace_s,
        cves=cve_sections(facts, run_ids),
    )


def _with_backup(
    m: MachineCompliance, key: Key, critical: set[Key], verified: Mapping[Key, BackupRecord]
) -> MachineCompliance:
    """The machine's last verified backup, and whether it is marked critical."""
    backup = verified.get(key)
    return replace(
        m, critical=key in critical, backup_verified_at=backup.verified_at if backup else "",
        backup_how=backup.verified_how if backup else "",
    )  # fmt: skip


def _with_updater(m: MachineCompliance, record: AutoUpdateRecord | None) -> MachineCompliance:
    """The machine's automatic updater as its latest ``autoupdates status`` found it."""
    if record is None:
        return m
    return replace(m, updater=updater_text(record.mode, record.detail), updater_ok=record.ok,
                   updater_checked_at=record.recorded_at)  # fmt: skip


def updater_text(mode: str, detail: Mapping[str, Any]) -> str:
    """``unattended-upgrades enabled (policy security)``, ``... drift: 2``, ``not installed`` ..."""
    name = str(detail.get("updater") or "updater")
    if not detail.get("installed"):
        state = "not installed"
    else:
        state = "enabled" if detail.get("enabled") else "disabled"
        if detail.get("paused_by"):
            state += f", paused by {detail['paused_by']}"
    drift = detail.get("drift") or []
    last = detail.get("last_run") or {}
    parts = [f"{name} {state} (policy {mode})"]
    if drift:
        parts.append(f"drift: {len(drift)}")
    if isinstance(last, Mapping) and last.get("result"):
        parts.append(f"last run {last['result']}")
    return ", ".join(parts)


def _history(facts: FactStore, now: datetime) -> _History:
    assessed = {(a.vm.site, a.vm.id): a for a in facts.latest_assessments()}
    results = {(o.vm.site, o.vm.id): (run, o) for run, _, o in facts.latest_vm_outcomes()}
    patched = {(o.vm.site, o.vm.id): (at, o) for _, at, o in facts.latest_vm_outcomes(status="succeeded")}
    ages: dict[Key, list[int]] = {}
    names: dict[Key, str] = {}
    for snap in facts.snapshots():
        if snap.state in LIVE_SNAPSHOTS:
            age = int((utc(now) - utc(snap.created_at)).total_seconds())
            ages.setdefault((snap.vm.site, snap.vm.id), []).append(max(0, age))
            names[(snap.vm.site, snap.vm.id)] = snap.vm.name
    for key, a in assessed.items():
        names[key] = a.vm.name
    for key, (_, o) in results.items():
        names[key] = o.vm.name
    return _History(assessed, results, patched, ages, names)


def _groups(facts: FactStore, limit: int) -> dict[str, str]:
    """step id -> group, from the newest plan that names the step (plan rows, or the whole plan in
    ``plan_json`` of a run recorded before plans were stored in rows; read without value types)."""
    found: dict[str, str] = {}
    for run in facts.list_runs(limit=limit):  # newest first
        for step_id, group in facts.plan_groups([run.run_id]).items():
            found.setdefault(step_id, group or UNGROUPED)
        for wave in json.loads(run.plan_json).get("waves", ()):
            for step in wave.get("vms", ()):
                found.setdefault(step["step_id"], step.get("group", UNGROUPED))
    return found


def _machine(
    key: Key, seen_in: InventoryMachine | None, groups: Mapping[str, str], seen: _History, now: datetime,
    grace_s: int,
) -> MachineCompliance:  # fmt: skip
    site, vm_id = key
    group = (seen_in.group if seen_in else "") or groups.get(vm_step_id(VmRef(site, vm_id, "")), UNGROUPED)
    base = MachineCompliance(site=site, name=seen_in.name if seen_in else seen.names[key], vm_id=vm_id,
                             group=group, state=seen_in.state if seen_in else "",
                             snapshot_ages_s=tuple(sorted(seen.ages.get(key, []), reverse=True)))  # fmt: skip
    values: dict[str, object] = {}
    patched_at = ""
    if (patched := seen.patched.get(key)) is not None:
        patched_at = patched[0]
        values["last_patched"] = patched[1].finished_at or patched[1].started_at or patched_at
    if (result := seen.results.get(key)) is not None:
        run, outcome = result
        values.update(last_result=str(outcome.status), last_run=run, last_error=outcome.error)
    if (assessment := seen.assessed.get(key)) is not None:
        critical = int(assessment.severities.get("critical", 0))
        rule = noncompliant(critical, assessment.security, patched_at, now, grace_s)
        values.update(
            os=assessment.os, kernel=assessment.kernel, assessed_at=assessment.taken_at,
            pending={s: int(assessment.severities.get(s, 0)) for s in SEVERITIES},
            pending_total=assessment.pending, security=assessment.security, cves=assessment.cves,
            reboot_required=assessment.reboot_required, compliance="noncompliant" if rule else "compliant",
            restart_needed=tuple(n for n in assessment.restart_needed if n != STALE_KERNEL),
        )  # fmt: skip
    return replace(base, **values)  # type: ignore[arg-type]  # values: MachineCompliance fields by name, of several types


def aggregate(name: str, machines: Iterable[MachineCompliance]) -> GroupCompliance:
    members = list(machines)
    pending = dict.fromkeys(SEVERITIES, 0)
    for m in members:
        for severity in SEVERITIES:
            pending[severity] += m.pending.get(severity, 0)
    ages = [age for m in members for age in m.snapshot_ages_s]
    patched = sorted(m.last_patched for m in members if m.last_patched)
    return GroupCompliance(
        group=name,
        machines=len(members),
        ok=sum(1 for m in members if m.status == "ok"),
        attention=sum(1 for m in members if m.status == "attention"),
        unknown=sum(1 for m in members if m.status == "unknown"),
        noncompliant=sum(1 for m in members if m.compliance == "noncompliant"),
        pending=pending,
        pending_total=sum(m.pending_total for m in members),
        security=sum(m.security for m in members),
        reboot_required=sum(1 for m in members if m.reboot_required),
        restart_needed=sum(1 for m in members if m.restart_needed),
        failed=sum(1 for m in members if m.last_result in ("failed", "rolled_back")),
        never_patched=sum(1 for m in members if not m.last_patched),
        snapshots=len(ages),
        oldest_snapshot_s=max(ages) if ages else None,
        least_recently_patched=patched[0] if patched else "",
    )


def human_age(seconds: int | None) -> str:
    """``3d 4h``, ``5h 12m``, ``7m``; ``-`` for None."""
    if seconds is None:
        return "-"
    days, rest = divmod(max(0, int(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def since(iso: str, now: str) -> str:
    """How long ago ``iso`` was, relative to ``now`` (both ISO); ``never`` for ""."""
    if not iso:
        return "never"
    return human_age(int((utc(now) - utc(iso)).total_seconds())) + " ago"
