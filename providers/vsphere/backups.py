"""Backups on vSphere: a full clone, kept as a template in a backup folder, restore-verified by a copy.

Why a clone, and which kind
    vSphere has no backup verb of its own: backup products use VADP (a snapshot, changed-block
    tracking and the VDDK disk transports), which needs VMware's proprietary VDDK and a backup
    repository outside vCenter, and which no simulator models. An OVF export (``ExportVm`` over an
    NFC lease) does leave vCenter, but every restore-verify would have to upload the disks again.
    What vCenter itself does is a *full clone* (``CloneVM_Task``, disks copied, no link to the
    source's snapshots), and ``backup_datastore`` puts it on another datastore, so losing the VM's
    datastore does not lose the backup (without it the clone shares the VM's failure domain, which
    the docs of ``backup_datastore`` say). The clone is made a **template**: it cannot be powered on
    by accident, a template is left out of the inventory (so a backup never becomes a patch target),
    and deploying a template is vSphere's own restore. Size: ``summary.storage.committed``; vSphere
    gives no checksum (restoring it is the check).

Ownership
    ``extraConfig["patchwave.backup"]`` holds the :class:`~providers.backups.BackupOwnership` text,
    set in the clone spec, so it is there from the moment the clone exists (vcsim 0.24 copies
    ``spec.config.extraConfig`` but drops ``annotation``; the annotation gets the same text for
    people on a real vCenter). Backups are listed from the folder's VMs with ``role="backup"``
    for the VM's moref.

Restore-verify
    ``restore_copy`` deploys the template (``CloneVM_Task``, ``template=False``) into the backup
    folder, on the source VM's resource pool (or, when the source is gone, its host's), marked
    ``role="restore"``; then every NIC is reconfigured ``connected=False, startConnected=False``
    (``ReconfigVM_Task``) and read back before ``PowerOnVM_Task``. ``probe_copy`` waits for
    ``guest.toolsRunningStatus == guestToolsRunning`` and ``guestHeartbeatStatus == green`` (VMware
    Tools heartbeats do not need the network) and runs probes through guest operations when the
    site has guest credentials. ``destroy_copy`` powers off and destroys the copy (only one marked
    ``role="restore"``). The template itself is never powered on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from pyVmomi import vim

from providers.backups import (
    BackupInfo,
    BackupOwnership,
    RestoreCheck,
    RestoredCopy,
    RestoreProbe,
    detail_of,
    run_probes,
)
from providers.base import VmRef
from providers.errors import CapabilityMissing, NotFound, OperationRefused, ProviderError, ProviderTimeout
from providers.timing import API_CALL
from providers.vsphere.backup_folders import COPY_PATHS, MARK_KEY, BackupFolder, nic_changes, ownership_of
from providers.vsphere.inventory import find_by_name, iso, read_one
from providers.vsphere.tasks import run_task, wait_task, watch

log = structlog.get_logger("patchwave.providers.vsphere")


class VmBackups(BackupFolder):
    """Backup verbs of one vCenter site (``providers.backups.BackupWork``)."""

    # ------------------------------------------------------------------ backups

    def create(self, vm: VmRef, *, ownership: BackupOwnership, target: str, timeout: float) -> BackupInfo:
        path, source = self._folder_path(target), self._resolve(vm)
        folder = self._folder(self._datacenter(source, str(vm)), path, create=True, target=str(vm))
        text = ownership.to_text()
        relocate = vim.vm.RelocateSpec(diskMoveType="moveAllDiskBackingsAndDisallowSharing")
        if self._settings.backup_datastore:
            dc = self._datacenter(source, str(vm))
            relocate.datastore = find_by_name(
                self._session, dc, vim.Datastore, self._settings.backup_datastore
            )
        spec = vim.vm.CloneSpec(
            location=relocate,
            template=True,
            powerOn=False,
            config=vim.vm.ConfigSpec(
                annotation=text, extraConfig=[vim.option.OptionValue(key=MARK_KEY, value=text)]
            ),
        )

        def start() -> Any:
            # look, then clone, in one retry loop: a dropped connection may hide a clone that was made
            for mo, props, owner in self._marked(folder, "backup", str(vm)):
                if ownership.same_owner(owner):
                    return self._info(vm, path, mo, props, owner)
            return self._session.call(
                lambda c: source.CloneVM_Task(folder=folder, name=ownership.name(vm.name), spec=spec),
                target=str(vm),
                retry=False,
            )

        started = API_CALL.call(start, self._session.clock)
        if isinstance(started, BackupInfo):
            return started
        clone = wait_task(self._session, started, timeout=timeout, what="backup clone", target=str(vm))
        props = read_one(self._session, clone, COPY_PATHS, target=str(vm))
        info = self._info(vm, path, clone, props, ownership_of(props))
        log.info("backup_created", vm=vm.name, clone=clone._moId, folder=path, size=info.size)
        return info

    def _info(
        self, vm: VmRef, path: str, mo: Any, props: dict[str, Any], owner: BackupOwnership | None
    ) -> BackupInfo:
        datastore = str(props.get("summary.config.vmPathName") or "").partition("]")[0].lstrip("[")
        return BackupInfo(
            vm=vm,
            id=mo._moId,
            location=f"{path}/{props.get('name', mo._moId)}",
            target=path,
            created_at=iso(props.get("config.createDate")) or (owner.created_at if owner else ""),
            size=int(props.get("summary.storage.committed") or 0),
            description=owner.to_text() if owner else "",
            detail=detail_of(
                {"datastore": datastore, "template": "1" if props.get("config.template") else "0"}
            ),
        )

    def backups(self, vm: VmRef, *, target: str) -> list[BackupInfo]:
        """By the VM's moref in the backup folder of its datacenter, or of every datacenter when the
        VM is gone (backups outlive their VM). Oldest first; vCenter's morefs grow, so the moref's
        number orders backups taken in the same second."""
        path = self._folder_path(target)
        try:
            datacenters = [self._datacenter(self._resolve(vm), str(vm))]
        except NotFound:
            datacenters = self._datacenters()
        found = [
            self._info(vm, path, mo, props, owner)
            for dc in datacenters
            for mo, props, owner in self._marked(
                self._folder(dc, path, create=False, target=str(vm)), "backup", str(vm)
            )
            if owner.vm_id == vm.id
        ]
        return sorted(found, key=lambda b: (b.created_at, _moref_number(b.id), b.id))

    def delete(self, backup: BackupInfo, *, timeout: float) -> None:
        found = self._marked_vm(backup.id, "backup", str(backup.vm))
        if found is None:
            raise NotFound(f"backup {backup.location} not found", target=str(backup.vm), code="not_found")
        mo = found[0]
        run_task(
            self._session,
            lambda: mo.Destroy_Task(),
            timeout=timeout,
            what="backup delete",
            target=str(backup.vm),
        )
        log.info("backup_deleted", vm=backup.vm.name, clone=backup.id)

    # ------------------------------------------------------------------ restore-verify

    def restore_copy(self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float) -> RestoredCopy:
        for leftover in self.copies():
            if ownership.same_owner(leftover.ownership):
                self.destroy(leftover, timeout=timeout)
        found = self._marked_vm(backup.id, "backup", str(backup.vm))
        if found is None:
            raise NotFound(f"backup {backup.location} not found", target=str(backup.vm), code="not_found")
        template, props = found
        folder = read_one(self._session, template, ["parent"], target=str(backup.vm))["parent"]
        text, name = ownership.to_text(), ownership.name(backup.vm.name)
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=self._pool(backup.vm, props), host=props.get("runtime.host")),
            template=False,
            powerOn=False,
            config=vim.vm.ConfigSpec(
                annotation=text, extraConfig=[vim.option.OptionValue(key=MARK_KEY, value=text)]
            ),
        )
        copy_mo = run_task(
            self._session,
            lambda: template.CloneVM_Task(folder=folder, name=name, spec=spec),
            timeout=timeout,
            what="restore-verify copy",
            target=name,
        )
        copy = RestoredCopy(
            copy_mo._moId, name, backup.id, backup.vm, text, ownership.created_at, {"moref": copy_mo._moId}
        )
        try:
            self._isolate(copy_mo, name, timeout)
            run_task(
                self._session,
                lambda: copy_mo.PowerOnVM_Task(),
                timeout=timeout,
                what="power on copy",
                target=name,
            )
        except ProviderError:
            self._remove_quietly(copy_mo, name, timeout)
            raise
        log.info("backup_restored_copy", vm=backup.vm.name, backup=backup.id, copy=copy_mo._moId)
        return copy

    def _pool(self, vm: VmRef, template_props: dict[str, Any]) -> Any:
        try:
            pool = read_one(self._session, self._resolve(vm), ["resourcePool"], target=str(vm)).get(
                "resourcePool"
            )
        except NotFound:
            pool = None  # the VM is gone (a real restore): deploy on its host's cluster
        if pool is None:
            host = template_props.get("runtime.host")
            compute = read_one(self._session, host, ["parent"], target=str(vm))["parent"]
            pool = read_one(self._session, compute, ["resourcePool"], target=str(vm))["resourcePool"]
        return pool

    def _isolate(self, mo: Any, name: str, timeout: float) -> None:
        devices = read_one(self._session, mo, ["config.hardware.device"], target=name).get(
            "config.hardware.device"
        )
        changes = nic_changes(devices or ())
        if changes:
            spec = vim.vm.ConfigSpec(deviceChange=changes)
            run_task(
                self._session,
                lambda: mo.ReconfigVM_Task(spec=spec),
                timeout=timeout,
                what="disconnect NICs",
                target=name,
            )
        after = read_one(self._session, mo, ["config.hardware.device"], target=name).get(
            "config.hardware.device"
        )
        connected = [
            d.deviceInfo.label if d.deviceInfo else str(d.key)
            for d in after or ()
            if isinstance(d, vim.vm.device.VirtualEthernetCard)
            and (d.connectable is None or d.connectable.startConnected or d.connectable.connected)
        ]
        if connected:
            raise OperationRefused(
                f"copy {name} still has connected NICs ({', '.join(connected)}); not powered on",
                target=name,
                code="copy_not_isolated",
            )

    def copies(self) -> list[RestoredCopy]:
        path = self._settings.backup_folder.strip("/")
        if not path:
            return []
        out = []
        for dc in self._datacenters():
            folder = self._folder(dc, path, create=False, target=self._settings.site)
            for mo, props, owner in self._marked(folder, "restore", self._settings.site):
                source = VmRef(self._settings.site, owner.vm_id, owner.vm_id)
                name = str(props.get("name", mo._moId))
                out.append(
                    RestoredCopy(
                        mo._moId,
                        name,
                        owner.backup_id,
                        source,
                        owner.to_text(),
                        owner.created_at,
                        {"moref": mo._moId},
                    )
                )
        return out

    def probe(self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float) -> RestoreCheck:
        if probes and self._guest is None:
            raise CapabilityMissing(
                "probes of a restored copy need guest operations (guest_user/guest_password)",
                target=copy.name,
                code="capability",
            )
        mo, clock = self._session.mo(vim.VirtualMachine, copy.id), self._session.clock
        started = clock.monotonic()
        try:
            watch(
                self._session, mo, ["guest.toolsRunningStatus", "guestHeartbeatStatus"],
                lambda p: p.get("guest.toolsRunningStatus") == "guestToolsRunning" and p.get("guestHeartbeatStatus") == "green",
                timeout=timeout, what="VMware Tools heartbeat of the restored copy", target=copy.name,
            )  # fmt: skip
        except ProviderTimeout:
            return RestoreCheck(
                copy.id, False, "heartbeat", round(timeout, 1), detail="no VMware Tools heartbeat"
            )
        boot_s = round(clock.monotonic() - started, 1)
        guest = self._guest

        def run(argv: tuple[str, ...], seconds: float) -> Any:
            assert guest is not None
            return guest.run(mo, argv, timeout=seconds, env=None, stdin=None, target=copy.name)

        results = run_probes(run, probes, deadline=started + timeout, clock=clock)
        return RestoreCheck(copy.id, all(r.ok for r in results), "heartbeat", boot_s, results)

    def destroy(self, copy: RestoredCopy, *, timeout: float) -> None:
        found = self._marked_vm(copy.id, "restore", copy.name)
        if found is not None:
            self._remove(found[0], copy.name, timeout)


def _moref_number(moref: str) -> int:
    digits = moref.rpartition("-")[2]
    return int(digits) if digits.isdigit() else 0
