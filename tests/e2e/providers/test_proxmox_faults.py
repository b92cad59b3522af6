"""The Proxmox adapter against the PVE simulator over real HTTPS: faults PVE is known for.

Each test injects one fault into a fresh simulator and checks what the adapter reports: the error
class (retry meaning), its stable code, and that nothing else happened on the platform.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.base import PowerState, SnapshotOwnership, VmRef
from providers.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResourceBusy,
)
from providers.proxmox.provider import ProxmoxProvider, open_provider
from providers.proxmox.tasks import TaskFailed
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for

pytestmark = pytest.mark.e2e

WEB = VmRef("pve", "qemu/100", "web-1")  # QEMU, agent on, pve1
DB = VmRef("pve", "qemu/101", "db-1")  # QEMU, HA-managed, pve2
CACHE = VmRef("pve", "lxc/102", "cache-1")  # LXC container, pve1
APP = VmRef("pve", "qemu/103", "app-1")  # QEMU, pve3
OWNED = SnapshotOwnership("run-1", "vm:pve:qemu/100", "2026-01-01T00:00:00+00:00").to_description()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.05), ssh=False) as simulator:
        yield simulator


@pytest.fixture
def provider(sim: Simulator) -> Iterator[ProxmoxProvider]:
    opened = open_provider(settings_for(sim))
    yield opened
    opened.close()


def task_types(sim: Simulator) -> list[str]:
    return [t.type for t in sim.cluster.tasks.values()]


# -- tasks: HTTP 200, failure inside ------------------------------------------------------------


def test_task_failing_inside_after_http_200_raises_with_exit_status_and_log(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    sim.inject("task_fail", task_type="qmsnapshot", vmid=100, message="snapshot feature is not available")
    with pytest.raises(TaskFailed) as caught:
        provider.create_snapshot(WEB, "pw-a", OWNED)
    assert caught.value.code == "task_failed" and not caught.value.retryable
    assert caught.value.exitstatus == "snapshot feature is not available"
    assert caught.value.log_tail[-1] == "TASK ERROR: snapshot feature is not available"
    assert provider.list_snapshots(WEB) == []


def test_lock_reported_inside_a_task_is_busy_and_retryable(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject("task_fail", task_type="qmrollback", message="VM is locked (backup)")
    provider.create_snapshot(WEB, "pw-a", OWNED)
    with pytest.raises(ResourceBusy) as caught:
        provider.revert_snapshot(WEB, "pw-a")
    assert caught.value.code == "locked" and caught.value.retryable


def test_task_that_never_finishes_hits_the_deadline(sim: Simulator) -> None:
    sim.inject("task_hang", task_type="qmsnapshot")
    provider = open_provider(settings_for(sim, task_timeout=0.3))
    try:
        with pytest.raises(ProviderTimeout) as caught:
            provider.create_snapshot(WEB, "pw-a", OWNED)
        assert caught.value.code == "task_timeout"
    finally:
        provider.close()


# -- locks ------------------------------------------------------------------------------------


def test_stale_lock_fails_clearly_without_starting_a_task(sim: Simulator) -> None:
    sim.inject("stale_lock", vmid=100, lock="backup")
    provider = open_provider(settings_for(sim, lock_wait=0.5))
    try:
        with pytest.raises(ResourceBusy) as caught:
            provider.create_snapshot(WEB, "pw-a", OWNED)
        assert caught.value.code == "locked" and "stale" in caught.value.message
        assert provider.get_vm(WEB).locked == "backup"
        assert "qmsnapshot" not in task_types(sim)
    finally:
        provider.close()


def test_lock_released_while_waiting_lets_the_action_proceed(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    sim.inject("stale_lock", vmid=100, lock="backup", clear_after=0.2)
    snapshot = provider.create_snapshot(WEB, "pw-a", OWNED)
    assert snapshot.id == "pw-a" and snapshot.ownership is not None


def test_half_created_snapshot_is_listed_but_never_reverted(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    sim.inject(
        "stale_lock", vmid=100, lock="snapshot", snapname="pw-half", snapstate="prepare", clear_after=0.0
    )
    assert [s.id for s in provider.list_snapshots(WEB)] == ["pw-half"]
    with pytest.raises(OperationRefused) as caught:
        provider.revert_snapshot(WEB, "pw-half")
    assert caught.value.code == "snapshot_incomplete"


def test_failed_create_that_left_its_lock_is_recovered_on_the_next_attempt(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    sim.inject("task_fail", task_type="qmsnapshot", message="interrupted", leave_lock=True)
    with pytest.raises(TaskFailed):
        provider.create_snapshot(WEB, "pw-a", OWNED)
    assert provider.get_vm(WEB).locked == "snapshot"
    sim.cluster.guests[100].lock = None  # the operator ran `qm unlock 100`
    snapshot = provider.create_snapshot(WEB, "pw-a", OWNED)  # our own half-done snapshot: removed, redone
    assert snapshot.id == "pw-a"
    assert sim.cluster.guests[100].snapshots["pw-a"].snapstate is None


# -- authentication and TLS -------------------------------------------------------------------


def test_expired_ticket_is_renewed_once_transparently(sim: Simulator, provider: ProxmoxProvider) -> None:
    provider.get_vm(WEB)
    sim.inject("expire_tickets")
    assert provider.create_snapshot(WEB, "pw-a", OWNED).id == "pw-a"  # a POST: new ticket and CSRF token
    sim.cluster.clock.advance(7201)  # the real 2 h lifetime
    assert provider.get_vm(WEB).power is PowerState.RUNNING
    assert sim.auth.logins == 3  # the first login and two re-logins


def test_relogin_that_is_refused_is_authentication_failed(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.auth.accounts["root@pam"].password = "rotated"
    sim.inject("expire_tickets")
    with pytest.raises(AuthenticationFailed) as caught:
        provider.get_vm(WEB)
    assert caught.value.code == "auth" and not caught.value.retryable


def test_revoked_token_is_authentication_failed_without_relogin(sim: Simulator) -> None:
    provider = open_provider(settings_for(sim, token=True))
    try:
        provider.create_snapshot(WEB, "pw-a", OWNED)
        task = next(t for t in sim.cluster.tasks.values() if t.type == "qmsnapshot")
        assert (task.user, task.tokenid) == ("root@pam", "patchwave") and "root@pam!patchwave" in task.upid
        sim.auth.accounts["root@pam"].tokens.clear()
        with pytest.raises(AuthenticationFailed):
            provider.get_vm(WEB)
        assert sim.auth.tickets == {}
    finally:
        provider.close()


def test_wrong_password_fails_at_open(sim: Simulator) -> None:
    from providers.settings import Secret

    with pytest.raises(AuthenticationFailed):
        open_provider(settings_for(sim, password=Secret("wrong")))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_by_default(sim: Simulator) -> None:
    settings = settings_for(sim, ca_file="")  # no CA bundle: the simulator's CA is unknown
    with pytest.raises(PermanentProviderError) as caught:
        open_provider(settings)
    assert caught.value.code == "tls"
    unverified = open_provider(settings_for(sim, ca_file="", verify_ssl=False))
    assert unverified.get_vm(WEB).ref == WEB
    unverified.close()


# -- transport and handler errors ---------------------------------------------------------------


def test_transient_5xx_on_a_read_is_retried(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject(
        "http_error", status=503, message="Service Unavailable", method="GET", path="^/cluster/resources$"
    )
    assert provider.get_vm(WEB).power is PowerState.RUNNING
    assert not sim.cluster.faults


def test_5xx_on_an_action_is_not_repeated(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject("http_error", status=596, message="Connection timed out", method="POST", path="/snapshot$")
    with pytest.raises(ProviderUnavailable) as caught:
        provider.create_snapshot(WEB, "pw-a", OWNED)
    assert caught.value.retryable
    assert provider.list_snapshots(WEB) == []


def test_handler_refusal_is_operation_refused(provider: ProxmoxProvider) -> None:
    with pytest.raises(OperationRefused) as caught:
        provider.create_snapshot(WEB, "current", OWNED)
    assert "reserved name" in caught.value.message


def test_unknown_guest_and_malformed_id_are_not_found(provider: ProxmoxProvider) -> None:
    with pytest.raises(NotFound):
        provider.get_vm(VmRef("pve", "qemu/555", "ghost"))
    with pytest.raises(NotFound) as caught:
        provider.get_vm(VmRef("pve", "pve1/qemu/100", "web-1"))
    assert caught.value.code == "bad_id"


# -- snapshots ----------------------------------------------------------------------------------


def test_zfs_refuses_rollback_to_an_older_snapshot(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject("zfs_rollback", vmid=100)
    provider.create_snapshot(WEB, "pw-old", OWNED)
    provider.create_snapshot(WEB, "pw-new", OWNED)
    with pytest.raises(OperationRefused) as caught:
        provider.revert_snapshot(WEB, "pw-old")
    assert caught.value.code == "rollback_not_latest" and "pw-new" in caught.value.message
    provider.revert_snapshot(WEB, "pw-new")
    assert provider.get_vm(WEB).power is PowerState.STOPPED  # a disk-only snapshot: stopped, like PVE


def test_rollback_to_an_older_snapshot_is_fine_on_other_storage(provider: ProxmoxProvider) -> None:
    provider.create_snapshot(WEB, "pw-old", OWNED, memory=True)
    provider.create_snapshot(WEB, "pw-new", OWNED)
    provider.revert_snapshot(WEB, "pw-old")
    assert provider.get_vm(WEB).power is PowerState.RUNNING  # RAM snapshot: PVE starts it from the state


def test_snapshot_names_are_owned_not_reused(provider: ProxmoxProvider) -> None:
    first = provider.create_snapshot(WEB, "pw-a", OWNED, memory=True)
    assert first.has_memory and first.ownership == SnapshotOwnership.from_description(OWNED)
    assert provider.create_snapshot(WEB, "pw-a", OWNED, memory=True) == first  # at-least-once delivery
    with pytest.raises(OperationRefused) as caught:
        provider.create_snapshot(WEB, "pw-a", "someone else's")
    assert caught.value.code == "name_taken"


def test_containers_have_no_ram_snapshots_and_nothing_has_quiesce(provider: ProxmoxProvider) -> None:
    with pytest.raises(CapabilityMissing):
        provider.create_snapshot(CACHE, "pw-a", OWNED, memory=True)
    with pytest.raises(CapabilityMissing):
        provider.create_snapshot(WEB, "pw-a", OWNED, quiesce=True)
    assert provider.create_snapshot(CACHE, "pw-a", OWNED).has_memory is False


def test_guest_that_migrated_since_inventory_is_found_on_its_new_node(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    before = provider.get_vm(WEB)
    assert before.host is not None and before.host.id == "pve1"
    sim.cluster.guests[100].node = "pve3"  # migrated behind our back
    provider.create_snapshot(before.ref, "pw-a", OWNED)
    assert "pw-a" in sim.cluster.guests[100].snapshots
    after = provider.get_vm(before.ref)
    assert after.host is not None and after.host.id == "pve3" and after.ref == before.ref


# -- guest agent --------------------------------------------------------------------------------


def test_agent_not_ready_after_start_is_waited_for(sim: Simulator, provider: ProxmoxProvider) -> None:
    provider.power_off(APP)
    sim.inject("agent_not_ready", vmid=103, seconds=0.4)
    provider.power_on(APP)
    assert provider.guest_ping(APP) is False
    result = provider.guest_exec(APP, ["echo", "up"], timeout=5)
    assert result.ok and result.stdout == "up\n"
    assert provider.guest_ping(APP) is True


def test_agent_that_never_answers_times_out(sim: Simulator) -> None:
    sim.inject("agent_not_ready", vmid=103, seconds=600)
    provider = open_provider(settings_for(sim, agent_wait=0.3))
    try:
        assert provider.get_vm(APP).agent_ready is False
        with pytest.raises(ProviderTimeout) as caught:
            provider.guest_exec(APP, ["true"], timeout=5)
        assert caught.value.code == "agent_not_ready"
    finally:
        provider.close()


def test_exec_passes_argv_env_and_stdin_and_reports_failures(
    sim: Simulator, provider: ProxmoxProvider
) -> None:
    assert provider.guest_exec(WEB, ["cat"], timeout=5, stdin="from stdin").stdout == "from stdin"
    env = provider.guest_exec(WEB, ["env"], timeout=5, env={"DEBIAN_FRONTEND": "noninteractive"}).stdout
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" in env and "DEBIAN_FRONTEND=noninteractive\n" in env
    failed = provider.guest_exec(WEB, ["no-such-program", "x y"], timeout=5)
    assert failed.exit_code == 127 and "no-such-program" in failed.stderr and not failed.ok
    sim.script_guest(100, "kill-me", signal=9)
    killed = provider.guest_exec(WEB, ["kill-me"], timeout=5)
    assert (killed.exit_code, killed.signal) == (None, 9)
    assert sim.cluster.guests[100].processes == {}  # every pid was read exactly until "exited"


def test_exec_output_is_capped_and_flagged(sim: Simulator) -> None:
    sim.script_guest(100, "big-output", stdout="x" * 5000, stderr="e" * 10)
    provider = open_provider(settings_for(sim, exec_output_cap=1024))
    try:
        result = provider.guest_exec(WEB, ["big-output"], timeout=5)
        assert (len(result.stdout), result.stdout_truncated) == (1024, True)
        assert (result.stderr, result.stderr_truncated) == ("e" * 10, False)
        sim.cluster.config.agent_output_cap = 100  # qemu-ga's own cap (16 MiB in reality)
        capped = provider.guest_exec(WEB, ["big-output"], timeout=5)
        assert (len(capped.stdout), capped.stdout_truncated) == (100, True)
    finally:
        provider.close()


def test_exec_deadline(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.script_guest(100, "slow", duration=30)
    with pytest.raises(ProviderTimeout) as caught:
        provider.guest_exec(WEB, ["slow"], timeout=0.3)
    assert caught.value.code == "exec_timeout"


def test_exec_disabled_in_qemu_ga_is_a_missing_capability(sim: Simulator, provider: ProxmoxProvider) -> None:
    sim.inject("guest_exec_disabled", vmid=100)
    assert provider.guest_ping(WEB) is True
    with pytest.raises(CapabilityMissing) as caught:
        provider.guest_exec(WEB, ["true"], timeout=5)
    assert caught.value.code == "guest_exec_disabled"


def test_containers_have_no_agent_exec(provider: ProxmoxProvider) -> None:
    info = provider.get_vm(CACHE)
    assert (info.kind, info.agent_ready) == ("container", False)
    assert provider.guest_ping(CACHE) is False
    with pytest.raises(CapabilityMissing):
        provider.guest_exec(CACHE, ["true"], timeout=5)


def test_vm_without_agent_config(sim: Simulator, provider: ProxmoxProvider) -> None:
    legacy = VmRef("pve", "qemu/104", "legacy-1")
    provider.power_on(legacy)
    with pytest.raises(CapabilityMissing) as caught:
        provider.guest_exec(legacy, ["true"], timeout=5)
    assert caught.value.code == "agent_not_configured"


# -- power ----------------------------------------------------------------------------------------


def test_ha_managed_guest_power_waits_for_the_real_state(sim: Simulator, provider: ProxmoxProvider) -> None:
    provider.shutdown(DB, timeout=5)
    assert provider.get_vm(DB).power is PowerState.STOPPED
    assert "hastop" in task_types(sim)
    provider.power_on(DB)
    assert provider.get_vm(DB).power is PowerState.RUNNING


def test_reboot_of_a_stopped_guest_is_refused(provider: ProxmoxProvider) -> None:
    provider.power_off(WEB)
    with pytest.raises(OperationRefused) as caught:
        provider.reboot_guest(WEB)
    assert caught.value.code == "not_running"
