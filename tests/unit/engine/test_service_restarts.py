"""After a patch: restart the stale services, reboot, or both — the workflow's decision table (pure)."""

from __future__ import annotations

import pytest

from orchestrator.engine.payloads import PatchResult, ServicesResult
from orchestrator.engine.workflows.services import after_patch, still_reboot
from orchestrator.model import STALE_KERNEL, RebootPolicy, VmPolicy

IF_REQUIRED, ALWAYS, NEVER = RebootPolicy.IF_REQUIRED, RebootPolicy.ALWAYS, RebootPolicy.NEVER
STALE = ("nginx.service",)


def policy(reboot: RebootPolicy = IF_REQUIRED, restart: str = "needrestart") -> VmPolicy:
    return VmPolicy(reboot=reboot, restart_services=restart)


# (policy, patch) -> (reboot, restart services)
CASES = [
    # restart_services = "none": exactly the reboot policy, nothing restarted
    (policy(restart="none"), PatchResult(reboot_required=True, restart_needed=STALE), (True, False)),
    (policy(restart="none"), PatchResult(restart_needed=STALE), (False, False)),
    # nothing stale: nothing to restart
    (policy(), PatchResult(reboot_required=True), (True, False)),
    (policy(), PatchResult(), (False, False)),
    (policy(), PatchResult(reboot_required=True, restart_needed=(STALE_KERNEL,), kernel_pending=True), (True, False)),
    # stale services, no kernel: the restart replaces the reboot (if-required) or is all there is
    (policy(), PatchResult(reboot_required=True, restart_needed=STALE), (False, True)),
    (policy(), PatchResult(restart_needed=STALE), (False, True)),
    (policy(NEVER), PatchResult(reboot_required=True, restart_needed=STALE), (False, True)),
    # a kernel, or reboot = "always": the reboot restarts everything
    (policy(), PatchResult(reboot_required=True, restart_needed=(*STALE, STALE_KERNEL), kernel_pending=True),
     (True, False)),
    (policy(ALWAYS), PatchResult(restart_needed=STALE), (True, False)),
]  # fmt: skip


@pytest.mark.parametrize(("vm_policy", "patch", "expected"), CASES)
def test_after_a_patch(vm_policy: VmPolicy, patch: PatchResult, expected: tuple[bool, bool]) -> None:
    assert after_patch(vm_policy, patch) == expected


def test_a_required_reboot_still_happens_when_the_tool_kept_services_running() -> None:
    patch = PatchResult(reboot_required=True, restart_needed=("nginx.service", "dbus.service"))
    assert still_reboot(policy(), patch, ServicesResult(("nginx.service",), ("dbus.service",)))
    assert not still_reboot(policy(), patch, ServicesResult(("nginx.service", "dbus.service"), ()))
    # not required by the guest (only stale services): what stays running is reported, not rebooted for
    assert not still_reboot(policy(), PatchResult(restart_needed=STALE), ServicesResult((), STALE))
    assert not still_reboot(policy(NEVER), patch, ServicesResult((), ("dbus.service",)))
