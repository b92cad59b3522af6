"""The reconciler: finds what dead runs left behind and, when asked, cleans it up (``patchwave doctor``).

What counts as a leftover (a run is *live* while Temporal reports its workflow running):

* ``orphan_snapshot`` — a snapshot on a platform whose description carries patchwave's ownership
  (:class:`providers.base.SnapshotOwnership`), owned by a run that is not live, and either not
  recorded in the fact store (unknown run, or a different snapshot id), recorded as already
  deleted, or past its TTL. Snapshots of a live run, and recorded ones within their TTL, are left
  alone (they are the rollback points the design keeps).
* ``maintenance_leftover`` — a host the fact store says a run put into maintenance, the run is not
  live, and the platform says the host is still in maintenance. Fix: exit maintenance.
* ``stale_maintenance`` — the same record, but the platform says the host already left
  maintenance. Fix: record ``exited``.
* ``stale_intent`` — the latest intent of a (run, step, action) of a run that is not live has no
  result after it and the step has no final outcome (the run died mid-step). Fix: append a failed
  result ("abandoned").

:meth:`Reconciler.fix` journals its intent in the fact store first (step ``doctor``), re-checks
reality and ownership right before acting, is idempotent (already gone / already exited is
success), and records the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client

from orchestrator.context import Context
from orchestrator.fact_records import SnapshotRecord, utc
from orchestrator.model import StepStatus
from providers.base import Capability, HostRef, NotFound, ProviderError, SnapshotInfo, VmRef

DOCTOR_STEP = "doctor"
#: Seconds a maintenance exit may take (evacuated guests do not come back; only the flag changes).
EXIT_TIMEOUT_S = 1800.0
#: A step with one of these outcomes concluded (its failed attempt's error is in the outcome).
FINAL_STATUSES = (StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK, StepStatus.FAILED, StepStatus.SKIPPED)


@dataclass(frozen=True)
class Finding:
    kind: str  # orphan_snapshot | maintenance_leftover | stale_maintenance | stale_intent
    site: str
    target: str  # "site/name" of the VM or host, or the step id of a stale intent
    run_id: str
    step_id: str
    reason: str
    action: str  # what --fix does, in words
    vm: VmRef | None = None
    host: HostRef | None = None
    snapshot_id: str = ""
    step_action: str = ""  # stale_intent: the action whose attempt never concluded


@dataclass(frozen=True)
class FixResult:
    finding: Finding
    done: bool
    note: str


@dataclass(frozen=True)
class Reconciliation:
    findings: tuple[Finding, ...]
    fixed: tuple[FixResult, ...] = ()

    @property
    def unresolved(self) -> tuple[Finding, ...]:
        done = {r.finding for r in self.fixed if r.done}
        return tuple(f for f in self.findings if f not in done)


async def running_runs(client: Client | None) -> frozenset[str]:
    """Run ids whose PatchRun (or RollbackRun) workflow Temporal reports running; no engine = none."""
    if client is None:
        return frozenset()
    found: set[str] = set()
    query = "ExecutionStatus = 'Running' AND (WorkflowType = 'PatchRun' OR WorkflowType = 'RollbackRun')"
    async for execution in client.list_workflows(query):
        run_id = execution.id
        if execution.workflow_type == "RollbackRun" and "-rollback-" in run_id:
            run_id = run_id.rsplit("-rollback-", 1)[0]
        found.add(run_id)
    return frozenset(found)


class Reconciler:
    """Scans the sites and the fact store of one :class:`Context`; ``live`` = run ids still running."""

    def __init__(self, ctx: Context, *, now: datetime) -> None:
        self.ctx = ctx
        self.now = utc(now)

    # ---------------------------------------------------------------- scan
    def scan(self, live: frozenset[str]) -> list[Finding]:
        findings: list[Finding] = []
        for site in self.ctx.settings.sites:
            findings.extend(self._snapshot_findings(site, live))
        findings.extend(self._maintenance_findings(live))
        findings.extend(self._intent_findings(live))
        return findings

    def _snapshot_findings(self, site: str, live: frozenset[str]) -> Iterable[Finding]:
        provider = self.ctx.provider(site)
        if Capability.SNAPSHOT not in provider.capabilities:
            return
        for vm in provider.inventory().vms:
            try:
                snapshots = provider.list_snapshots(vm.ref)  # type: ignore[attr-defined]
            except NotFound:  # removed since the inventory was taken
                continue
            for snap in snapshots:
                reason = self.orphan_reason(snap, live)
                if reason:
                    owner = snap.ownership
                    assert owner is not None
                    yield Finding(
                        "orphan_snapshot", site, str(vm.ref), owner.run_id, owner.step_id, reason,
                        f"delete snapshot {snap.id}", vm=vm.ref, snapshot_id=snap.id,
                    )  # fmt: skip

    def orphan_reason(self, snap: SnapshotInfo, live: frozenset[str]) -> str:
        """Why ``snap`` is an orphan, or "" when it is not ours or must stay."""
        owner = snap.ownership
        if owner is None or owner.run_id in live:
            return ""
        record = self.ctx.facts.snapshot(owner.run_id, owner.step_id)
        if record is None or record.snapshot_id != snap.id:
            known = self.ctx.facts.get_run(owner.run_id) is not None
            return f"not recorded in the fact store ({'run ' + owner.run_id if known else 'unknown run'})"
        if record.state in ("deleted", "leaked"):
            return f"the fact store says it was {record.state}"
        expires = record.expires_at or owner.expires_at
        if expires and utc(expires) <= self.now:
            return f"run {owner.run_id} is not running and the snapshot expired at {expires}"
        return ""

    def _maintenance_findings(self, live: frozenset[str]) -> Iterable[Finding]:
        for record in self.ctx.facts.hosts_in_maintenance():
            if record.run_id in live:
                continue
            host = record.host
            if self.ctx.provider(host.site).get_host(host).in_maintenance:
                yield Finding(
                    "maintenance_leftover", host.site, str(host), record.run_id, "", 
                    f"run {record.run_id} is not running and left the host in maintenance",
                    "exit maintenance", host=host,
                )  # fmt: skip
            else:
                yield Finding(
                    "stale_maintenance", host.site, str(host), record.run_id, "",
                    f"recorded '{record.state}' by run {record.run_id}, but the host is not in maintenance",
                    "record 'exited'", host=host,
                )  # fmt: skip

    def _intent_findings(self, live: frozenset[str]) -> Iterable[Finding]:
        for run in self.ctx.facts.list_runs(limit=1_000_000):
            if run.run_id in live:
                continue
            latest: dict[tuple[str, str], str] = {}
            for record in self.ctx.facts.step_history(run.run_id):
                if record.step_id != DOCTOR_STEP:
                    latest[(record.step_id, record.action)] = record.phase
            for (step_id, action), phase in sorted(latest.items()):
                outcome = self.ctx.facts.outcome(run.run_id, step_id)
                if phase == "intent" and (outcome is None or outcome.status not in FINAL_STATUSES):
                    yield Finding(
                        "stale_intent", "", step_id, run.run_id, step_id,
                        f"the {action} attempt never reported a result and run {run.run_id} is not running",
                        "record the attempt as abandoned", step_action=action,
                    )  # fmt: skip

    # ---------------------------------------------------------------- fix
    def fix(self, finding: Finding, live: frozenset[str]) -> FixResult:
        """Journal, re-check, act (idempotently), record. ``live`` is re-read by the caller just before."""
        if finding.run_id in live:
            return FixResult(finding, False, f"run {finding.run_id} is running again; left alone")
        act: Callable[[Finding], tuple[bool, str]] = {
            "orphan_snapshot": self._delete_snapshot,
            "maintenance_leftover": self._exit_maintenance,
            "stale_maintenance": self._record_exited,
            "stale_intent": self._abandon,
        }[finding.kind]
        facts = self.ctx.facts
        detail = {"kind": finding.kind, "step": finding.step_id, "snapshot_id": finding.snapshot_id}
        action = f"doctor_{finding.kind}"
        facts.record_intent(finding.run_id, DOCTOR_STEP, action, target=finding.target, detail=detail)
        try:
            done, note = act(finding)
        except ProviderError as exc:
            facts.record_result(finding.run_id, DOCTOR_STEP, action, ok=False, detail=detail, error=str(exc))
            self.ctx.log.warning("doctor_fix_failed", kind=finding.kind, target=finding.target, error=str(exc))
            return FixResult(finding, False, f"failed: {exc}")
        facts.record_result(
            finding.run_id, DOCTOR_STEP, action, ok=done, detail={**detail, "note": note},
            error="" if done else note,
        )  # fmt: skip
        self.ctx.log.info("doctor_fixed" if done else "doctor_refused", kind=finding.kind, target=finding.target)
        return FixResult(finding, done, note)

    def _delete_snapshot(self, finding: Finding) -> tuple[bool, str]:
        assert finding.vm is not None
        provider = self.ctx.require(finding.site, Capability.SNAPSHOT)
        try:
            current = {s.id: s for s in provider.list_snapshots(finding.vm)}.get(finding.snapshot_id)
        except NotFound:
            current = None
        record = self.ctx.facts.snapshot(finding.run_id, finding.step_id)
        if current is None:
            self._mark_deleted(record, finding)
            return True, "already gone"
        owner = current.ownership
        if owner is None or (owner.run_id, owner.step_id) != (finding.run_id, finding.step_id):
            return False, "ownership changed since the scan; not deleting"
        if not self.orphan_reason(current, frozenset()):
            return False, "no longer an orphan (recorded and within its TTL); not deleting"
        try:
            provider.delete_snapshot(finding.vm, finding.snapshot_id)
        except NotFound:
            pass  # deleted meanwhile: the goal is reached
        self._mark_deleted(record, finding)
        return True, "deleted"

    def _mark_deleted(self, record: SnapshotRecord | None, finding: Finding) -> None:
        if record is not None and record.snapshot_id in ("", finding.snapshot_id):
            self.ctx.facts.mark_snapshot(record.run_id, record.step_id, "deleted")

    def _still_recorded(self, finding: Finding) -> bool:
        return any(
            r.run_id == finding.run_id and r.host == finding.host for r in self.ctx.facts.hosts_in_maintenance()
        )

    def _exit_maintenance(self, finding: Finding) -> tuple[bool, str]:
        assert finding.host is not None
        if not self._still_recorded(finding):
            return True, "no longer recorded in maintenance by this run"
        provider = self.ctx.require(finding.site, Capability.HOST_MAINTENANCE)
        note = "was not in maintenance any more"
        if provider.get_host(finding.host).in_maintenance:
            provider.exit_maintenance(finding.host, timeout=EXIT_TIMEOUT_S)
            note = "exited maintenance"
        self.ctx.facts.record_maintenance(finding.run_id, finding.host, "exited")
        return True, note

    def _record_exited(self, finding: Finding) -> tuple[bool, str]:
        assert finding.host is not None
        if self._still_recorded(finding):
            if self.ctx.provider(finding.site).get_host(finding.host).in_maintenance:
                return False, "the host is in maintenance again; run doctor again"
            self.ctx.facts.record_maintenance(finding.run_id, finding.host, "exited")
        return True, "recorded 'exited'"

    def _abandon(self, finding: Finding) -> tuple[bool, str]:
        history = [
            r for r in self.ctx.facts.step_history(finding.run_id, finding.step_id) if r.action == finding.step_action
        ]
        if history and history[-1].phase == "result":
            return True, "a result was recorded meanwhile"
        self.ctx.facts.record_result(
            finding.run_id, finding.step_id, finding.step_action, ok=False,
            detail={"abandoned": True}, error="abandoned: the run stopped before this attempt reported back",
        )  # fmt: skip
        return True, "recorded as abandoned"
