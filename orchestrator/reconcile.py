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
* ``expired_lease`` — a lease (:mod:`orchestrator.facts.leases`) nobody renewed within its TTL:
  the process that held it died. Fix: release it, only once its owner provably no longer runs (a
  run's or rollback's workflow is not running in Temporal; an operation's process is gone) — a
  crashed run's workflow still running continues as soon as a worker serves it, so its leases
  stay (``patchwave resume RUN``).
* ``paused_updater`` — a run that is not live paused a VM's automatic updater and never restored it
  (:mod:`orchestrator.paused_updaters`). Fix: restore that run's pause on the guest.

A snapshot whose run is not finished is never an orphan (:func:`orchestrator.snapshots.in_use`):
it is that run's rollback point. The fixes that act on a platform take the lease of their VM or
host first (owner: this doctor); one another run or operation holds is left alone.

:meth:`Reconciler.fix` journals its intent in the fact store first (step ``doctor``), re-checks
reality and ownership right before acting, is idempotent (already gone / already exited is
success), and records the result.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from orchestrator import snapshots
from orchestrator.context import Context
from orchestrator.errors import LeaseHeld
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import Abandoned, DoctorDetail
from orchestrator.facts.leases import Lease, LeaseTarget
from orchestrator.facts.records import utc
from orchestrator.paused_updaters import restore_dead_pause, unrestored_pauses, vm_named
from providers.base import Capability, HostRef, SnapshotInfo, VmRef
from providers.errors import NotFound, ProviderError

DOCTOR_STEP = "doctor"
#: Seconds a maintenance exit may take (evacuated guests do not come back; only the flag changes).
EXIT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Finding:
    kind: str  # orphan_snapshot | maintenance_leftover | stale_maintenance | stale_intent | expired_lease | paused_updater
    site: str
    target: str  # "site/name" of the VM or host, or the step id of a stale intent
    run_id: str
    step_id: str
    reason: str
    action: str  # what --fix does, in words
    vm: VmRef | None = None
    host: HostRef | None = None
    snapshot_id: str = ""
    step_action: Action | None = None  # stale_intent: the action whose attempt never concluded
    lease: Lease | None = None  # expired_lease: the lease as it was found


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


class Reconciler:
    """Scans the sites and the fact store of one :class:`Context`; ``live`` = run ids still running."""

    def __init__(self, ctx: Context, *, now: datetime) -> None:
        self.ctx = ctx
        self.now = utc(now)
        self.owner = f"doctor-{self.now:%Y%m%d-%H%M%S}-{os.getpid()}"  # of the leases its fixes take

    # ---------------------------------------------------------------- scan
    def scan(self, live: frozenset[str]) -> list[Finding]:
        findings: list[Finding] = []
        for site in self.ctx.settings.sites:
            findings.extend(self._snapshot_findings(site, live))
        findings.extend(self._maintenance_findings(live))
        findings.extend(self._intent_findings(live))
        findings.extend(self._lease_findings(live))
        findings.extend(self._updater_findings(live))
        return findings

    def _snapshot_findings(self, site: str, live: frozenset[str]) -> Iterable[Finding]:
        if Capability.SNAPSHOT not in self.ctx.provider(site).capabilities:
            return
        provider = self.ctx.require(site, Capability.SNAPSHOT)
        for vm in provider.inventory().vms:
            try:
                snapshots = provider.list_snapshots(vm.ref)
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
        if snapshots.in_use(self.ctx.facts, owner.run_id, snap.vm):  # its run's rollback point
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
            latest: dict[tuple[str, Action], Phase] = {}
            for record in self.ctx.facts.step_history(run.run_id):
                if record.step_id != DOCTOR_STEP:
                    latest[(record.step_id, record.action)] = record.phase
            for (step_id, action), phase in sorted(latest.items()):
                outcome = self.ctx.facts.outcome(run.run_id, step_id)
                # a concluded step (final, or skipped) reports its own end; its stray intent is history
                if phase is Phase.INTENT and (outcome is None or not outcome.status.concluded):
                    yield Finding(
                        "stale_intent", "", step_id, run.run_id, step_id,
                        f"the {action} attempt never reported a result and run {run.run_id} is not running",
                        "record the attempt as abandoned", step_action=action,
                    )  # fmt: skip

    def _lease_findings(self, live: frozenset[str]) -> Iterable[Finding]:
        for lease in self.ctx.facts.expired_leases(self.now):
            target, kind = lease.target, lease.operation
            still = "; its workflow is still running in Temporal" if lease.owner in live else ""
            yield Finding(
                "expired_lease", target.site, f"{target.site}/{target.label}", lease.owner, "",
                f"{kind} {lease.owner} (process {lease.holder}) has not renewed its {target.kind} lease since "
                f"{lease.renewed_at[:19]}: that process died{still}", "release the lease", lease=lease,
            )  # fmt: skip

    def _updater_findings(self, live: frozenset[str]) -> Iterable[Finding]:
        for run in self.ctx.facts.list_runs(limit=1_000_000):
            if run.run_id in live:
                continue
            for step_id, target in unrestored_pauses(self.ctx.facts, run.run_id):
                vm = vm_named(self.ctx, target)
                if vm is not None:
                    yield Finding(
                        "paused_updater", vm.site, target, run.run_id, step_id,
                        f"run {run.run_id} is not running and left the automatic updater paused",
                        "restore the automatic updater", vm=vm,
                    )  # fmt: skip

    # ---------------------------------------------------------------- fix
    def fix(self, finding: Finding, live: frozenset[str]) -> FixResult:
        """Journal, re-check, act (idempotently), record. ``live`` is re-read by the caller just before."""
        if finding.run_id in live:
            if finding.kind == "expired_lease":
                why = f"the workflow of {finding.run_id} is still running (`patchwave resume` continues it)"
                return FixResult(finding, False, f"{why}; left alone")
            return FixResult(finding, False, f"run {finding.run_id} is running again; left alone")
        act: Callable[[Finding], tuple[bool, str]] = {
            "orphan_snapshot": self._leased(self._delete_snapshot),
            "maintenance_leftover": self._leased(self._exit_maintenance),
            "stale_maintenance": self._record_exited,
            "stale_intent": self._abandon,
            "expired_lease": self._release_lease,
            "paused_updater": self._leased(self._restore_updater),
        }[finding.kind]
        facts = self.ctx.facts
        detail = DoctorDetail(finding.kind, finding.step_id, finding.snapshot_id)
        action = Action.doctor(finding.kind)
        facts.record_intent(finding.run_id, DOCTOR_STEP, action, target=finding.target, detail=detail)
        try:
            done, note = act(finding)
        except ProviderError as exc:
            facts.record_result(finding.run_id, DOCTOR_STEP, action, ok=False, detail=detail, error=str(exc))
            self.ctx.log.warning(
                "doctor_fix_failed", kind=finding.kind, target=finding.target, error=str(exc)
            )
            return FixResult(finding, False, f"failed: {exc}")
        facts.record_result(
            finding.run_id, DOCTOR_STEP, action, ok=done, detail=replace(detail, note=note),
            error="" if done else note,
        )  # fmt: skip
        self.ctx.log.info(
            "doctor_fixed" if done else "doctor_refused", kind=finding.kind, target=finding.target
        )
        return FixResult(finding, done, note)

    def _leased(self, act: Callable[[Finding], tuple[bool, str]]) -> Callable[[Finding], tuple[bool, str]]:
        """``act`` under the lease of the finding's VM or host: left alone while another holds it."""

        def leased(finding: Finding) -> tuple[bool, str]:
            target = LeaseTarget.vm(finding.vm) if finding.vm else LeaseTarget.host(finding.host)  # type: ignore[arg-type]
            try:
                self.ctx.facts.acquire_leases(self.owner, [target], operation="doctor")
            except LeaseHeld as held:
                return False, f"{held.message}; left alone"
            try:
                return act(finding)
            finally:
                self.ctx.facts.release_leases(self.owner, [target])

        return leased

    def _restore_updater(self, finding: Finding) -> tuple[bool, str]:
        assert finding.vm is not None
        return restore_dead_pause(self.ctx, finding.vm, finding.run_id, finding.step_id)

    def _release_lease(self, finding: Finding) -> tuple[bool, str]:
        lease = finding.lease
        assert lease is not None
        if lease.operation in ("cleanup", "doctor") and process_alive_here(lease.holder):
            return False, f"its process {lease.holder} is still alive; left alone"
        if not self.ctx.facts.release_lease_if(lease):
            return True, "renewed or released meanwhile; nothing to do"
        return True, "released"

    def _delete_snapshot(self, finding: Finding) -> tuple[bool, str]:
        assert finding.vm is not None
        provider = self.ctx.require(finding.site, Capability.SNAPSHOT)
        removal = snapshots.remove(
            self.ctx.facts, provider, finding.vm, finding.snapshot_id, run_id=finding.run_id,
            step_id=finding.step_id, keep=lambda current: not self.orphan_reason(current, frozenset()),
        )  # fmt: skip
        return {
            snapshots.Removal.DELETED: (True, "deleted"),
            snapshots.Removal.GONE: (True, "already gone"),
            snapshots.Removal.REFUSED: (False, "ownership changed since the scan; not deleting"),
            snapshots.Removal.KEPT: (
                False,
                "no longer an orphan (recorded and within its TTL); not deleting",
            ),
        }[removal]

    def _still_recorded(self, finding: Finding) -> bool:
        return any(
            r.run_id == finding.run_id and r.host == finding.host
            for r in self.ctx.facts.hosts_in_maintenance()
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
        assert finding.step_action is not None
        history = self.ctx.facts.step_history(finding.run_id, finding.step_id, action=finding.step_action)
        if history and history[-1].phase is Phase.RESULT:
            return True, "a result was recorded meanwhile"
        self.ctx.facts.record_result(
            finding.run_id, finding.step_id, finding.step_action, ok=False,
            detail=Abandoned(), error="abandoned: the run stopped before this attempt reported back",
        )  # fmt: skip
        return True, "recorded as abandoned"


def process_alive_here(holder: str) -> bool:
    """Is ``holder`` ("host:pid") a live process? A process on another host: assumed alive."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
