"""The provider contract suite: the same assertions over every provider adapter.

How to use it
=============

A test module per provider subclasses :class:`ProviderContract`; pytest collects the inherited
``test_*`` methods (the class name must start with ``Test``)::

    # tests/contract/test_<provider>.py
    import pytest
    from tests.contract.suite import ProviderContract   # the repo root is on sys.path (*)

    pytestmark = pytest.mark.e2e            # when it talks to a real or simulated service

    class TestMyProviderContract(ProviderContract):
        missing_vm_id = "999999"             # optional: an id your platform accepts but lacks
        power_timeout = 120.0                # optional: seconds for power/revert state changes

        @pytest.fixture
        def provider(self): ...              # a connected Provider (closed by the fixture)

        @pytest.fixture
        def contract_vm(self, provider): ... # VmRef: disposable, RUNNING, snapshot-capable disk

        @pytest.fixture
        def contract_host(self, provider): ...   # HostRef present in provider.inventory()

        @pytest.fixture
        def agent_vm(self, provider): ...    # optional: VmRef whose guest agent answers

(*) ``pythonpath = ["."]`` in the pytest configuration (pyproject.toml) provides it; test modules
never touch ``sys.path`` themselves.

Fixtures may also be defined at module level (or in a conftest) — except ``agent_vm``: the suite
defines a default ``agent_vm`` (returning ``None`` = "no agent available"), and a class-level
fixture beats a module-level one, so override ``agent_vm`` *inside* the subclass.

What the suite assumes
======================

* ``contract_vm`` is disposable: the suite powers it off and on, snapshots and reverts it. Each
  test leaves it RUNNING again and deletes the snapshots it created (also when it fails).
* Capability gating: a test of an optional verb group skips (with the reason) when the provider
  does not declare the capability, and :meth:`test_undeclared_capabilities_are_refused` then
  asserts that :func:`providers.capabilities.require` refuses it — so every capability is either
  exercised or proven refused.
* Snapshot names come from :func:`providers.base.snapshot_name` and descriptions carry
  :class:`providers.base.SnapshotOwnership` text, exactly as the engine creates them.
* Revert must restore observable state. The suite uses power state, which every platform can
  show: a snapshot of a *stopped* VM reverted after power-on gives a stopped VM; with
  SNAPSHOT_MEMORY, a memory snapshot of a *running* VM reverted after power-off gives a running
  VM. With an agent VM, a marker file written after the snapshot must be gone after revert.
* Guest exec tests need GUEST_EXEC *and* an ``agent_vm``; they run ``/bin/sh`` in the guest.
* Power verbs are idempotent: ``power_on`` of a running VM, ``power_off`` and ``shutdown`` of a
  stopped one are no errors and change nothing.
* ``VmInfo.unsupported`` lists only capabilities the provider declares; ``HostInfo.address`` is a
  string ("" when the platform does not know one).

Nothing here imports an SDK or knows a provider: only ``providers.base`` (and ``.capabilities``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from providers.base import (
    Capability,
    ExecResult,
    HostInfo,
    HostRef,
    Inventory,
    PowerState,
    Provider,
    SnapshotInfo,
    SnapshotOwnership,
    VmInfo,
    VmRef,
    snapshot_name,
)
from providers.capabilities import require
from providers.errors import CapabilityMissing, NotFound, ProviderTimeout
from providers.guest_environment import GUEST_PATH
from providers.timing import utc_now_iso, wait_until
from tests.contract.backup_suite import BackupContract

#: Which methods a declared capability promises (the Protocols in providers/capabilities.py).
CAPABILITY_METHODS: dict[Capability, tuple[str, ...]] = {
    Capability.INVENTORY: ("inventory", "get_vm", "get_host"),
    Capability.POWER: ("power_on", "shutdown", "power_off"),
    Capability.GUEST_REBOOT: ("reboot_guest",),
    Capability.SNAPSHOT: ("list_snapshots", "create_snapshot", "revert_snapshot", "delete_snapshot"),
    Capability.SNAPSHOT_MEMORY: ("create_snapshot",),
    Capability.SNAPSHOT_QUIESCE: ("create_snapshot",),
    Capability.GUEST_EXEC: ("guest_ping", "guest_exec"),
    Capability.HOST_MAINTENANCE: ("enter_maintenance", "exit_maintenance", "maintenance_refusal"),
    Capability.HOST_EVACUATE: ("enter_maintenance",),
    Capability.HOST_PATCH: ("patch_host",),
    Capability.HOST_REBOOT: ("reboot_host",),
    Capability.BACKUP: ("create_backup", "list_backups", "delete_backup"),
    Capability.BACKUP_VERIFY: ("restore_copy", "list_restored_copies", "probe_copy", "destroy_copy"),
}

SHELL = "/bin/sh"


def _skip_unless(provider: Provider, *capabilities: Capability) -> None:
    missing = [c.value for c in capabilities if c not in provider.capabilities]
    if missing:
        pytest.skip(f"provider does not declare {', '.join(missing)} (refusal is checked by the gate test)")


class ProviderContract(BackupContract):
    """Provider-neutral assertions. Subclass it as ``Test<Provider>Contract`` (see module doc).
    The backup cases are in :mod:`tests.contract.backup_suite` (fixtures ``verify_vm``,
    ``verify_probes``)."""

    #: An id the platform accepts syntactically but that names no VM (override per platform).
    missing_vm_id: str = "00000000-0000-4000-8000-00000000dead"
    #: A host id that names no host.
    missing_host_id: str = "pw-contract-no-such-host"
    #: Seconds to wait for power / revert state changes to become visible.
    power_timeout: float = 120.0
    #: Seconds a guest command in the exec tests may take.
    exec_timeout: float = 60.0

    # ---------------------------------------------------------------- fixtures

    @pytest.fixture
    def agent_vm(self) -> VmRef | None:
        """Default: no VM with a responding guest agent. Override inside the subclass."""
        return None

    @pytest.fixture
    def running_vm(self, provider: Provider, contract_vm: VmRef) -> Iterator[VmRef]:
        """``contract_vm``, RUNNING before the test and again after it."""
        self._ensure_running(provider, contract_vm)
        yield contract_vm
        self._ensure_running(provider, contract_vm)

    @pytest.fixture
    def snapshots(self, provider: Provider, running_vm: VmRef) -> Iterator[Callable[..., SnapshotInfo]]:
        """A factory creating owned snapshots on ``running_vm``; whatever is left is deleted after."""
        created: list[str] = []
        run_id = f"contract-{uuid.uuid4().hex[:8]}"

        def make(step: str, *, memory: bool = False) -> SnapshotInfo:
            ownership = SnapshotOwnership(run_id=run_id, step_id=step, created_at=utc_now_iso())
            info = provider.create_snapshot(  # type: ignore[attr-defined]
                running_vm,
                snapshot_name(run_id, step),
                ownership.to_description("contract suite"),
                memory=memory,
            )
            created.append(info.id)
            return info

        yield make
        for snapshot_id in created:
            try:
                provider.delete_snapshot(running_vm, snapshot_id)  # type: ignore[attr-defined]
            except NotFound:
                pass

    # ---------------------------------------------------------------- helpers

    def _power(self, provider: Provider, vm: VmRef) -> PowerState:
        return provider.get_vm(vm).power

    def _wait_power(self, provider: Provider, vm: VmRef, wanted: PowerState) -> None:
        wait_until(
            lambda: self._power(provider, vm) is wanted,
            timeout=self.power_timeout,
            interval=0.5,
            what=f"{vm} to be {wanted.value}",
        )

    def _ensure_running(self, provider: Provider, vm: VmRef) -> None:
        if self._power(provider, vm) is not PowerState.RUNNING:
            if Capability.POWER not in provider.capabilities:
                pytest.fail(f"contract_vm {vm} must be running and the provider cannot power it on")
            provider.power_on(vm)  # type: ignore[attr-defined]
            self._wait_power(provider, vm, PowerState.RUNNING)

    def _find(self, snapshots: list[SnapshotInfo], snapshot_id: str) -> SnapshotInfo | None:
        return next((s for s in snapshots if s.id == snapshot_id), None)

    def _run(self, provider: Provider, vm: VmRef, script: str, *, timeout: float | None = None) -> ExecResult:
        return provider.guest_exec(  # type: ignore[attr-defined, no-any-return]
            vm,
            [SHELL, "-c", script],
            timeout=timeout or self.exec_timeout,
            env={"PATH": GUEST_PATH, "LC_ALL": "C"},
        )

    def _agent(self, provider: Provider, agent_vm: VmRef | None) -> VmRef:
        _skip_unless(provider, Capability.GUEST_EXEC)
        if agent_vm is None:
            pytest.skip("no agent_vm fixture: this target has no guest with a responding agent")
        return agent_vm

    # ---------------------------------------------------------------- provider shape

    def test_provider_is_a_provider(self, provider: Provider) -> None:
        assert isinstance(provider, Provider)
        assert isinstance(provider.site, str) and provider.site
        assert isinstance(provider.capabilities, frozenset)
        assert all(isinstance(c, Capability) for c in provider.capabilities)
        assert Capability.INVENTORY in provider.capabilities

    def test_declared_capabilities_are_backed_by_methods(self, provider: Provider) -> None:
        for capability in provider.capabilities:
            for method in CAPABILITY_METHODS[capability]:
                assert callable(getattr(provider, method, None)), (
                    f"{capability.value} declared, {method} missing"
                )
            assert require(provider, capability) is provider

    def test_undeclared_capabilities_are_refused(self, provider: Provider) -> None:
        undeclared = [c for c in Capability if c not in provider.capabilities]
        for capability in undeclared:
            with pytest.raises(CapabilityMissing):
                require(provider, capability)
        # and the declared ones pass (so the loop above is not vacuous for full-featured providers)
        assert all(require(provider, c) is provider for c in provider.capabilities)

    # ---------------------------------------------------------------- inventory

    def test_inventory_is_typed_with_unique_ids(self, provider: Provider) -> None:
        inventory = provider.inventory()
        assert isinstance(inventory, Inventory)
        assert inventory.site == provider.site
        assert inventory.hosts, "a provider has at least one host"
        assert all(isinstance(h, HostInfo) and isinstance(h.ref, HostRef) for h in inventory.hosts)
        assert all(isinstance(v, VmInfo) and isinstance(v.ref, VmRef) for v in inventory.vms)
        host_ids = [h.ref.id for h in inventory.hosts]
        vm_ids = [v.ref.id for v in inventory.vms]
        assert len(host_ids) == len(set(host_ids)), f"duplicate host ids: {host_ids}"
        assert len(vm_ids) == len(set(vm_ids)), f"duplicate vm ids: {vm_ids}"
        assert all(h.ref.site == provider.site for h in inventory.hosts)
        assert all(v.ref.site == provider.site for v in inventory.vms)
        assert all(isinstance(v.power, PowerState) for v in inventory.vms)
        assert all(h.failure_domain for h in inventory.hosts), "every host has a failure domain"

    def test_vms_reference_hosts_in_the_inventory(self, provider: Provider) -> None:
        inventory = provider.inventory()
        hosts = {h.ref for h in inventory.hosts}
        for vm in inventory.vms:
            if vm.host is not None:
                assert vm.host in hosts, f"{vm.ref} runs on {vm.host}, which the inventory does not list"

    def test_inventory_contains_the_fixtures(
        self, provider: Provider, contract_vm: VmRef, contract_host: HostRef
    ) -> None:
        inventory = provider.inventory()
        assert contract_vm in {v.ref for v in inventory.vms}
        assert contract_host in {h.ref for h in inventory.hosts}

    def test_get_vm_round_trips(self, provider: Provider, running_vm: VmRef) -> None:
        info = provider.get_vm(running_vm)
        assert isinstance(info, VmInfo)
        assert info.ref == running_vm
        assert info.power is PowerState.RUNNING
        listed = next(v for v in provider.inventory().vms if v.ref == running_vm)
        assert (listed.host, listed.tags, dict(listed.labels), listed.kind) == (
            info.host,
            info.tags,
            dict(info.labels),
            info.kind,
        )

    def test_get_host_round_trips(self, provider: Provider, contract_host: HostRef) -> None:
        info = provider.get_host(contract_host)
        assert isinstance(info, HostInfo)
        assert info.ref == contract_host
        listed = next(h for h in provider.inventory().hosts if h.ref == contract_host)
        assert (listed.failure_domain, listed.version, listed.build) == (
            info.failure_domain,
            info.version,
            info.build,
        )

    def test_unsupported_capabilities_are_declared_ones_and_stable(
        self, provider: Provider, running_vm: VmRef
    ) -> None:
        inventory = provider.inventory()
        for vm in inventory.vms:
            assert all(isinstance(c, Capability) for c in vm.unsupported), f"{vm.ref}: {vm.unsupported}"
            assert set(vm.unsupported) <= provider.capabilities, (
                f"{vm.ref} lists {vm.unsupported}, which the provider does not declare"
            )
        listed = next(v for v in inventory.vms if v.ref == running_vm)
        assert provider.get_vm(running_vm).unsupported == listed.unsupported

    def test_host_address_is_a_string_and_round_trips(
        self, provider: Provider, contract_host: HostRef
    ) -> None:
        listed = next(h for h in provider.inventory().hosts if h.ref == contract_host)
        assert isinstance(listed.address, str)
        assert provider.get_host(contract_host).address == listed.address

    def test_unknown_vm_raises_not_found(self, provider: Provider) -> None:
        with pytest.raises(NotFound):
            provider.get_vm(VmRef(provider.site, self.missing_vm_id, "pw-contract-missing"))

    def test_unknown_host_raises_not_found(self, provider: Provider) -> None:
        with pytest.raises(NotFound):
            provider.get_host(HostRef(provider.site, self.missing_host_id, "pw-contract-missing"))

    # ---------------------------------------------------------------- snapshots

    def test_snapshot_create_list_delete(
        self, provider: Provider, running_vm: VmRef, snapshots: Callable[..., SnapshotInfo]
    ) -> None:
        _skip_unless(provider, Capability.SNAPSHOT)
        created = snapshots("lifecycle")
        assert isinstance(created, SnapshotInfo)
        assert created.vm == running_vm and created.id
        assert created.ownership is not None and created.ownership.step_id == "lifecycle"

        listed = self._find(provider.list_snapshots(running_vm), created.id)  # type: ignore[attr-defined]
        assert listed is not None, "a created snapshot is listed"
        assert listed.name == created.name
        assert listed.ownership == created.ownership, "ownership survives the round trip"
        assert listed.created_at, "snapshots carry their creation time"
        assert datetime.fromisoformat(listed.created_at).tzinfo is not None, (
            "created_at is ISO-8601 with zone"
        )

        provider.delete_snapshot(running_vm, created.id)  # type: ignore[attr-defined]
        assert self._find(provider.list_snapshots(running_vm), created.id) is None  # type: ignore[attr-defined]
        with pytest.raises(NotFound):
            provider.delete_snapshot(running_vm, created.id)  # type: ignore[attr-defined]

    def test_unknown_snapshot_raises_not_found(self, provider: Provider, running_vm: VmRef) -> None:
        _skip_unless(provider, Capability.SNAPSHOT)
        with pytest.raises(NotFound):
            provider.revert_snapshot(running_vm, "pw-contract-no-such-snapshot")  # type: ignore[attr-defined]
        with pytest.raises(NotFound):
            provider.delete_snapshot(running_vm, "pw-contract-no-such-snapshot")  # type: ignore[attr-defined]

    def test_snapshots_of_unknown_vm_raise_not_found(self, provider: Provider) -> None:
        _skip_unless(provider, Capability.SNAPSHOT)
        with pytest.raises(NotFound):
            provider.list_snapshots(VmRef(provider.site, self.missing_vm_id, "pw-contract-missing"))  # type: ignore[attr-defined]

    def test_revert_restores_stopped_state(
        self, provider: Provider, running_vm: VmRef, snapshots: Callable[..., SnapshotInfo]
    ) -> None:
        _skip_unless(provider, Capability.SNAPSHOT, Capability.POWER)
        provider.power_off(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.STOPPED)
        snapshot = snapshots("stopped")
        assert snapshot.has_memory is False, "a stopped VM has no memory to capture"
        provider.power_on(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.RUNNING)

        provider.revert_snapshot(running_vm, snapshot.id)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.STOPPED)
        assert self._find(provider.list_snapshots(running_vm), snapshot.id) is not None, "revert keeps it"  # type: ignore[attr-defined]

    def test_memory_snapshot_revert_restores_running_state(
        self, provider: Provider, running_vm: VmRef, snapshots: Callable[..., SnapshotInfo]
    ) -> None:
        _skip_unless(provider, Capability.SNAPSHOT, Capability.SNAPSHOT_MEMORY, Capability.POWER)
        snapshot = snapshots("memory", memory=True)
        listed = self._find(provider.list_snapshots(running_vm), snapshot.id)  # type: ignore[attr-defined]
        assert listed is not None and listed.has_memory, "a memory snapshot says so when listed"
        provider.power_off(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.STOPPED)

        provider.revert_snapshot(running_vm, snapshot.id)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.RUNNING)

    def test_memory_snapshot_without_capability_is_refused(
        self, provider: Provider, running_vm: VmRef
    ) -> None:
        _skip_unless(provider, Capability.SNAPSHOT)
        if Capability.SNAPSHOT_MEMORY in provider.capabilities:
            pytest.skip("provider declares SNAPSHOT_MEMORY (exercised by the memory revert test)")
        before = provider.list_snapshots(running_vm)  # type: ignore[attr-defined]
        with pytest.raises(CapabilityMissing):
            provider.create_snapshot(running_vm, "pw-contract-refused", "", memory=True)  # type: ignore[attr-defined]
        assert provider.list_snapshots(running_vm) == before, "a refused snapshot leaves nothing behind"  # type: ignore[attr-defined]

    def test_quiesced_snapshot_without_capability_is_refused(
        self, provider: Provider, running_vm: VmRef
    ) -> None:
        _skip_unless(provider, Capability.SNAPSHOT)
        if Capability.SNAPSHOT_QUIESCE in provider.capabilities:
            pytest.skip(
                "provider declares SNAPSHOT_QUIESCE (needs a guest agent; exercised by adapter tests)"
            )
        with pytest.raises(CapabilityMissing):
            provider.create_snapshot(running_vm, "pw-contract-refused", "", quiesce=True)  # type: ignore[attr-defined]

    def test_revert_restores_guest_files(self, provider: Provider, agent_vm: VmRef | None) -> None:
        vm = self._agent(provider, agent_vm)
        _skip_unless(provider, Capability.SNAPSHOT, Capability.SNAPSHOT_MEMORY)
        marker = f"/var/tmp/pw-contract-{uuid.uuid4().hex[:8]}"
        run_id = f"contract-{uuid.uuid4().hex[:8]}"
        ownership = SnapshotOwnership(run_id=run_id, step_id="marker", created_at=utc_now_iso())
        assert self._run(provider, vm, f"echo before > {marker}; sync").ok
        snapshot = provider.create_snapshot(  # type: ignore[attr-defined]
            vm, snapshot_name(run_id, "marker"), ownership.to_description(), memory=True
        )
        try:
            assert self._run(provider, vm, f"echo after > {marker}; sync").ok
            provider.revert_snapshot(vm, snapshot.id)  # type: ignore[attr-defined]
            wait_until(
                lambda: provider.guest_ping(vm),
                timeout=self.power_timeout,
                interval=1.0,  # type: ignore[attr-defined]
                what=f"guest agent of {vm} after revert",
            )
            assert self._run(provider, vm, f"cat {marker}").stdout == "before\n"
        finally:
            provider.delete_snapshot(vm, snapshot.id)  # type: ignore[attr-defined]
            self._run(provider, vm, f"rm -f {marker}")

    # ---------------------------------------------------------------- power

    def test_power_off_and_on_change_power_state(self, provider: Provider, running_vm: VmRef) -> None:
        _skip_unless(provider, Capability.POWER)
        provider.power_off(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.STOPPED)
        provider.power_on(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.RUNNING)

    def test_power_on_of_a_running_vm_is_a_no_op(self, provider: Provider, running_vm: VmRef) -> None:
        _skip_unless(provider, Capability.POWER)
        provider.power_on(running_vm)  # type: ignore[attr-defined]
        provider.power_on(running_vm)  # type: ignore[attr-defined]
        assert self._power(provider, running_vm) is PowerState.RUNNING

    def test_power_off_and_shutdown_of_a_stopped_vm_are_no_ops(
        self, provider: Provider, running_vm: VmRef
    ) -> None:
        _skip_unless(provider, Capability.POWER)
        provider.power_off(running_vm)  # type: ignore[attr-defined]
        self._wait_power(provider, running_vm, PowerState.STOPPED)
        provider.power_off(running_vm)  # type: ignore[attr-defined]
        provider.shutdown(running_vm, timeout=5.0)  # type: ignore[attr-defined]
        assert self._power(provider, running_vm) is PowerState.STOPPED

    def test_power_ops_on_unknown_vm_raise_not_found(self, provider: Provider) -> None:
        _skip_unless(provider, Capability.POWER)
        missing = VmRef(provider.site, self.missing_vm_id, "pw-contract-missing")
        for verb in (provider.power_on, provider.power_off):  # type: ignore[attr-defined]
            with pytest.raises(NotFound):
                verb(missing)

    # ---------------------------------------------------------------- guest exec

    def test_guest_ping_answers(self, provider: Provider, agent_vm: VmRef | None) -> None:
        vm = self._agent(provider, agent_vm)
        assert provider.guest_ping(vm) is True  # type: ignore[attr-defined]
        assert provider.get_vm(vm).agent_ready is True

    def test_guest_exec_captures_exit_code_and_output(
        self, provider: Provider, agent_vm: VmRef | None
    ) -> None:
        vm = self._agent(provider, agent_vm)
        result = self._run(provider, vm, "echo out; echo err >&2; exit 3")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert result.signal is None and not result.ok
        assert not result.stdout_truncated and not result.stderr_truncated

    def test_guest_exec_passes_stdin_and_env(self, provider: Provider, agent_vm: VmRef | None) -> None:
        vm = self._agent(provider, agent_vm)
        result = provider.guest_exec(  # type: ignore[attr-defined]
            vm,
            [SHELL, "-c", 'cat; echo "$PW_CONTRACT"'],
            timeout=self.exec_timeout,
            env={"PATH": GUEST_PATH, "PW_CONTRACT": "marker-42"},
            stdin="from stdin\n",
        )
        assert result.ok and result.stdout == "from stdin\nmarker-42\n"

    def test_guest_exec_times_out(self, provider: Provider, agent_vm: VmRef | None) -> None:
        vm = self._agent(provider, agent_vm)
        with pytest.raises(ProviderTimeout):
            self._run(provider, vm, "sleep 30", timeout=2.0)
