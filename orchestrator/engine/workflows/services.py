"""After a patch: restart the stale services instead of rebooting, when the policy says so (workflow side).

``[policy] restart_services = "needrestart"``: a patch that left services running replaced libraries
(``PatchResult.restart_needed``) gets them restarted through the guest channel
(``vm_restart_services``) and is then health-checked as after a reboot. A reboot the policy would make
only because of those services (``reboot = "if-required"``, no kernel changed or pending) is replaced by
the restart; a kernel update (or ``reboot = "always"``) still reboots, which restarts everything. When the
guest said a reboot is required and some services are still stale after the restart (the tool keeps
D-Bus, logind ... running), the VM is rebooted after all: the restart could not do the reboot's job.

Deterministic: decisions on values, the one activity by name. Histories recorded before this step
existed replay without it (``workflow.patched``: :data:`SERVICES`).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.engine.names import ActivityName
    from orchestrator.engine.payloads import PatchResult, ServicesResult, VmTask, site_queue
    from orchestrator.engine.workflows.calls import call
    from orchestrator.model import STALE_KERNEL, RebootPolicy, VmPolicy

#: The ``[policy] restart_services`` value that restarts stale services.
NEEDRESTART = "needrestart"
#: ``workflow.patched`` id of the restart step (histories recorded without it replay without it).
SERVICES = "restart-services"


def stale_services(names: tuple[str, ...]) -> tuple[str, ...]:
    """The services of a restart tool's list (not the kernel marker)."""
    return tuple(n for n in names if n != STALE_KERNEL)


def after_patch(policy: VmPolicy, patch: PatchResult) -> tuple[bool, bool]:
    """``(reboot, restart services)`` once ``patch`` is applied (pure: the decision table)."""
    reboot = policy.reboot.needs_reboot(patch.reboot_required)
    if policy.restart_services != NEEDRESTART or not stale_services(patch.restart_needed):
        return reboot, False
    if reboot and (policy.reboot is not RebootPolicy.IF_REQUIRED or patch.kernel_pending):
        return True, False  # a kernel boots only with a reboot, which restarts every service too
    return False, True


def still_reboot(policy: VmPolicy, patch: PatchResult, done: ServicesResult) -> bool:
    """After the restart: a reboot the guest asked for is still made while services stay stale."""
    return policy.reboot.needs_reboot(patch.reboot_required) and bool(stale_services(done.remaining))


def wants_restart(policy: VmPolicy, patch: PatchResult) -> tuple[bool, bool]:
    """:func:`after_patch` inside the workflow: without the restart step on replays of older histories."""
    reboot, restart = after_patch(policy, patch)
    if restart and not workflow.patched(SERVICES):
        return policy.reboot.needs_reboot(patch.reboot_required), False
    return reboot, restart


async def restart_services(task: VmTask, patch: PatchResult) -> bool:
    """Restart the stale services (``vm_restart_services``); whether the VM must still reboot.
    Raises ``ActivityError`` when the restart failed (VmPatch reverts the VM)."""
    done = await call(
        ActivityName.VM_RESTART_SERVICES,
        task,
        result_type=ServicesResult,
        queue=site_queue(task.step.vm.site),
    )
    return still_reboot(task.step.policy, patch, done)
