"""Proof per CVE after a ``run --cve`` patch: is each targeted CVE fixed on the VM, and does anything
still run the old code?

:func:`verdict` (pure) decides one target:

* ``still-open`` — the fresh assessment still lists (CVE, package), or the installed version is below
  the fixed version (the run reports it as a failure of the VM's goal);
* ``fixed-pending-restart`` — fixed on disk, but the old code may still run: a kernel package whose
  running kernel is older than the newest installed one of its flavor; any other package while the
  guest's restart tool (needrestart on Debian/Ubuntu, needs-restarting on RHEL, ``zypper ps`` on SUSE)
  reports a service or process still using replaced files — the tool does not name the package that
  left it, so every fixed non-kernel target of the VM waits for it — or while there is **no restart
  tool** on the guest and the VM was not rebooted in this run: no evidence that nothing stale runs is
  not taken as proof;
* ``fixed-active`` — fixed, and the evidence says nothing runs the old code (or the VM was rebooted by
  the run after the patch).

:func:`prove_vm` (I/O, the ``vm_prove_cves`` activity) re-assesses the guest read-only (recorded like
any assessment, round = the run id: the fleet's latest assessment is then the post-patch one), reads
the restart evidence, decides every target of the VM and records the proofs (:mod:`orchestrator.facts.cves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.assessment.guest import QUERY_TIMEOUT_S, scan_guest
from orchestrator.assessment.vm import record_scan
from orchestrator.context import Context
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.cves import (
    FIXED_ACTIVE,
    FIXED_PENDING_RESTART,
    STILL_OPEN,
    CveProof,
    CveStore,
)
from orchestrator.facts.vulns import VulnStore
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages import package_manager_for
from orchestrator.guests.packages.base import is_kernel_package
from orchestrator.guests.reboot import kernel_state
from orchestrator.vulns.targets import CveTarget
from orchestrator.vulns.versions import Ordering, at_least, ordering_for
from providers.base import VmInfo, VmRef

#: What the package managers' restart queries print when the guest has no such tool.
NO_TOOL_MARKERS = ("patchwave: needrestart not installed", "patchwave: needs-restarting not installed")


@dataclass(frozen=True)
class RestartEvidence:
    """What the guest says about old code still running."""

    tool: str  # "needrestart" | "needs-restarting" | "zypper ps" | "" (no tool on the guest)
    stale: tuple[str, ...] = ()  # services/processes still using replaced files (the kernel excluded)
    kernel_running: str = ""
    kernel_newest: str = ""  # newest installed kernel of the running flavor ("" = not read / none seen)
    rebooted: bool = False  # the run rebooted the VM after patching it

    @property
    def kernel_pending(self) -> bool:
        return bool(self.kernel_newest) and self.kernel_newest != self.kernel_running


@dataclass(frozen=True)
class ProofSummary:
    """One VM's proof in counts (what crosses Temporal; the proofs are in the fact store)."""

    proved: int
    verdicts: Mapping[str, int]
    still_open: tuple[str, ...] = ()  # "CVE-… (demo-app 1.0 < 1.1)" for the outcome's error


def verdict(
    target: CveTarget, installed: str, open_now: bool, ordering: Ordering | None, evidence: RestartEvidence
) -> CveProof:
    """The verdict on ``target``: ``installed`` is the version on the guest now ("" = not installed),
    ``open_now`` whether the fresh assessment still lists (CVE, package)."""
    pkg, fixed = target.package, target.fixed_version

    def proof(result: str, why: str) -> CveProof:
        return CveProof(target.step_id, target.vm, target.cve, pkg, result, installed, fixed, why)

    below = bool(installed and fixed and ordering is not None and not at_least(ordering, installed, fixed))
    if open_now or below:
        seen = f"{pkg} {installed or '(not installed)'}"
        why = f"{seen} < {fixed} (fixed)" if below else f"{seen}: still listed by the re-assessment"
        return proof(STILL_OPEN, why)
    on_disk = f"{pkg} {installed} >= {fixed}" if installed else f"{pkg} no longer installed"
    if evidence.rebooted:
        return proof(FIXED_ACTIVE, f"{on_disk}; rebooted after the patch")
    if is_kernel_package(pkg):
        if evidence.kernel_pending:
            return proof(FIXED_PENDING_RESTART, f"{on_disk}; running kernel {evidence.kernel_running} is older than "
                         f"the installed {evidence.kernel_newest}: reboot")  # fmt: skip
        return proof(
            FIXED_ACTIVE, f"{on_disk}; running kernel {evidence.kernel_running} is the newest installed"
        )
    if not evidence.tool:
        return proof(FIXED_PENDING_RESTART, f"{on_disk}; no restart evidence (no needrestart / needs-restarting "
                     "on the guest): restart its services or reboot")  # fmt: skip
    if evidence.stale:
        stale = ", ".join(evidence.stale[:5]) + (" …" if len(evidence.stale) > 5 else "")
        return proof(
            FIXED_PENDING_RESTART, f"{on_disk}; {evidence.tool}: still running replaced files: {stale}"
        )
    return proof(FIXED_ACTIVE, f"{on_disk}; {evidence.tool}: nothing runs replaced files")


def decide(
    targets: Sequence[CveTarget],
    installed: Mapping[str, str],
    open_now: set[tuple[str, str]],
    ordering: Ordering | None,
    evidence: RestartEvidence,
) -> tuple[CveProof, ...]:
    """Every target of one VM (see :func:`verdict`)."""
    return tuple(
        verdict(t, installed.get(t.package, ""), (t.cve, t.package) in open_now, ordering, evidence)
        for t in targets
    )


def summarize(proofs: Sequence[CveProof]) -> ProofSummary:
    counts: dict[str, int] = {}
    for p in proofs:
        counts[p.verdict] = counts.get(p.verdict, 0) + 1
    still = tuple(f"{p.cve} ({p.evidence})" for p in proofs if p.verdict == STILL_OPEN)
    return ProofSummary(len(proofs), counts, still)


def prove_vm(ctx: Context, run_id: str, step_id: str, vm: VmRef, info: VmInfo | None, *,
             now: datetime | None = None) -> ProofSummary:  # fmt: skip
    """Re-assess ``vm`` and record the proof of each of its targets in ``run_id`` (raises the guest
    layer's errors when the guest cannot be read: the caller decides what an unproven VM means)."""
    store = CveStore(ctx.facts)
    targets = store.targets(run_id, step_id)
    if not targets:
        return ProofSummary(0, {})
    moment = now or ctx.clock.now()
    channel = ctx.guest_channel(vm, info)
    try:
        scan = scan_guest(channel, ctx.clock)
        evidence = restart_evidence(channel, scan.os, targets, rebooted=_rebooted(ctx, run_id, step_id))
    finally:
        channel.close()
    result = record_scan(ctx.facts, vm, scan, round_id=run_id, now=moment)
    fresh = VulnStore(ctx.facts).assessment(result.assessment_id)
    open_now = {(f.cve, f.package) for f in (fresh.findings if fresh else ())}
    installed = {p.name: p.version for p in scan.packages}
    proofs = decide(targets, installed, open_now, ordering_for(scan.os), evidence)
    store.record_proofs(run_id, proofs)
    summary = summarize(proofs)
    ctx.log.info(
        "cve_proved", run=run_id, vm=str(vm), **{k.replace("-", "_"): v for k, v in summary.verdicts.items()}
    )
    return summary


def restart_evidence(channel: GuestChannel, os_info: OsInfo, targets: Sequence[CveTarget], *,
                     rebooted: bool) -> RestartEvidence:  # fmt: skip
    """The guest's restart tool's answer, and the kernels when a target is a kernel package."""
    pm = package_manager_for(os_info)
    result = channel.run(pm.needs_restart_command(), timeout=QUERY_TIMEOUT_S)
    no_tool = any(marker in result.stdout for marker in NO_TOOL_MARKERS) or not result.ok
    tool = "" if no_tool else _TOOLS.get(pm.name, pm.name)
    stale = () if no_tool else tuple(s for s in pm.parse_needs_restart(result) if s != "kernel")
    running = newest = ""
    if any(is_kernel_package(t.package) for t in targets):
        kernels = kernel_state(channel, timeout=QUERY_TIMEOUT_S)
        running, newest = kernels.running, kernels.newest_same_flavor
    return RestartEvidence(tool, stale, running, newest, rebooted)


_TOOLS = {"apt": "needrestart", "dnf": "needs-restarting", "zypper": "zypper ps"}


def _rebooted(ctx: Context, run_id: str, step_id: str) -> bool:
    """The run rebooted the VM (a REBOOT result recorded ok) after it was patched."""
    history = ctx.facts.step_history(run_id, step_id)
    patched = [r.id for r in history if r.action is Action.PATCH and r.phase is Phase.RESULT and r.ok]
    reboots = [r.id for r in history if r.action is Action.REBOOT and r.phase is Phase.RESULT and r.ok]
    return bool(patched and reboots and max(reboots) > max(patched))
