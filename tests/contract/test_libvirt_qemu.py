"""The provider contract on a real libvirtd (``qemu:///system``) with a QEMU TCG domain, plus QEMU specifics.

One domain per test session: ``pw-contract-<random>``, 1 vCPU, 64 MiB, an empty 64 MiB qcow2 disk
in a pytest temp dir and a qemu-guest-agent channel. No OS boots (SeaBIOS finds nothing and idles),
which is all internal snapshots with memory, revert, delete and the power verbs need. Teardown
destroys it and undefines it with its snapshot metadata; the disk goes with the temp dir.

libvirtd must run (``.ci/setup-libvirt.sh``). Without it the fixture FAILS when ``CI=true`` and
skips (with the reason) elsewhere.

Guest exec needs a guest whose qemu-guest-agent answers, which an empty disk cannot provide. Set
``PW_LIBVIRT_AGENT_DOMAIN`` to the name of a running domain on ``qemu:///system`` with a
responding agent (e.g. a lab guest from ``python -m patchwave_lab up``) to run the suite's guest
tests against it; they snapshot, revert and write files in ``/var/tmp`` of that guest.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.base import Capability, HostRef, PowerState, SnapshotOwnership, VmRef, snapshot_name
from providers.errors import GuestAgentUnavailable, OperationRefused, ProviderTimeout, TransientProviderError
from providers.libvirt import provider as adapter
from providers.timing import utc_now_iso
from tests.contract.suite import ProviderContract
from tests.support.tcg_domains import URI, disposable_domains, unavailable

pytestmark = pytest.mark.e2e

SITE = "qemu"
AGENT_DOMAIN_ENV = "PW_LIBVIRT_AGENT_DOMAIN"


@pytest.fixture(scope="session")
def libvirt_module() -> object:
    try:
        import libvirt
    except ImportError:
        unavailable("libvirt-python is not installed (pip install 'patchwave[libvirt]')")
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        unavailable(f"libvirtd does not answer on {URI}: {exc.get_error_message()}")
    conn.close()
    return libvirt


@pytest.fixture(scope="session")
def qemu_domain(
    libvirt_module: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(uuid, name) of a running disposable TCG domain; destroyed and undefined at the end."""
    folder = tmp_path_factory.mktemp("libvirt-contract")
    try:
        with disposable_domains(
            folder, "pw-contract", count=1, disk_size="64M", memory_mib=64, acpi=True, agent_channel=True
        ) as made:
            [(name, uid)] = made.items()
            yield uid, name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def provider(libvirt_module: object) -> Iterator[adapter.LibvirtProvider]:
    provider = adapter.open_provider(adapter.parse_settings(SITE, {"uri": URI, "agent_timeout": "2s"}))
    yield provider
    provider.close()


@pytest.fixture
def vm(provider: adapter.LibvirtProvider, qemu_domain: tuple[str, str]) -> Iterator[VmRef]:
    ref = VmRef(SITE, *qemu_domain)
    provider.power_on(ref)
    yield ref
    for snapshot in provider.list_snapshots(ref):
        provider.delete_snapshot(ref, snapshot.id)
    provider.power_on(ref)


class TestLibvirtQemuContract(ProviderContract):
    power_timeout = 60.0

    @pytest.fixture
    def provider(self, libvirt_module: object, tmp_path: Path) -> Iterator[adapter.LibvirtProvider]:
        """With ``backup_dir``: BACKUP and BACKUP_VERIFY are declared (the backup job is real)."""
        table = {"uri": URI, "agent_timeout": "2s", "backup_dir": str(tmp_path / "backups")}
        provider = adapter.open_provider(adapter.parse_settings(SITE, table))
        yield provider
        provider.close()

    @pytest.fixture
    def contract_vm(self, qemu_domain: tuple[str, str]) -> VmRef:
        return VmRef(SITE, *qemu_domain)

    @pytest.fixture
    def contract_host(self, provider: adapter.LibvirtProvider) -> HostRef:
        return provider.inventory().hosts[0].ref

    @pytest.fixture
    def agent_vm(self, provider: adapter.LibvirtProvider) -> VmRef | None:
        name = os.environ.get(AGENT_DOMAIN_ENV, "")
        if not name:
            pytest.skip(
                f"the contract domain boots no OS, so no guest agent answers; set {AGENT_DOMAIN_ENV}=<domain> "
                "(a running guest with qemu-guest-agent) to run the guest exec tests"
            )
        ref = next((v.ref for v in provider.inventory().vms if v.ref.name == name), None)
        if ref is None or not provider.guest_ping(ref):
            pytest.fail(f"{AGENT_DOMAIN_ENV}={name}: no such running domain with a responding agent on {URI}")
        return ref

    @pytest.fixture
    def verify_vm(self, provider: adapter.LibvirtProvider) -> VmRef | None:
        """The agent domain, when one is named: its restored copy boots and its agent answers."""
        name = os.environ.get(AGENT_DOMAIN_ENV, "")
        return next((v.ref for v in provider.inventory().vms if v.ref.name == name), None) if name else None

    # -------------------------------------------------- adapter specifics that need a real agent

    def test_exec_of_a_missing_program_is_refused_by_the_agent(
        self, provider: adapter.LibvirtProvider, agent_vm: VmRef
    ) -> None:
        with pytest.raises(OperationRefused) as refused:
            provider.guest_exec(agent_vm, ["/nonexistent/pw-program"], timeout=10)
        assert refused.value.code == "agent_command_failed"

    def test_exec_reports_a_killing_signal(self, provider: adapter.LibvirtProvider, agent_vm: VmRef) -> None:
        result = provider.guest_exec(agent_vm, ["/bin/sh", "-c", "kill -TERM $$"], timeout=10)
        assert (result.exit_code, result.signal, result.ok) == (None, 15, False)

    def test_exec_timeout_kills_the_process_tree(
        self, provider: adapter.LibvirtProvider, agent_vm: VmRef
    ) -> None:
        seconds = 300_000 + uuid.uuid4().int % 100_000  # a duration no other process sleeps
        with pytest.raises(ProviderTimeout):
            provider.guest_exec(agent_vm, ["/bin/sh", "-c", f"sleep {seconds} & sleep {seconds}"], timeout=2)
        count = f"ps -eo args | grep -c '[s]leep {seconds}' || true"
        left = provider.guest_exec(agent_vm, ["/bin/sh", "-c", count], timeout=10)
        assert left.stdout.strip() == "0", "the timed-out command and its children were killed"


# ------------------------------------------------------------------------------------------------
# QEMU specifics the contract leaves open
# ------------------------------------------------------------------------------------------------


def _owned(step: str) -> tuple[str, str]:
    run_id = f"run-qemu-{uuid.uuid4().hex[:6]}"
    ownership = SnapshotOwnership(run_id=run_id, step_id=step, created_at=utc_now_iso())
    return snapshot_name(run_id, step), ownership.to_description()


def test_qemu_connections_declare_guest_exec(provider: adapter.LibvirtProvider) -> None:
    assert provider.capabilities == {
        Capability.INVENTORY,
        Capability.POWER,
        Capability.GUEST_REBOOT,
        Capability.SNAPSHOT,
        Capability.SNAPSHOT_MEMORY,
        Capability.GUEST_EXEC,
    }


def test_host_reports_versions_and_boot_time(provider: adapter.LibvirtProvider) -> None:
    (host,) = provider.inventory().hosts
    assert host.ref.id == URI and host.failure_domain == host.ref.name
    assert host.version.startswith("QEMU ") and host.build.startswith("libvirt ")
    assert host.boot_time.endswith("+00:00")
    assert host.running_vms >= 1
    assert host.address == host.ref.name, "a local URI: this machine's hostname"


def test_a_silent_agent_is_not_ready_and_exec_is_transient(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    assert next(v for v in provider.inventory().vms if v.ref == vm).agent_ready is False
    assert provider.get_vm(vm).agent_ready is False
    assert provider.guest_ping(vm) is False
    with pytest.raises(GuestAgentUnavailable) as unresponsive:
        provider.guest_exec(vm, ["true"], timeout=5)
    assert isinstance(unresponsive.value, TransientProviderError)
    assert unresponsive.value.code == "agent_unresponsive"
    assert provider.get_vm(vm).unsupported == (), "the channel is configured: only not ready, not unsupported"


def test_a_domain_without_an_agent_channel_lacks_guest_exec(
    provider: adapter.LibvirtProvider, libvirt_module: object, qemu_domain: tuple[str, str]
) -> None:
    libvirt = libvirt_module
    name = f"pw-contract-noagent-{uuid.uuid4().hex[:8]}"
    xml = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices><emulator>{shutil.which('qemu-system-x86_64')}</emulator></devices></domain>"
    )
    conn = libvirt.open(URI)  # type: ignore[attr-defined]
    dom = conn.defineXML(xml)
    try:
        listed = {v.ref.name: v for v in provider.inventory().vms}
        assert listed[name].unsupported == (Capability.GUEST_EXEC,)
        assert listed[qemu_domain[1]].unsupported == ()
        assert provider.get_vm(listed[name].ref).unsupported == (Capability.GUEST_EXEC,)
    finally:
        dom.undefine()
        conn.close()


def test_shutdown_times_out_when_the_guest_ignores_acpi(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    with pytest.raises(ProviderTimeout):
        provider.shutdown(vm, timeout=2)  # the firmware alone does not act on the power button
    assert provider.get_vm(vm).power is PowerState.RUNNING
    provider.power_off(vm)
    assert provider.get_vm(vm).power is PowerState.STOPPED


def test_reboot_falls_back_to_acpi_without_an_agent(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    provider.reboot_guest(vm)
    assert provider.get_vm(vm).power is PowerState.RUNNING


def test_running_snapshot_without_memory_request_is_a_checkpoint(
    provider: adapter.LibvirtProvider, vm: VmRef
) -> None:
    snapshot = provider.create_snapshot(vm, *_owned("no-memory-asked"), memory=False)
    assert snapshot.has_memory is True, (
        "libvirt 9 cannot make disk-only internal snapshots of running domains"
    )
    provider.power_off(vm)
    provider.revert_snapshot(vm, snapshot.id)
    assert provider.get_vm(vm).power is PowerState.RUNNING


def test_snapshot_name_collision_is_refused(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    name, description = _owned("collision")
    provider.create_snapshot(vm, name, description)
    with pytest.raises(OperationRefused) as refused:
        provider.create_snapshot(vm, name, description)
    assert refused.value.code == "snapshot_exists"
    assert [s.name for s in provider.list_snapshots(vm)] == [name]


def test_tags_survive_a_power_cycle(provider: adapter.LibvirtProvider, vm: VmRef) -> None:
    provider.write_tags(vm, ["contract"], {"ring": "canary"})
    provider.power_off(vm)
    provider.power_on(vm)
    info = provider.get_vm(vm)
    assert (info.tags, dict(info.labels)) == (("contract",), {"ring": "canary"})
    provider.write_tags(vm)
    assert provider.get_vm(vm).tags == ()
