"""Backup cases of the provider contract (mixed into :class:`tests.contract.suite.ProviderContract`).

Every test skips (saying why) unless the provider declares BACKUP (and BACKUP_VERIFY for the
restore tests); ``test_undeclared_capabilities_are_refused`` covers providers that do not.

Fixtures a provider's test class may override (inside the class, like ``agent_vm``):

* ``verify_vm`` -> VmRef | None: a running VM whose *restored copy* comes up (its guest agent
  answers, or VMware Tools heartbeat). ``None`` (default): the restore tests skip.
* ``verify_probes`` -> tuple of RestoreProbe run in that copy (default: none, liveness only).
* ``backup_timeout``: seconds for a backup, a restore, a probe (class attribute).

Backups and copies are made with ownership text exactly as the engine makes them
(:class:`providers.backups.BackupOwnership`) and removed after each test, also when it fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from providers.backups import BackupInfo, BackupOwnership, RestoredCopy, RestoreProbe
from providers.base import Capability, Provider, VmRef
from providers.errors import NotFound, OperationRefused
from providers.timing import utc_now_iso


def _skip_without(provider: Provider, *capabilities: Capability) -> None:
    missing = [c.value for c in capabilities if c not in provider.capabilities]
    if missing:
        pytest.skip(f"provider does not declare {', '.join(missing)} (refusal is checked by the gate test)")


class BackupContract:
    backup_timeout: float = 300.0

    @pytest.fixture
    def verify_vm(self) -> VmRef | None:
        return None

    @pytest.fixture
    def verify_probes(self) -> tuple[RestoreProbe, ...]:
        return ()

    @pytest.fixture
    def take_backup(self, provider: Any) -> Iterator[Callable[..., BackupInfo]]:
        """``take_backup(vm, step)``: a backup owned by this test's run; all deleted afterwards."""
        run_id, made = f"contract-{uuid.uuid4().hex[:8]}", []

        def take(vm: VmRef, step: str = "backup") -> BackupInfo:
            owner = BackupOwnership(run_id, step, vm.id, utc_now_iso())
            info = provider.create_backup(vm, ownership=owner, timeout=self.backup_timeout)
            made.append(info)
            return info

        yield take
        for info in made:
            try:
                provider.delete_backup(info, timeout=self.backup_timeout)
            except NotFound:
                pass

    def _copy_owner(self, backup: BackupInfo) -> BackupOwnership:
        run_id = f"contract-{uuid.uuid4().hex[:8]}"
        return BackupOwnership(run_id, "verify", backup.vm.id, utc_now_iso(), "restore", backup.id)

    # ---------------------------------------------------------------- backups

    def test_backup_create_list_delete(
        self, provider: Any, running_vm: VmRef, take_backup: Callable[..., BackupInfo]
    ) -> None:
        _skip_without(provider, Capability.BACKUP)
        backup = take_backup(running_vm, "lifecycle")
        assert isinstance(backup, BackupInfo) and backup.vm == running_vm and backup.id and backup.location
        assert backup.ownership is not None and backup.ownership.step_id == "lifecycle"
        assert backup.ownership.vm_id == running_vm.id and backup.ownership.role == "backup"
        assert datetime.fromisoformat(backup.created_at).tzinfo is not None, (
            "created_at is ISO-8601 with zone"
        )
        assert backup.size >= 0 and (backup.checksum == "" or backup.checksum.startswith("sha256:"))
        listed = [b for b in provider.list_backups(running_vm) if b.id == backup.id]
        assert listed == [backup], "a backup is listed exactly as it was returned"
        provider.delete_backup(backup, timeout=self.backup_timeout)
        assert all(b.id != backup.id for b in provider.list_backups(running_vm))
        with pytest.raises(NotFound):
            provider.delete_backup(backup, timeout=self.backup_timeout)

    def test_a_backup_with_the_same_ownership_is_not_taken_twice(
        self, provider: Any, running_vm: VmRef, take_backup: Callable[..., BackupInfo]
    ) -> None:
        _skip_without(provider, Capability.BACKUP)
        before = {b.id for b in provider.list_backups(running_vm)}
        first = take_backup(running_vm, "once")
        assert first.ownership is not None
        again = provider.create_backup(running_vm, ownership=first.ownership, timeout=self.backup_timeout)
        assert again == first
        assert {b.id for b in provider.list_backups(running_vm)} - before == {first.id}
        other = take_backup(running_vm, "twice")
        assert other.id != first.id, "another step is another backup"
        ids = [b.id for b in provider.list_backups(running_vm)]
        assert ids.index(first.id) < ids.index(other.id), "listed oldest first"

    def test_backups_outlive_their_vm_so_an_unknown_vm_has_none_listed(self, provider: Any) -> None:
        """Listing is by the VM's id, not through the VM: a VM that is gone may still have backups
        (that is what they are for), and one that never existed has none."""
        _skip_without(provider, Capability.BACKUP)
        missing = VmRef(provider.site, self.missing_vm_id, "pw-contract-missing")  # type: ignore[attr-defined]
        assert provider.list_backups(missing) == []

    # ---------------------------------------------------------------- restore-verify

    def test_a_restored_copy_is_isolated_probed_and_destroyed(
        self,
        provider: Any,
        verify_vm: VmRef | None,
        verify_probes: tuple[RestoreProbe, ...],
        take_backup: Callable[..., BackupInfo],
    ) -> None:
        _skip_without(provider, Capability.BACKUP, Capability.BACKUP_VERIFY)
        if verify_vm is None:
            pytest.skip("no verify_vm fixture: no VM here whose restored copy comes up")
        backup = take_backup(verify_vm, "verify")
        owner = self._copy_owner(backup)
        copy = provider.restore_copy(backup, ownership=owner, timeout=self.backup_timeout)
        try:
            assert isinstance(copy, RestoredCopy) and copy.backup_id == backup.id and copy.vm == backup.vm
            assert copy.ownership is not None and owner.same_owner(copy.ownership)
            assert [c.id for c in provider.list_restored_copies() if owner.same_owner(c.ownership)] == [
                copy.id
            ]
            check = provider.probe_copy(copy, verify_probes, timeout=self.backup_timeout)
            assert check.ok, f"restored copy did not pass: {check}"
            assert check.copy_id == copy.id and check.how in ("agent", "heartbeat")
            assert [p.name for p in check.probes] == [p.name for p in verify_probes]
        finally:
            provider.destroy_copy(copy, timeout=self.backup_timeout)
        assert all(c.id != copy.id for c in provider.list_restored_copies())
        provider.destroy_copy(copy, timeout=self.backup_timeout)  # gone: no error
        assert any(b.id == backup.id for b in provider.list_backups(verify_vm)), "verifying keeps the backup"

    def test_restoring_again_with_the_same_ownership_replaces_the_leftover_copy(
        self, provider: Any, verify_vm: VmRef | None, take_backup: Callable[..., BackupInfo]
    ) -> None:
        _skip_without(provider, Capability.BACKUP, Capability.BACKUP_VERIFY)
        if verify_vm is None:
            pytest.skip("no verify_vm fixture: no VM here whose restored copy comes up")
        backup = take_backup(verify_vm, "leftover")
        owner = self._copy_owner(backup)
        first = provider.restore_copy(
            backup, ownership=owner, timeout=self.backup_timeout
        )  # a crash leaves it
        second = provider.restore_copy(backup, ownership=owner, timeout=self.backup_timeout)
        try:
            assert [c.id for c in provider.list_restored_copies() if owner.same_owner(c.ownership)] == [
                second.id
            ]
        finally:
            for copy in (second, first):
                provider.destroy_copy(copy, timeout=self.backup_timeout)

    def test_destroy_copy_refuses_a_vm_that_is_not_a_restored_copy(
        self, provider: Any, running_vm: VmRef
    ) -> None:
        _skip_without(provider, Capability.BACKUP_VERIFY)
        impostor = RestoredCopy(running_vm.id, running_vm.name, "none", running_vm)
        with pytest.raises(OperationRefused) as caught:
            provider.destroy_copy(impostor, timeout=self.backup_timeout)
        assert caught.value.code == "not_ours"
        assert provider.get_vm(running_vm).ref == running_vm, "the VM is still there"

    def test_a_restored_copy_has_the_guest_files_of_backup_time(
        self, provider: Any, verify_vm: VmRef | None, take_backup: Callable[..., BackupInfo]
    ) -> None:
        """A file written before the backup and removed after it is there in the restored copy."""
        _skip_without(provider, Capability.BACKUP, Capability.BACKUP_VERIFY, Capability.GUEST_EXEC)
        if verify_vm is None:
            pytest.skip("no verify_vm fixture: no VM here whose restored copy comes up")
        marker = f"/var/tmp/pw-contract-{uuid.uuid4().hex[:8]}"
        shell = ["/bin/sh", "-c"]
        assert provider.guest_exec(verify_vm, [*shell, f"echo before > {marker}; sync"], timeout=60).ok
        try:
            backup = take_backup(verify_vm, "files")
        finally:
            provider.guest_exec(verify_vm, [*shell, f"rm -f {marker}; sync"], timeout=60)
        copy = provider.restore_copy(backup, ownership=self._copy_owner(backup), timeout=self.backup_timeout)
        try:
            probe = RestoreProbe("marker", (*shell, f"test -f {marker}"), interval=1)
            check = provider.probe_copy(copy, [probe], timeout=self.backup_timeout)
            assert check.ok and check.how == "agent", check
        finally:
            provider.destroy_copy(copy, timeout=self.backup_timeout)
