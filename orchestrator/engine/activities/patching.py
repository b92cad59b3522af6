"""One VM's patch, as ``vm_patch`` performs it: done only when the package manager is done and consistent.

1. A PATCH result recorded for (run, step) whose versions the guest still has: done before.
2. A PATCH intent without a result (a retried or resumed attempt; the job it names may still run):
   carry on with that job. Otherwise assess (a busy or half-done dpkg is never "nothing to do"),
   journal the intent — the mode, the job id, the versions before and the planned ones — and start
   the apply as a detached job in the guest (:mod:`orchestrator.guests.job`).
3. Wait for the job (heartbeating) until the patch deadline: the *first* PATCH intent's time plus
   ``policy.patch_timeout``, so retries and resumes never extend it. Still running then:
   :class:`~orchestrator.guests.errors.PatchTimedOut` — the job is left alone (never kill dpkg) and
   VmPatch reverts the snapshot through the hypervisor.
4. Verify: nobody holds the package database, it is consistent, the planned versions are installed
   (:meth:`~orchestrator.guests.patcher.GuestPatcher.verify`); anything else is
   :class:`~orchestrator.guests.errors.PackageDatabaseInconsistent`, and VmPatch reverts.

Patch baselines: when the VM's group picks a baseline for its OS family, the selection is the exact
pins of that baseline's approved set (:meth:`PatchStep.baseline_selection`), journaled in the intent.

Pinned promotion (:mod:`.promotion`): a later-ring VM's selection is the exact pins of the run's
pin set (journaled in the intent, so a resumed attempt starts the same install); a first-ring VM
records what it installed before its PATCH result.

A failure that ends the patch (timeout, inconsistency, a failed apply) is journaled as a failed
PATCH result, so a later attempt starts afresh instead of waiting on the same job again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.context import Context
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.promotion import Promotion
from orchestrator.engine.payloads import PatchResult, VmTask
from orchestrator.errors import OrchestratorError
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.cves import CveStore
from orchestrator.facts.details import PatchDetail, PatchIntent
from orchestrator.facts.records import StepRecord
from orchestrator.facts.vuln_rounds import RoundStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.guests import job as jobs
from orchestrator.guests.errors import GuestUnreachable, PackageManagerError, PatchTimedOut
from orchestrator.guests.packages.base import PendingUpdate, UpdateSelection
from orchestrator.guests.patcher import Assessment, GuestPatcher, changes_between, pin_target
from orchestrator.model import PackageChange, UpdateMode
from orchestrator.planning.cve import packages_of
from orchestrator.vulns.approval import approve


class PatchStep:
    """The patch of ``task``'s VM through ``patcher`` (whose channel the caller closes)."""

    def __init__(self, ctx: Context, task: VmTask, patcher: GuestPatcher) -> None:
        self.ctx = ctx
        self.task = task
        self.patcher = patcher
        self.selection = selection_for(ctx, task)
        self.timeout_s = float(task.step.policy.patch_timeout_s)
        self.promotion = Promotion(ctx, task, patcher)
        self.baseline = ""  # the patch baseline whose approved set this patch installs ("" = none)

    @property
    def _ids(self) -> tuple[str, str]:
        return self.task.run_id, self.task.step.step_id

    def run(self) -> PatchResult:
        done = self.applied_before()
        if done is not None:
            return done
        intent = self.in_flight()
        if intent is None:
            with heartbeating(f"assessing {self.task.step.vm}"):
                assessment = self.patcher.assess()
            self.ctx.facts.record_assessment(*self._ids, self.task.step.vm, assessment, phase="before")
            if self.promotion.pinned:
                promoted = self.promotion.select(assessment, self.selection)
                if promoted is None:
                    return self.nothing_to_do(assessment)
                self.selection = promoted
            elif (approved := self.baseline_selection(assessment)) is not None:
                if not approved.pins:
                    return self.nothing_to_do(assessment)
                self.selection = approved
            elif not pending(assessment, self.selection):
                return self.nothing_to_do(assessment)
            intent = self.record_intent(assessment)
        elif intent.pins:  # a pinned promotion or baseline in flight: the same exact selection
            self.selection = UpdateSelection(mode="pinned", pins=intent.pins)
        try:
            return self.finish(intent)
        except PackageManagerError as exc:  # the patch is over, failed: journaled, not waited on again
            self.ctx.facts.record_result(
                *self._ids, Action.PATCH, ok=False, detail=PatchDetail(), error=str(exc)
            )
            if isinstance(exc, PatchTimedOut):
                self.ctx.log.warning(
                    "guest_patch_timed_out", run=self.task.run_id, vm=str(self.task.step.vm),
                    job=intent.job, timeout_s=self.timeout_s, left_running=True,
                )  # fmt: skip
            raise

    def baseline_selection(self, assessment: Assessment) -> UpdateSelection | None:
        """The exact pins of the approved set of the patch baseline the VM's group picked for its OS
        family (:mod:`orchestrator.vulns.approval`, over the pending updates just assessed, the
        findings of the VM's latest vulnerability assessment and when each candidate was first seen);
        None when no baseline applies (no baseline for the family, or ``run --cve`` / configured pins,
        whose selections are explicit)."""
        step = self.task.step
        if step.policy.update_mode in (UpdateMode.CVE, UpdateMode.PINNED):
            return None
        family = assessment.os.family
        baseline = self.ctx.settings.baseline_for(step.group, family)
        if baseline is None:
            return None
        latest = VulnStore(self.ctx.facts).latest_assessment(step.vm)
        approval = approve(
            baseline, assessment.updates, latest.findings if latest is not None else (), family=family,
            today=self.ctx.clock.now().date(), first_seen=RoundStore(self.ctx.facts).first_seen(family, assessment.updates),
            mode=step.policy.update_mode,
        )  # fmt: skip
        withheld = [f"{d.update.name}: {d.reason}" for d in approval.decisions if not d.approved]
        self.ctx.log.info(
            "baseline_applied", run=self.task.run_id, vm=str(step.vm), baseline=baseline.name,
            approved=len(approval.pins), withheld=withheld[:20], withheld_total=len(withheld),
        )  # fmt: skip
        self.baseline = baseline.name
        return UpdateSelection(mode="pinned", pins=approval.pins)

    def applied_before(self) -> PatchResult | None:
        """The recorded patch result for (run, step) if the guest still has those versions."""
        for record in reversed(self.ctx.facts.step_history(*self._ids, action=Action.PATCH)):
            if record.phase is Phase.RESULT and record.ok and isinstance(record.detail, PatchDetail):
                done = record.detail
                if done.installed and self.patcher.installed(list(done.installed)) != dict(done.installed):
                    return None  # reality disagrees (reverted, or changed since): patch again
                return result_of(done)
            if record.phase is Phase.RESULT:
                return None  # the latest attempt failed: start afresh
        return None

    def in_flight(self) -> PatchIntent | None:
        """The latest PATCH intent when no result followed it and it names a job."""
        history = self.ctx.facts.step_history(*self._ids, action=Action.PATCH)
        last = history[-1] if history else None
        if last is not None and last.phase is Phase.INTENT and isinstance(last.detail, PatchIntent):
            return last.detail if last.detail.job else None
        return None

    def deadline(self) -> datetime:
        """The first PATCH intent's time + ``patch_timeout``: no attempt or resume extends it."""
        intents = self._intents()
        start = datetime.fromisoformat(intents[0].recorded_at) if intents else self.ctx.clock.now()
        return start + timedelta(seconds=self.timeout_s)

    def _intents(self) -> list[StepRecord]:
        history = self.ctx.facts.step_history(*self._ids, action=Action.PATCH)
        return [r for r in history if r.phase is Phase.INTENT]

    def record_intent(self, assessment: Assessment) -> PatchIntent:
        selected = [u for u in assessment.updates if wanted(u, self.selection)]
        if self.selection.mode == "pinned":
            planned = dict(pin_target(self.patcher.package_manager.name, p) for p in self.selection.pins)
            before = self.patcher.installed(list(planned))
            before = {name: before.get(name, "") for name in planned}
        else:
            planned = {u.name: u.candidate for u in selected}
            before = {u.name: u.current for u in selected}
        job = jobs.job_id(*self._ids, len(self._intents()) + 1)
        pins = self.selection.pins if self.promotion.pinned or self.baseline else ()
        intent = PatchIntent(self.selection.mode, job=job, before=before, planned=planned, pins=pins)
        vm = self.task.step.vm
        self.ctx.facts.record_intent(*self._ids, Action.PATCH, target=str(vm), detail=intent)
        return intent

    def finish(self, intent: PatchIntent) -> PatchResult:
        """Start the job if it is not there, wait for it, verify, journal the result."""
        patcher, deadline, vm = self.patcher, self.deadline(), self.task.step.vm
        if patcher.job_status(intent.job).state is jobs.JobState.ABSENT:
            patcher.start_job(intent.job, self.selection)
        with heartbeating(f"patching {vm} (job {intent.job})"):
            status = patcher.await_job(intent.job, deadline=deadline, timeout_s=self.timeout_s)
            if status.state is jobs.JobState.ABSENT:
                raise GuestUnreachable(f"patch job {intent.job} is gone from {vm}", target=str(vm))
            changes: tuple[PackageChange, ...] = ()
            hint = False
            if status.state is jobs.JobState.FINISHED:
                outcome = patcher.package_manager.parse_apply(patcher.job_result(intent.job, status))
                changes, hint = outcome.changed, outcome.reboot_hint
            installed = patcher.verify(intent.planned, deadline=deadline, timeout_s=self.timeout_s)
            changes = changes or changes_between(intent.before, installed)
            reboot = hint or patcher.reboot_required()
            stale = patcher.needs_restart()
            kernel = patcher.kernel_pending(changes, stale)
        detail = PatchDetail(installed, changes, reboot, not changes, stale, kernel)
        self.promotion.record_tested(installed)
        self.ctx.facts.record_result(*self._ids, Action.PATCH, ok=True, detail=detail)
        self.ctx.log.info(
            "guest_patched", run=self.task.run_id, vm=str(vm), changed=len(changes), job=intent.job,
            job_state=status.state.value, stale=stale,
        )  # fmt: skip
        return result_of(detail)

    def nothing_to_do(self, assessment: Assessment) -> PatchResult:
        # a pending reboot nothing here explains is never replaced by service restarts
        nothing = PatchDetail(nothing_to_do=True, reboot_required=assessment.reboot_required,
                              restart_needed=assessment.restart_needed,
                              kernel_pending=assessment.reboot_required)  # fmt: skip
        self.promotion.record_tested({})
        self.ctx.facts.record_result(*self._ids, Action.PATCH, ok=True, detail=nothing)
        return result_of(nothing)


def result_of(done: PatchDetail) -> PatchResult:
    return PatchResult(done.changes, done.reboot_required, done.nothing_to_do, done.restart_needed,
                       done.kernel_pending)  # fmt: skip


def selection_for(ctx: Context, task: VmTask) -> UpdateSelection:
    """The step's selection; a ``run --cve`` step's packages come from the run's stored target set."""
    if task.step.policy.update_mode is UpdateMode.CVE:
        targets = CveStore(ctx.facts).targets(task.run_id, task.step.step_id)
        if not targets:
            raise OrchestratorError(
                f"run {task.run_id} has no CVE target recorded for {task.step.vm}", step=task.step.step_id,
                fix="start the CVE run again (`patchwave run --cve ...`); its plan records the targets",
            )  # fmt: skip
        return UpdateSelection(mode="packages", packages=packages_of(targets))
    return selection_of(task)


def selection_of(task: VmTask) -> UpdateSelection:
    policy = task.step.policy
    match policy.update_mode:
        case UpdateMode.PINNED:
            return UpdateSelection(mode="pinned", pins=policy.pins)
        case UpdateMode.SECURITY:
            return UpdateSelection(mode="security")
        case UpdateMode.ALL:
            return UpdateSelection(mode="all")
        case UpdateMode.CVE:  # needs the fact store: selection_for
            raise ValueError("a CVE step's selection is the run's target set (selection_for)")


def wanted(update: PendingUpdate, selection: UpdateSelection) -> bool:
    """Whether the apply of ``selection`` installs ``update`` (pinned: see record_intent)."""
    if selection.mode == "security":
        return update.security
    if selection.mode == "packages":
        return update.name in selection.packages
    return True


def pending(assessment: Assessment, selection: UpdateSelection) -> bool:
    if selection.mode in ("security", "packages"):
        return any(wanted(u, selection) for u in assessment.updates)
    return selection.mode == "pinned" or bool(assessment.updates)
