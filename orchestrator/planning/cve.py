"""``run --cve``: which VMs a zero-day run patches, and which packages (pure).

Input: the plan the usual planner made (rings, waves, windows, blockers as for any run), the CVE ids
asked for, and from the fact store each planned VM's latest vulnerability assessment: when it was
taken and its findings of those CVEs (:class:`~orchestrator.vulns.findings.Finding`: package,
installed version, the distribution's fixed version).

Output: :class:`CvePlan` — the plan narrowed to the affected VMs, each with policy ``update_mode =
"cve"`` (``vm_patch`` then reads the VM's packages from the run's stored target set, never from the
payload), the others planned as blocked with a reason (``not_affected``, ``not_assessed``,
``no_fix``), and the target set: one :class:`CveTarget` per (VM, CVE, package) with a fixed version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from orchestrator.config.settings import Settings
from orchestrator.errors import CveSelectionError
from orchestrator.model import Blocker, Plan, UpdateMode, VmStep
from orchestrator.planning.timeline import plan_id_of
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.targets import CveTarget

#: A CVE id as MITRE assigns them: CVE-<year>-<4 or more digits>.
CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")


@dataclass(frozen=True)
class CvePlan:
    plan: Plan
    targets: tuple[CveTarget, ...]


def parse_cves(values: Iterable[str]) -> tuple[str, ...]:
    """Upper-cased, de-duplicated, sorted CVE ids; :class:`CveSelectionError` names a malformed one."""
    cves = []
    for raw in values:
        cve = raw.strip().upper()
        if not CVE_ID.match(cve):
            raise CveSelectionError(
                f"{raw!r} is not a CVE id",
                step="--cve",
                fix="write it as CVE-YYYY-NNNN, e.g. --cve CVE-2024-3094",
            )
        cves.append(cve)
    if not cves:
        raise CveSelectionError("no CVE id given", step="--cve", fix="name at least one: --cve CVE-YYYY-NNNN")
    return tuple(sorted(set(cves)))


def override_windows(settings: Settings) -> Settings:
    """``run --now``: the same settings with no group bound to a maintenance window."""
    return replace(settings, groups=tuple(replace(g, window="") for g in settings.groups))


def narrow(
    plan: Plan,
    cves: Sequence[str],
    findings: Mapping[str, Sequence[Finding]],
    assessed: Mapping[str, str],
) -> CvePlan:
    """``plan`` reduced to the VMs affected by ``cves``. ``findings``: step id -> that VM's findings
    (of any CVE; the others are ignored); ``assessed``: step id -> when its latest assessment was taken."""
    wanted = set(cves)
    blocked = list(plan.blocked)
    targets: list[CveTarget] = []

    def keep(step: VmStep) -> VmStep | None:
        hits = [f for f in findings.get(step.step_id, ()) if f.cve in wanted]
        fixable = [f for f in hits if f.fixed_version]
        if fixable:
            targets.extend(_target(step, f, assessed.get(step.step_id, "")) for f in fixable)
            return replace(step, policy=replace(step.policy, update_mode=UpdateMode.CVE, pins=()))
        blocked.append(_why_not(step, hits, assessed.get(step.step_id), cves))
        return None

    waves = []
    for wave in plan.waves:
        kept = tuple(s for s in (keep(step) for step in wave.vms) if s is not None)
        if kept:
            waves.append(replace(wave, vms=kept))
    order = sorted(blocked, key=lambda b: (b.target, b.code, b.reason))
    narrowed = replace(plan, waves=tuple(waves), blocked=tuple(order))
    return CvePlan(replace(narrowed, plan_id=plan_id_of(narrowed)), tuple(targets))


def packages_of(targets: Iterable[CveTarget]) -> tuple[str, ...]:
    """The package names a VM's targets upgrade (sorted, once each)."""
    return tuple(sorted({t.package for t in targets}))


def _target(step: VmStep, f: Finding, assessed_at: str) -> CveTarget:
    return CveTarget(
        step_id=step.step_id, vm=step.vm, cve=f.cve, package=f.package, installed=f.installed,
        fixed_version=f.fixed_version, severity=f.severity, kev=f.kev, published=f.published,
        assessed_at=assessed_at,
    )  # fmt: skip


def _why_not(step: VmStep, hits: Sequence[Finding], assessed_at: str | None, cves: Sequence[str]) -> Blocker:
    target = str(step.vm)
    if hits:  # affected, but the distribution has no fixed version yet
        which = ", ".join(sorted({f"{f.cve} in {f.package} {f.installed}" for f in hits}))
        return Blocker(
            target, f"{which}: no fixed version in the distribution yet; nothing to install", "no_fix"
        )
    if assessed_at is None:
        return Blocker(
            target,
            "no vulnerability assessment on record: run `patchwave assess` first (the run patches what it found)",
            "not_assessed",
        )
    names = ", ".join(cves)
    return Blocker(target, f"not affected by {names} (latest assessment, {assessed_at})", "not_affected")
