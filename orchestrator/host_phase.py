"""The hypervisor phase of ``PatchRun`` (workflow-side, deterministic).

Failure domains one after another, hosts strictly one at a time: enter maintenance (the activity
records intent first) -> patch -> reboot if needed/allowed -> verify -> exit maintenance, the
last one ALWAYS (``finally``, shielded from cancellation). A failed host stops the phase.
A *report-only* host (``patch = "none"``) is only verified (connected) and assessed read-only
(``host_patch`` lists its pending updates); maintenance is never entered, so there is nothing to exit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.calls import call, describe, shielded
    from orchestrator.messages import HostOutcomeRecord, HostPatchResult, HostTask, site_queue
    from orchestrator.model import HostOutcome, HostStep, Plan, RebootPolicy, StepStatus


def host_needs_reboot(policy: RebootPolicy, patch: HostPatchResult) -> bool:
    if policy is RebootPolicy.ALWAYS:
        return True
    if policy is RebootPolicy.NEVER:
        return False
    return patch.reboot_required


class HostPhase:
    """Runs the plan's host steps; ``on_done`` is told about every outcome (progress, budget)."""

    def __init__(self, run_id: str, on_done: Callable[[HostOutcome], None]) -> None:
        self._run_id = run_id
        self._on_done = on_done

    async def run(self, plan: Plan, finished: dict[str, HostOutcome]) -> str:
        """Patch every host; returns a halt reason ("" when every host came back)."""
        for domain in plan.host_phase:
            for step in domain.hosts:
                if step.step_id in finished:
                    self._on_done(finished[step.step_id])
                    continue
                outcome = await self._host(step)
                await call(
                    "host_record_outcome",
                    HostOutcomeRecord(self._run_id, outcome),
                    queue=site_queue(step.host.site),
                )
                self._on_done(outcome)
                if outcome.status is StepStatus.FAILED:
                    return f"host {step.host} failed: {outcome.error}"
        return ""

    async def _host(self, step: HostStep) -> HostOutcome:
        task = HostTask(run_id=self._run_id, step=step)
        queue = site_queue(step.host.site)
        outcome = HostOutcome(step_id=step.step_id, host=step.host, status=StepStatus.RUNNING)
        if step.patch == "none":
            return await self._report_only(task, queue, outcome)
        try:
            outcome = await self._patch(task, queue, outcome)
        except ActivityError as err:
            outcome = HostOutcome(
                step_id=step.step_id, host=step.host, status=StepStatus.FAILED, error=describe(err)
            )
        finally:
            exit_error = await shielded(self._exit(task, queue))
        if exit_error:
            error = "; ".join(e for e in (outcome.error, f"exit maintenance failed: {exit_error}") if e)
            return HostOutcome(
                step_id=outcome.step_id,
                host=outcome.host,
                status=StepStatus.FAILED,
                build_before=outcome.build_before,
                build_after=outcome.build_after,
                rebooted=outcome.rebooted,
                error=error,
            )
        return outcome

    async def _patch(self, task: HostTask, queue: str, outcome: HostOutcome) -> HostOutcome:
        await call("host_enter_maintenance", task, queue=queue)
        patch = await call("host_patch", task, result_type=HostPatchResult, queue=queue)
        rebooted = False
        if host_needs_reboot(task.step.reboot, patch):
            await call("host_reboot", task, queue=queue)
            rebooted = True
        verified = await call("host_verify", task, result_type=HostPatchResult, queue=queue)
        return HostOutcome(
            step_id=outcome.step_id,
            host=outcome.host,
            status=StepStatus.SUCCEEDED,
            build_before=patch.build_before or verified.build_before,
            build_after=verified.build_after or patch.build_after,
            rebooted=rebooted,
        )

    async def _report_only(self, task: HostTask, queue: str, outcome: HostOutcome) -> HostOutcome:
        """Verify the host is connected and list its pending updates; change nothing on it."""
        try:
            verified = await call("host_verify", task, result_type=HostPatchResult, queue=queue)
            report = await call("host_patch", task, result_type=HostPatchResult, queue=queue)
        except ActivityError as err:
            return replace(outcome, status=StepStatus.FAILED, error=describe(err))
        build = verified.build_after or report.build_before
        return replace(
            outcome, status=StepStatus.SUCCEEDED, build_before=build, build_after=build, detail=report.detail
        )

    async def _exit(self, task: HostTask, queue: str) -> str:
        try:
            await call("host_exit_maintenance", task, queue=queue)
        except ActivityError as err:
            return describe(err)
        return ""
