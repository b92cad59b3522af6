"""Per-VM activities. Each one asks reality (and the fact store) first and does only what is missing.

Delivery is at least once: a worker may die after the side effect and before Temporal heard of
it, so every activity here is check-then-act:

* ``vm_snapshot`` reuses a snapshot whose ownership says (run, step); otherwise it records the
  intent in the fact store *before* creating one, and the platform id after.
* ``vm_patch`` skips when the fact store says this (run, step) was patched and the guest's
  installed versions agree; otherwise it assesses, and applies only when updates are pending.
* ``vm_reboot`` records the guest's boot id before rebooting; a re-run whose guest already has a
  new boot id only waits for it.
* ``vm_revert`` reverts only the snapshot id recorded for this (run, step) — never "the latest".
"""

from __future__ import annotations

from temporalio import activity

from orchestrator.activity_support import OwnershipError, heartbeating, translated
from orchestrator.context import Context
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.packages import UpdateSelection
from orchestrator.guests.patcher import GuestPatcher
from orchestrator.guests.reboot import read_boot_id, reboot_and_wait
from orchestrator.health import run_checks, wait_healthy
from orchestrator.messages import (
    HealthReport,
    PatchResult,
    RebootResult,
    RevertResult,
    SnapshotResult,
    VmOutcomeRecord,
    VmTask,
)
from orchestrator.model import StepStatus, UpdateMode, VmOutcome
from providers.base import (
    Capability,
    PowerState,
    ProviderError,
    SnapshotOwnership,
    VmInfo,
    snapshot_name,
    utc_now_iso,
)

REBOOT_TIMEOUT_S = 900.0


class VmActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list:
        return [
            self.vm_recorded_outcome,
            self.vm_baseline_health,
            self.vm_snapshot,
            self.vm_patch,
            self.vm_reboot,
            self.vm_verify_health,
            self.vm_revert,
            self.vm_record_outcome,
            self.vm_assess,
        ]

    def _info(self, task: VmTask) -> VmInfo:
        return self.ctx.provider(task.step.vm.site).get_vm(task.step.vm)

    # ---------------------------------------------------------------- bookkeeping

    @activity.defn(name="vm_recorded_outcome")
    @translated
    def vm_recorded_outcome(self, task: VmTask) -> VmOutcome | None:
        outcome = self.ctx.facts.outcome(task.run_id, task.step.step_id)
        return outcome if isinstance(outcome, VmOutcome) else None

    @activity.defn(name="vm_record_outcome")
    @translated
    def vm_record_outcome(self, record: VmOutcomeRecord) -> None:
        run_id, outcome = record.run_id, record.outcome
        self.ctx.facts.set_outcome(run_id, outcome)
        if outcome.status is StepStatus.SUCCEEDED and outcome.snapshot_id:
            self.ctx.facts.mark_snapshot(run_id, outcome.step_id, "kept")
        self.ctx.log.info(
            "vm_outcome", run=run_id, vm=str(outcome.vm), status=outcome.status.value, error=outcome.error
        )

    # ---------------------------------------------------------------- health

    @activity.defn(name="vm_baseline_health")
    @translated
    def vm_baseline_health(self, task: VmTask) -> HealthReport:
        info = self._info(task)
        target = self.ctx.health_target(task.step.vm, info)
        try:
            with heartbeating("baseline health"):
                # strict: a guest the checks cannot reach (or trust) fails the activity — it was
                # not found unhealthy, it was not checked (VmPatch: FAILED, not touched)
                report = run_checks(self.ctx.health_checks(), target, clock=self.ctx.clock, strict=True)
        finally:
            target.close()
        self._record_health(task, "baseline_health", report)
        return report

    @activity.defn(name="vm_verify_health")
    @translated
    def vm_verify_health(self, task: VmTask) -> HealthReport:
        info = self._info(task)
        target = self.ctx.health_target(task.step.vm, info)
        try:
            with heartbeating(f"waiting for {task.step.vm} to be healthy"):
                report = wait_healthy(
                    self.ctx.health_checks(),
                    target,
                    deadline_s=task.step.policy.health_deadline_s,
                    clock=self.ctx.clock,
                )
        finally:
            target.close()
        self._record_health(task, "verify_health", report)
        return report

    def _record_health(self, task: VmTask, action: str, report: HealthReport) -> None:
        detail = {"checks": [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in report.results]}
        self.ctx.facts.record_result(task.run_id, task.step.step_id, action, ok=report.ok, detail=detail)

    # ---------------------------------------------------------------- snapshot

    @activity.defn(name="vm_snapshot")
    @translated
    def vm_snapshot(self, task: VmTask) -> SnapshotResult:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        provider = self.ctx.require(vm.site, Capability.SNAPSHOT)
        for snap in provider.list_snapshots(vm):
            owner = snap.ownership
            if owner is not None and (owner.run_id, owner.step_id) == (run_id, step_id):
                self.ctx.facts.register_snapshot_created(run_id, step_id, snap.id)
                self.ctx.log.info("snapshot_reused", run=run_id, vm=str(vm), snapshot=snap.id)
                return SnapshotResult(snapshot_id=snap.id, reused=True)
        name = snapshot_name(run_id, step_id)
        self.ctx.facts.register_snapshot_intent(
            run_id, step_id, vm, name, expires_at=task.snapshot_expires_at
        )
        self.ctx.facts.record_intent(run_id, step_id, "snapshot", target=str(vm), detail={"name": name})
        owner = SnapshotOwnership(run_id, step_id, utc_now_iso(self.ctx.clock), task.snapshot_expires_at)
        policy = task.step.policy
        with heartbeating(f"creating snapshot {name}"):
            snap = provider.create_snapshot(
                vm,
                name,
                owner.to_description(),
                memory=policy.snapshot_memory,
                quiesce=policy.snapshot_quiesce,
            )
        self.ctx.facts.register_snapshot_created(run_id, step_id, snap.id)
        self.ctx.facts.record_result(run_id, step_id, "snapshot", ok=True, detail={"snapshot_id": snap.id})
        self.ctx.log.info("snapshot_created", run=run_id, vm=str(vm), snapshot=snap.id)
        return SnapshotResult(snapshot_id=snap.id)

    @activity.defn(name="vm_revert")
    @translated
    def vm_revert(self, task: VmTask) -> RevertResult:
        vm, run_id, step_id = task.step.vm, task.run_id, task.step.step_id
        records = [
            s for s in self.ctx.facts.snapshots(run_id=run_id) if s.step_id == step_id and s.snapshot_id
        ]
        if not records:
            raise OwnershipError(
                f"no snapshot is recorded for {vm} in run {run_id}; refusing to revert anything"
            )
        snapshot_id = records[-1].snapshot_id
        provider = self.ctx.require(vm.site, Capability.SNAPSHOT)
        found = {s.id: s for s in provider.list_snapshots(vm)}.get(snapshot_id)
        owner = found.ownership if found is not None else None
        if owner is None or (owner.run_id, owner.step_id) != (run_id, step_id):
            raise OwnershipError(
                f"snapshot {snapshot_id!r} of {vm} is gone or not owned by run {run_id}; not reverting"
            )
        self.ctx.facts.record_intent(
            run_id, step_id, "revert", target=str(vm), detail={"snapshot_id": snapshot_id}
        )
        with heartbeating(f"reverting {vm} to {snapshot_id}"):
            provider.revert_snapshot(vm, snapshot_id)
            self._power_on_if_stopped(task)
        self.ctx.facts.mark_snapshot(run_id, step_id, "reverted")
        self.ctx.facts.record_result(run_id, step_id, "revert", ok=True, detail={"snapshot_id": snapshot_id})
        self.ctx.log.info("snapshot_reverted", run=run_id, vm=str(vm), snapshot=snapshot_id)
        return RevertResult(snapshot_id=snapshot_id)

    def _power_on_if_stopped(self, task: VmTask) -> None:
        """A disk-only snapshot reverts to a stopped VM: start it again."""
        provider = self.ctx.provider(task.step.vm.site)
        if (
            provider.get_vm(task.step.vm).power is PowerState.STOPPED
            and Capability.POWER in provider.capabilities
        ):
            provider.power_on(task.step.vm)  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- patch and reboot

    @activity.defn(name="vm_patch")
    @translated
    def vm_patch(self, task: VmTask) -> PatchResult:
        run_id, step_id, vm = task.run_id, task.step.step_id, task.step.vm
        channel = self.ctx.guest_channel(vm, self._info(task))
        try:
            patcher = GuestPatcher(channel, clock=self.ctx.clock)
            done = self._applied_before(task, patcher)
            if done is not None:
                return done
            selection = _selection(task)
            with heartbeating(f"assessing {vm}"):
                assessment = patcher.assess()
            self.ctx.facts.record_assessment(run_id, step_id, vm, assessment, phase="before")
            if not _pending(assessment, selection):
                self.ctx.facts.record_result(
                    run_id, step_id, "patch", ok=True, detail={"installed": {}, "nothing": True}
                )
                return PatchResult(nothing_to_do=True, reboot_required=assessment.reboot_required)
            self.ctx.facts.record_intent(
                run_id, step_id, "patch", target=str(vm), detail={"mode": selection.mode}
            )
            with heartbeating(f"patching {vm}"):
                applied = patcher.apply(selection, timeout=task.step.policy.patch_timeout_s)
            names = [c.name for c in applied.changed]
            installed = patcher.installed(names) if names else {}
        finally:
            channel.close()
        changed = tuple(f"{c.name} {c.old}->{c.new}" for c in applied.changed)
        detail = {
            "installed": installed,
            "changed": list(changed),
            "reboot_required": applied.reboot_required,
        }
        self.ctx.facts.record_result(run_id, step_id, "patch", ok=True, detail=detail)
        self.ctx.log.info("guest_patched", run=run_id, vm=str(vm), changed=len(changed))
        return PatchResult(
            changed=changed, reboot_required=applied.reboot_required, nothing_to_do=applied.nothing_to_do
        )

    def _applied_before(self, task: VmTask, patcher: GuestPatcher) -> PatchResult | None:
        """The recorded patch result for (run, step) if the guest still has those versions."""
        for record in reversed(self.ctx.facts.step_history(task.run_id, task.step.step_id)):
            if record.action == "patch" and record.phase == "result" and record.ok:
                installed = dict(record.detail.get("installed", {}))
                if installed and patcher.installed(list(installed)) != installed:
                    return None  # reality disagrees (reverted, or changed since): patch again
                return PatchResult(
                    changed=tuple(record.detail.get("changed", ())),
                    reboot_required=bool(record.detail.get("reboot_required", False)),
                    nothing_to_do=bool(record.detail.get("nothing", False)),
                    already_applied=True,
                )
        return None

    @activity.defn(name="vm_assess")
    @translated
    def vm_assess(self, task: VmTask) -> None:
        """What the guest has pending once its patch is done (or reverted): the compliance report's
        "after" assessment. Read-only."""
        vm = task.step.vm
        channel = self.ctx.guest_channel(vm, self._info(task))
        try:
            with heartbeating(f"assessing {vm}"):
                assessment = GuestPatcher(channel, clock=self.ctx.clock).assess()
        finally:
            channel.close()
        self.ctx.facts.record_assessment(task.run_id, task.step.step_id, vm, assessment, phase="after")

    @activity.defn(name="vm_reboot")
    @translated
    def vm_reboot(self, task: VmTask) -> RebootResult:
        """Reboot and wait for a new boot id; a re-run after an earlier reboot only confirms it."""
        run_id, step_id, vm = task.run_id, task.step.step_id, task.step.vm
        channel = self.ctx.guest_channel(vm, self._info(task))
        try:
            before = self._recorded_boot_id(task)
            if before and _boot_id(channel) not in ("", before):
                return RebootResult(rebooted=True)  # an earlier attempt rebooted it already
            self.ctx.facts.record_intent(
                run_id, step_id, "reboot", target=str(vm), detail={"boot_id": _boot_id(channel)}
            )
            provider = self.ctx.provider(vm.site)
            platform = Capability.GUEST_REBOOT in provider.capabilities  # else through the channel
            with heartbeating(f"rebooting {vm}"):
                done = reboot_and_wait(
                    channel,
                    timeout=REBOOT_TIMEOUT_S,
                    clock=self.ctx.clock,
                    power=provider if platform else None,
                    vm=vm if platform else None,  # type: ignore[arg-type]
                )
        finally:
            channel.close()
        detail = {"boot_id": done.boot_id_after, "kernel": done.kernel_after}
        self.ctx.facts.record_result(run_id, step_id, "reboot", ok=True, detail=detail)
        return RebootResult(rebooted=True)

    def _recorded_boot_id(self, task: VmTask) -> str:
        for record in reversed(self.ctx.facts.step_history(task.run_id, task.step.step_id)):
            if record.action == "reboot" and record.phase == "intent":
                return str(record.detail.get("boot_id", ""))
        return ""


def _boot_id(channel: GuestChannel) -> str:
    try:
        return read_boot_id(channel, timeout=30)
    except ProviderError:
        return ""


def _selection(task: VmTask) -> UpdateSelection:
    policy = task.step.policy
    if policy.update_mode is UpdateMode.PINNED:
        return UpdateSelection(mode="pinned", pins=policy.pins)
    return UpdateSelection(mode=policy.update_mode.value)


def _pending(assessment, selection: UpdateSelection) -> bool:
    if selection.mode == "security":
        return any(u.security for u in assessment.updates)
    return selection.mode == "pinned" or bool(assessment.updates)
