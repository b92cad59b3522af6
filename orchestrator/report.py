"""The compliance report: per machine and per group, from the fact store (no platform calls).

Per machine: when it was last patched (the latest succeeded VM outcome), the last result, what is
pending by severity (the latest assessment), whether a reboot is pending, and the age of the
snapshots patchwave still holds for it. Per group (the group of the latest plan naming the VM):
the same figures aggregated. ``build_report(facts, now)`` reads, :mod:`orchestrator.report_render`
renders (table, json, csv, html). ``now`` is an argument: nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from orchestrator.fact_records import SEVERITIES, AssessmentRecord, utc
from orchestrator.facts import FactStore
from orchestrator.model import VmOutcome

#: Snapshot states that mean "still on the platform" (see the fact store's snapshot registry).
LIVE_SNAPSHOTS = ("intent", "created", "kept", "reverted")
UNGROUPED = "-"


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
    snapshot_ages_s: tuple[int, ...] = ()  # snapshots patchwave still holds, oldest first

    @property
    def status(self) -> str:
        """``unknown`` (never assessed), ``attention`` (security updates pending, reboot pending, last
        result failed/rolled back) or ``ok``."""
        if not self.assessed_at:
            return "unknown"
        if self.security or self.reboot_required or self.last_result in ("failed", "rolled_back"):
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
    pending: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    pending_total: int = 0
    security: int = 0
    reboot_required: int = 0
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


def build_report(facts: FactStore, now: datetime, *, runs_scanned: int = 200) -> ComplianceReport:
    """Read the fact store and aggregate. ``runs_scanned``: recent runs whose plans name the groups."""
    groups = _groups(facts, runs_scanned)
    assessed = {(a.vm.site, a.vm.id): a for a in facts.latest_assessments()}
    results = {(o.vm.site, o.vm.id): (run, o) for run, _, o in facts.latest_vm_outcomes()}
    patched = {(o.vm.site, o.vm.id): o for _, _, o in facts.latest_vm_outcomes(status="succeeded")}
    ages: dict[tuple[str, str], list[int]] = {}
    names: dict[tuple[str, str], str] = {}
    for snap in facts.snapshots():
        if snap.state in LIVE_SNAPSHOTS:
            age = int((utc(now) - utc(snap.created_at)).total_seconds())
            ages.setdefault((snap.vm.site, snap.vm.id), []).append(max(0, age))
            names[(snap.vm.site, snap.vm.id)] = snap.vm.name
    for key, a in assessed.items():
        names[key] = a.vm.name
    for key, (_, o) in results.items():
        names[key] = o.vm.name
    machines = [
        _machine(key, names[key], groups.get(f"vm:{key[0]}:{key[1]}", UNGROUPED), assessed.get(key),
                 results.get(key), patched.get(key), ages.get(key, []))
        for key in names
    ]  # fmt: skip
    machines.sort(key=lambda m: (m.group, m.site, m.name, m.vm_id))
    by_group: dict[str, list[MachineCompliance]] = {}
    for m in machines:
        by_group.setdefault(m.group, []).append(m)
    return ComplianceReport(
        generated_at=utc(now).isoformat(timespec="seconds"),
        machines=tuple(machines),
        groups=tuple(aggregate(name, members) for name, members in sorted(by_group.items())),
        totals=aggregate("all", machines),
    )


def _groups(facts: FactStore, limit: int) -> dict[str, str]:
    """step id -> group, from the newest plan that names the step."""
    found: dict[str, str] = {}
    for run in facts.list_runs(limit=limit):  # newest first
        for step in run.plan().vm_steps:
            found.setdefault(step.step_id, step.group)
    return found


def _machine(
    key: tuple[str, str],
    name: str,
    group: str,
    assessment: AssessmentRecord | None,
    result: tuple[str, VmOutcome] | None,
    patched: VmOutcome | None,
    ages: list[int],
) -> MachineCompliance:
    site, vm_id = key
    base = MachineCompliance(site=site, name=name, vm_id=vm_id, group=group,
                             snapshot_ages_s=tuple(sorted(ages, reverse=True)))  # fmt: skip
    values: dict[str, object] = {}
    if patched is not None:
        values["last_patched"] = patched.finished_at or patched.started_at
    if result is not None:
        run, outcome = result
        values.update(last_result=str(outcome.status), last_run=run, last_error=outcome.error)
    if assessment is not None:
        values.update(
            os=assessment.os, kernel=assessment.kernel, assessed_at=assessment.taken_at,
            pending={s: int(assessment.severities.get(s, 0)) for s in SEVERITIES},
            pending_total=assessment.pending, security=assessment.security, cves=assessment.cves,
            reboot_required=assessment.reboot_required,
        )  # fmt: skip
    return replace(base, **values)  # type: ignore[arg-type]


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
        pending=pending,
        pending_total=sum(m.pending_total for m in members),
        security=sum(m.security for m in members),
        reboot_required=sum(1 for m in members if m.reboot_required),
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
