"""The shared value types' meanings: which step statuses are final, the step-id format, package changes."""

from __future__ import annotations

from orchestrator.model import PackageChange, StepStatus, host_step_id, vm_step_id
from providers.base import HostRef, VmRef


def test_final_statuses_are_the_attempts_a_resume_must_not_redo() -> None:
    final = {s for s in StepStatus if s.final}
    assert final == {StepStatus.SUCCEEDED, StepStatus.ROLLED_BACK, StepStatus.FAILED}


def test_concluded_statuses_are_the_final_ones_and_skipped() -> None:
    concluded = {s for s in StepStatus if s.concluded}
    assert concluded == {s for s in StepStatus if s.final} | {StepStatus.SKIPPED}
    assert not StepStatus.PENDING.concluded and not StepStatus.RUNNING.concluded


def test_step_ids_name_the_site_and_the_platform_id_never_the_name() -> None:
    assert vm_step_id(VmRef("lab", "uuid-1", "pw-web-1")) == "vm:lab:uuid-1"
    assert host_step_id(HostRef("vc", "host-42", "esx1")) == "host:vc:host-42"
    assert vm_step_id(VmRef("lab", "uuid-1", "renamed")) == vm_step_id(VmRef("lab", "uuid-1", "pw-web-1"))


def test_a_package_change_reads_as_old_to_new() -> None:
    assert str(PackageChange("demo-app", "1.0", "1.1")) == "demo-app 1.0->1.1"
    assert str(PackageChange("new-lib", "", "2.0")) == "new-lib ->2.0"
