"""The provider contract on libvirt's in-memory test driver (``test:///default``), plus adapter specifics.

``test:///default`` is a fresh hypervisor with one running domain named ``test`` once no connection to
it is left in the process, so each test gets its own provider (function scope) and closes it for good
(:func:`close_test_provider`) to start from the same state. The test driver
supports power ops, reboot and snapshots (a snapshot of a running domain records memory state and
reverting it brings the domain back running); it has no guest agent, so GUEST_EXEC is not declared
and the suite checks that it is refused.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import libvirt
import pytest

from providers.base import Capability, HostRef, PowerState, SnapshotOwnership, VmRef, snapshot_name
from providers.errors import (
    CapabilityMissing,
    GuestAgentUnavailable,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    ProviderUnavailable,
)
from providers.libvirt import provider as adapter
from providers.timing import utc_now_iso
from tests.contract.suite import ProviderContract

URI = "test:///default"
SITE = "testdriver"


def open_test_provider(**raw: object) -> adapter.LibvirtProvider:
    return adapter.open_provider(adapter.parse_settings(SITE, {"uri": URI, **raw}))


def close_test_provider(provider: adapter.LibvirtProvider) -> None:
    """Close it so the next test gets a fresh ``test:///default``: libvirt keeps the in-process test
    driver's state while any connection is referenced, and every ``virDomain`` object references its
    connection — one kept alive by a reference cycle until the cyclic GC runs would carry this test's
    domain state (e.g. a shut-down ``test``) into the next test."""
    provider.close()
    gc.collect()


def find_vm(provider: adapter.LibvirtProvider, name: str) -> VmRef:
    return next(v.ref for v in provider.inventory().vms if v.ref.name == name)


class TestLibvirtTestDriverContract(ProviderContract):
    power_timeout = 10.0

    @pytest.fixture
    def provider(self) -> Iterator[adapter.LibvirtProvider]:
        provider = open_test_provider()
        yield provider
        close_test_provider(provider)

    @pytest.fixture
    def contract_vm(self, provider: adapter.LibvirtProvider) -> VmRef:
        return find_vm(provider, "test")

    @pytest.fixture
    def contract_host(self, provider: adapter.LibvirtProvider) -> HostRef:
        return provider.inventory().hosts[0].ref


# ------------------------------------------------------------------------------------------------
# Adapter specifics the contract leaves open
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[adapter.LibvirtProvider]:
    provider = open_test_provider(failure_domain="rack-7")
    yield provider
    close_test_provider(provider)


@pytest.fixture
def vm(provider: adapter.LibvirtProvider) -> VmRef:
    return find_vm(provider, "test")


def _owned(step: str) -> tuple[str, str]:
    ownership = SnapshotOwnership(run_id="run-testdriver", step_id=step, created_at=utc_now_iso())
    return snapshot_name("run-testdriver", step), ownership.to_description()


def test_capabilities_are_declared_for_the_test_driver(provider: adapter.LibvirtProvider) -> None:
    assert provider.capabilities == {
        Capability.INVENTORY,
        Capability.POWER,
        Capability.GUEST_REBOOT,
        Capability.SNAPSHOT,
        Capability.SNAPSHOT_MEMORY,
    }


def test_host_describes_the_connection(provider: adapter.LibvirtProvider) -> None:
    (host,) = provider.inventory().hosts
    assert host.ref.id == URI
    assert host.failure_domain == "rack-7"
    assert host.version.startswith("TEST ") and host.build.startswith("libvirt ")
    assert host.running_vms == 1
    assert host.boot_time == "", "the test driver has no real host to have booted"
    assert host.address == host.ref.name, "a local URI: this machine's hostname"


def test_the_test_driver_declares_no_guest_exec_so_no_guest_lacks_it(
    provider: adapter.LibvirtProvider,
) -> None:
    assert all(v.unsupported == () for v in provider.inventory().vms)


def test_tags_and_labels_round_trip_through_metadata(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    assert provider.get_vm(vm).tags == ()
    provider.write_tags(vm, ["web", "no-patch"], {"ring": "canary", "owner": "team a & b"})
    info = provider.get_vm(vm)
    assert info.tags == ("web", "no-patch")
    assert dict(info.labels) == {"ring": "canary", "owner": "team a & b"}
    listed = next(v for v in provider.inventory().vms if v.ref == vm)
    assert (listed.tags, dict(listed.labels)) == (info.tags, dict(info.labels))

    provider.write_tags(vm, [], {})
    assert (provider.get_vm(vm).tags, dict(provider.get_vm(vm).labels)) == ((), {})


def test_tags_in_another_namespace_are_ignored() -> None:
    writer = open_test_provider(tag_namespace="https://example.com/other")
    try:
        vm = find_vm(writer, "test")
        writer.write_tags(vm, ["foreign"], {"ring": "x"})
        assert writer.get_vm(vm).tags == ("foreign",)
        xml = writer._read("XMLDesc", str(vm), lambda conn: conn.lookupByUUIDString(vm.id).XMLDesc(0))
    finally:
        writer.close()
    assert adapter.parse_tags(xml, "https://example.com/other") == (("foreign",), {"ring": "x"})
    assert adapter.parse_tags(xml, adapter.DEFAULT_TAG_NAMESPACE) == ((), {})


def test_tags_are_read_with_or_without_namespaced_children() -> None:
    xml = (
        "<domain><metadata><pw:tags xmlns:pw='https://patchwave.dev/xmlns/tags/1'><tag>web</tag>"
        "<pw:tag>db</pw:tag><tag>web</tag><label key='ring'>main</label><label>no key</label></pw:tags>"
        "</metadata></domain>"
    )
    assert adapter.parse_tags(xml, adapter.DEFAULT_TAG_NAMESPACE) == (("web", "db"), {"ring": "main"})


def test_inventory_does_not_ping_agents_and_the_test_driver_has_none(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    assert all(v.agent_ready is False for v in provider.inventory().vms)
    assert provider.get_vm(vm).agent_ready is False
    with pytest.raises(CapabilityMissing):
        provider.guest_ping(vm)
    with pytest.raises(CapabilityMissing):
        provider.guest_exec(vm, ["true"], timeout=5)


def test_vm_ids_that_are_not_uuids_are_not_found(provider: adapter.LibvirtProvider) -> None:
    with pytest.raises(NotFound):
        provider.get_vm(VmRef(SITE, "not-a-uuid", "x"))


def test_vm_of_another_site_is_not_found(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    with pytest.raises(NotFound):
        provider.get_vm(VmRef("elsewhere", vm.id, vm.name))


def test_creating_an_existing_snapshot_name_is_refused(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    name, description = _owned("dup")
    first = provider.create_snapshot(vm, name, description)
    with pytest.raises(OperationRefused) as refused:
        provider.create_snapshot(vm, name, "someone else's")
    assert refused.value.code == "snapshot_exists" and not refused.value.retryable
    assert [s.description for s in provider.list_snapshots(vm)] == [first.description], "the original is kept"


def test_snapshot_of_running_domain_includes_memory_even_without_asking(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    name, description = _owned("implicit-memory")
    snapshot = provider.create_snapshot(vm, name, description, memory=False)
    assert snapshot.has_memory is True, "libvirt internal snapshots of running domains are checkpoints"
    provider.power_off(vm)
    provider.revert_snapshot(vm, snapshot.id)
    assert provider.get_vm(vm).power is PowerState.RUNNING


def test_snapshot_lists_parent_and_paused_state_reverts_paused(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    first = provider.create_snapshot(vm, *_owned("parent"))
    provider._read("suspend", str(vm), lambda conn: conn.lookupByUUIDString(vm.id).suspend())
    assert provider.get_vm(vm).power is PowerState.PAUSED
    second = provider.create_snapshot(vm, *_owned("child"))
    assert second.parent == first.id
    provider.power_on(vm)  # resumes
    assert provider.get_vm(vm).power is PowerState.RUNNING
    provider.revert_snapshot(vm, second.id)
    assert provider.get_vm(vm).power is PowerState.PAUSED
    provider.power_on(vm)
    assert provider.get_vm(vm).power is PowerState.RUNNING


def test_power_verbs_are_idempotent(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    provider.power_on(vm)
    assert provider.get_vm(vm).power is PowerState.RUNNING
    provider.power_off(vm)
    provider.power_off(vm)
    assert provider.get_vm(vm).power is PowerState.STOPPED
    provider.shutdown(vm, timeout=1)  # already off: nothing to wait for


def test_graceful_shutdown_waits_for_power_off(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    provider.shutdown(vm, timeout=5)
    assert provider.get_vm(vm).power is PowerState.STOPPED
    assert provider.get_host(provider.inventory().hosts[0].ref).running_vms == 0


def test_reboot_guest_keeps_it_running_and_refuses_a_stopped_vm(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    provider.reboot_guest(vm)
    assert provider.get_vm(vm).power is PowerState.RUNNING
    provider.power_off(vm)
    with pytest.raises(OperationRefused):
        provider.reboot_guest(vm)


def test_calls_from_many_threads_share_the_connection(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    errors: list[BaseException] = []
    names: list[str] = []

    def worker(index: int) -> None:
        try:
            name, description = _owned(f"thread-{index}")
            names.append(provider.create_snapshot(vm, name, description).id)
            provider.get_vm(vm)
            provider.inventory()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(s.id for s in provider.list_snapshots(vm)) == sorted(names)


def test_a_dropped_connection_is_reopened(vm: VmRef) -> None:
    provider = open_test_provider()
    try:
        provider._connection.get().close()  # the daemon side went away
        info = provider.get_vm(vm)  # isAlive() fails -> reopened (test driver: a fresh hypervisor)
        assert info.ref == vm and info.power is PowerState.RUNNING
    finally:
        provider.close()


def test_a_closed_provider_refuses_calls(vm: VmRef) -> None:
    provider = open_test_provider()
    provider.close()
    with pytest.raises(PermanentProviderError) as closed:
        provider.get_vm(vm)
    assert closed.value.code == "closed"


def test_unreachable_daemon_is_a_transient_error() -> None:
    connection = adapter.Connection(libvirt, "qemu:///system?socket=/nonexistent/pw-libvirt-sock", timeout=5)
    with pytest.raises(ProviderUnavailable) as failed:
        connection.get()
    assert failed.value.retryable and failed.value.code == "connection"


class _FakeLibvirtError:
    """What translate_error reads of a ``libvirtError``: code, domain, message."""

    def __init__(self, code: int, domain: int = libvirt.VIR_FROM_QEMU) -> None:
        self.code, self.domain = code, domain

    def get_error_code(self) -> int:
        return self.code

    def get_error_domain(self) -> int:
        return self.domain

    def get_error_message(self) -> str:
        return "Guest agent is not responding"


@pytest.mark.parametrize(
    "code, short",
    [
        (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "agent_unresponsive"),
        (libvirt.VIR_ERR_AGENT_UNSYNCED, "agent_unsynced"),
    ],
)
def test_agent_errors_are_guest_agent_unavailable(code: int, short: str) -> None:
    error = adapter.translate_error(libvirt, _FakeLibvirtError(code), target="vm")
    assert isinstance(error, GuestAgentUnavailable) and error.retryable and error.code == short
