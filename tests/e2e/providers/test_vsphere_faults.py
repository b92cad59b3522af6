"""The vSphere adapter under injected faults, against our vcsim launcher (tests/simulators/vcsim).

Faults are injected at runtime through the launcher's control endpoint (``POST /vcsim-control/faults``)
and counted through ``/vcsim-control/stats``; nothing of ours is mocked.
"""

from __future__ import annotations

import threading
import time

import pytest

from providers.base import HostPatchSpec, HostState, PowerState
from providers.errors import (
    AuthenticationFailed,
    OperationRefused,
    PermanentProviderError,
    ProviderTimeout,
    ResourceBusy,
)
from providers.timing import wait_until
from tests.simulators.vcsim.launcher import Vcsim, open_vsphere, start_or_skip

pytestmark = pytest.mark.e2e

DEPOT = HostPatchSpec(depot_urls=("https://depot.example/ESXi-7.0U3-sim.zip",))


@pytest.fixture(scope="module")
def sim():
    sim = start_or_skip("-host", "4", "-vm", "8", "-balance", "-host-reboot-ms", "300")
    yield sim
    sim.stop()


@pytest.fixture
def provider(sim):
    sim.clear_faults()
    provider = open_vsphere(sim)
    yield provider
    provider.close()
    sim.clear_faults()


def first_vm(provider, name: str = "DC0_C0_RP0_VM1"):
    return next(v.ref for v in provider.inventory().vms if v.ref.name == name)


def host_named(provider, name: str):
    return next(h.ref for h in provider.inventory().hosts if h.ref.name == name)


def fired(sim: Vcsim) -> int:
    return sum(rule["fired"] for rule in sim.faults())


# -- snapshot task failures -------------------------------------------------------------------


def test_failed_snapshot_task_surfaces_as_busy_and_creates_nothing(sim, provider):
    vm = first_vm(provider)
    sim.add_fault(
        f"method=CreateSnapshot_Task,target={vm.name},fault=FileLocked,count=1,msg=disk locked by backup"
    )
    with pytest.raises(ResourceBusy) as caught:
        provider.create_snapshot(vm, "pw-fail", "patchwave:{}")
    assert caught.value.code == "locked"
    assert "disk locked by backup" in str(caught.value)
    assert provider.list_snapshots(vm) == []
    # the fault was one-shot: the next attempt succeeds
    snap = provider.create_snapshot(vm, "pw-ok", "patchwave:{}")
    assert [s.id for s in provider.list_snapshots(vm)] == [snap.id]
    provider.delete_snapshot(vm, snap.id)


def test_snapshot_refused_by_platform_is_permanent(sim, provider):
    vm = first_vm(provider)
    sim.add_fault(f"method=CreateSnapshot_Task,target={vm.name},fault=InvalidState,count=1")
    with pytest.raises(OperationRefused) as caught:
        provider.create_snapshot(vm, "pw-refused", "patchwave:{}")
    assert not caught.value.retryable
    assert provider.list_snapshots(vm) == []


def test_revert_task_failure_is_translated_by_fault_class(sim, provider):
    vm = first_vm(provider)
    snap = provider.create_snapshot(vm, "pw-revert", "patchwave:{}")
    sim.add_fault(f"method=RevertToSnapshot_Task,target={vm.name},fault=TaskInProgress,count=1")
    with pytest.raises(ResourceBusy):
        provider.revert_snapshot(vm, snap.id)
    provider.revert_snapshot(vm, snap.id)
    provider.delete_snapshot(vm, snap.id)
    assert provider.list_snapshots(vm) == []


def test_slow_snapshot_task_hits_the_deadline(sim):
    provider = open_vsphere(sim, task_timeout="1s")
    try:
        vm = first_vm(provider)
        sim.add_fault(f"method=CreateSnapshot_Task,target={vm.name},mode=slow,delay=4000,count=1")
        with pytest.raises(ProviderTimeout):
            provider.create_snapshot(vm, "pw-slow", "patchwave:{}")
        # the task was only slow: vSphere finishes it later, and the engine's next attempt finds
        # the snapshot by its name and description instead of making a second one
        made = wait_until(lambda: provider.list_snapshots(vm), timeout=30, interval=0.5, what="slow snapshot")
        assert [s.name for s in made] == ["pw-slow"]
        assert provider.create_snapshot(vm, "pw-slow", "patchwave:{}").id == made[0].id
        provider.delete_snapshot(vm, made[0].id)
    finally:
        provider.close()
        sim.clear_faults()


# -- transport and session faults -------------------------------------------------------------


def test_dropped_connection_is_retried(sim, provider):
    sim.add_fault("method=RetrievePropertiesEx,mode=drop,count=1")
    sim.reset_stats()
    inventory = provider.inventory()
    assert len(inventory.vms) == 8
    assert fired(sim) == 1
    assert sim.stats()["RetrievePropertiesEx"] == 2  # the dropped one and its retry


def test_dropped_snapshot_call_is_retried_without_a_duplicate(sim, provider):
    vm = first_vm(provider)
    sim.add_fault(f"method=CreateSnapshot_Task,target={vm.name},mode=drop,count=1")
    snap = provider.create_snapshot(vm, "pw-drop", "patchwave:{}")
    assert fired(sim) == 1
    assert [s.id for s in provider.list_snapshots(vm)] == [snap.id]
    provider.delete_snapshot(vm, snap.id)


def test_http_503_is_retried(sim, provider):
    sim.add_fault("method=RetrievePropertiesEx,mode=http,status=503,count=1")
    assert len(provider.inventory().hosts) == 4
    assert fired(sim) == 1


def test_not_authenticated_logs_in_again(sim, provider):
    sim.add_fault("method=RetrievePropertiesEx,fault=NotAuthenticated,count=1")
    sim.reset_stats()
    assert len(provider.inventory().vms) == 8
    assert fired(sim) == 1
    assert sim.stats()["Login"] == 1


def test_expired_session_is_renewed_once_for_many_threads():
    sim = start_or_skip("-host", "2", "-vm", "4", "-session-idle", "1s")
    provider = open_vsphere(sim)
    try:
        provider.inventory()
        time.sleep(3.5)  # vcsim expires an idle session between 1x and 2x the idle timeout
        sim.reset_stats()
        errors: list[BaseException] = []
        counts: list[int] = []

        def work() -> None:
            try:
                counts.append(len(provider.inventory().vms))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert counts == [4] * 6
        assert sim.stats()["Login"] == 1
    finally:
        provider.close()
        sim.stop()


def test_wrong_password_is_refused_without_revealing_it(sim):
    with pytest.raises(AuthenticationFailed) as caught:
        open_vsphere(sim, password="not-the-s3cret-pw")
    text = f"{caught.value!s} {caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    assert "not-the-s3cret-pw" not in text
    assert caught.value.code == "auth"


# -- hosts ------------------------------------------------------------------------------------


def test_host_install_failure_is_permanent_and_host_can_exit_maintenance(sim, provider):
    host = host_named(provider, "DC0_C0_H1")
    build = provider.get_host(host).build
    provider.enter_maintenance(host, evacuate=True, timeout=60)
    sim.add_fault(
        "method=InstallHostPatchV2_Task,target=DC0_C0_H1,fault=PatchInstallFailed,msg=VIB checksum mismatch"
    )
    with pytest.raises(PermanentProviderError) as caught:
        provider.patch_host(host, DEPOT, timeout=60)
    assert caught.value.code == "patch_failed"
    assert not caught.value.retryable
    provider.exit_maintenance(host, timeout=60)
    info = provider.get_host(host)
    assert info.state is HostState.CONNECTED
    assert info.build == build


def test_maintenance_task_timeout_surfaces_as_timeout(sim, provider):
    host = host_named(provider, "DC0_C0_H2")
    sim.add_fault("method=EnterMaintenanceMode_Task,target=DC0_C0_H2,fault=Timedout,delay=300,count=1")
    with pytest.raises(ProviderTimeout):
        provider.enter_maintenance(host, evacuate=True, timeout=30)
    assert provider.get_host(host).state is HostState.CONNECTED


def test_maintenance_refused_when_no_host_can_take_the_vms():
    sim = start_or_skip("-host", "1", "-vm", "3")
    provider = open_vsphere(sim)
    try:
        (host,) = provider.inventory().hosts
        assert host.running_vms == 3
        with pytest.raises(OperationRefused) as caught:
            provider.enter_maintenance(host.ref, evacuate=True, timeout=30)
        assert caught.value.code == "evacuation_impossible"
        assert provider.get_host(host.ref).state is HostState.CONNECTED
        assert sim.stats().get("EnterMaintenanceMode_Task", 0) == 0  # refused before asking vCenter
    finally:
        provider.close()
        sim.stop()


def test_maintenance_that_leaves_vms_running_is_reported():
    # Stock vcsim (-raw) flips the maintenance flag without moving any VM: the adapter must notice.
    sim = start_or_skip("-raw", "-host", "2", "-vm", "4", "-balance")
    provider = open_vsphere(sim)
    try:
        host = provider.inventory().hosts[0]
        assert host.running_vms == 2
        with pytest.raises(OperationRefused) as caught:
            provider.enter_maintenance(host.ref, evacuate=True, timeout=30)
        assert caught.value.code == "evacuation_incomplete"
        provider.exit_maintenance(host.ref, timeout=30)
        assert provider.get_host(host.ref).state is HostState.CONNECTED
    finally:
        provider.close()
        sim.stop()


def test_guest_reboot_refused_by_tools_is_permanent(sim, provider):
    vm = first_vm(provider, "DC0_C0_RP0_VM2")
    provider.power_off(vm)
    provider.power_on(vm)
    sim.add_fault(f"method=RebootGuest,target={vm.name},fault=ToolsUnavailable,count=1")
    with pytest.raises(OperationRefused) as caught:
        provider.reboot_guest(vm)
    assert caught.value.code == "tools_unavailable"
    assert provider.get_vm(vm).power is PowerState.RUNNING


def test_guest_power_without_tools_follows_the_fallback_setting():
    # Stock vcsim reports VMware Tools as not running: exactly the case for the fallback.
    sim = start_or_skip("-raw", "-host", "2", "-vm", "2")
    strict, hard = open_vsphere(sim), open_vsphere(sim, guest_fallback="hard")
    try:
        vm = strict.inventory().vms[0].ref
        for verb in (strict.reboot_guest, lambda v: strict.shutdown(v, timeout=30)):
            with pytest.raises(OperationRefused) as caught:
                verb(vm)
            assert caught.value.code == "tools_unavailable"
        sim.reset_stats()
        hard.reboot_guest(vm)
        assert sim.stats()["ResetVM_Task"] == 1
        hard.shutdown(vm, timeout=30)
        assert sim.stats()["PowerOffVM_Task"] == 1
        assert hard.get_vm(vm).power is PowerState.STOPPED
    finally:
        strict.close()
        hard.close()
        sim.stop()


def test_one_provider_serves_a_thread_pool(sim, provider):
    """Activities share one provider: snapshot create/delete on every VM at once."""
    from concurrent.futures import ThreadPoolExecutor

    vms = [v.ref for v in provider.inventory().vms]

    def cycle(vm):
        snap = provider.create_snapshot(vm, f"pw-pool-{vm.id}", "patchwave:{}")
        provider.delete_snapshot(vm, snap.id)
        return snap.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(cycle, vms))
    assert len(set(ids)) == len(vms) == 8
    assert all(provider.list_snapshots(vm) == [] for vm in vms)
