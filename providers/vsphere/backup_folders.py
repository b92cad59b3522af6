"""The backup folder of a vSphere site: where backup clones live and how they are recognised.

A backup clone (a template) and a restore-verify copy (a VM) carry their
:class:`~providers.backups.BackupOwnership` in ``extraConfig["patchwave.backup"]``, set in the clone
spec so it exists from the moment the clone does. ``backup_folder`` is a path under the
datacenter's VM folder; it is created on the first backup. See :mod:`providers.vsphere.backups`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pyVmomi import vim

from providers.backups import BackupOwnership
from providers.base import VmRef
from providers.errors import NotFound, OperationRefused, ProviderError
from providers.vsphere.guest import GuestOperations
from providers.vsphere.inventory import PC, find_by_name, props_of, read_one, retrieve
from providers.vsphere.session import Session
from providers.vsphere.settings import VsphereSettings
from providers.vsphere.tasks import run_task

log = structlog.get_logger("patchwave.providers.vsphere")

MARK_KEY = "patchwave.backup"
COPY_PATHS = (
    "name", "config.template", "config.extraConfig", "config.createDate", "summary.storage.committed",
    "summary.config.vmPathName", "runtime.powerState", "runtime.host", "resourcePool",
)  # fmt: skip


def ownership_of(props: dict[str, Any]) -> BackupOwnership | None:
    for option in props.get("config.extraConfig") or ():
        if option.key == MARK_KEY:
            return BackupOwnership.from_text(str(option.value))
    return None


def nic_changes(devices: Sequence[Any]) -> list[Any]:
    """Edits that leave every NIC disconnected now and at power-on (and not guest-controllable)."""
    changes = []
    for device in devices or ():
        if isinstance(device, vim.vm.device.VirtualEthernetCard):
            device.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
                startConnected=False, connected=False, allowGuestControl=False
            )
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=device))
    return changes


class BackupFolder:
    """Reads and writes in the backup folder of one site (the base of :class:`VmBackups`)."""

    def __init__(
        self,
        session: Session,
        settings: VsphereSettings,
        *,
        resolve: Callable[[VmRef], Any],
        guest: GuestOperations | None,
    ) -> None:
        self._session, self._settings, self._resolve, self._guest = session, settings, resolve, guest

    # ------------------------------------------------------------------ folders and reads

    def _folder_path(self, target: str) -> str:
        path = (target or self._settings.backup_folder).strip("/")
        if not path:
            raise OperationRefused(
                "no backup folder: set backup_folder in the site's provider table", code="no_backup_target"
            )
        return path

    def _datacenter(self, obj: Any, target: str) -> Any:
        while not isinstance(obj, vim.Datacenter):
            obj = read_one(self._session, obj, ["parent"], target=target).get("parent")
            if obj is None:
                raise NotFound(f"{target} is not in a datacenter", target=target, code="not_found")
        return obj

    def _folder(self, dc: Any, path: str, *, create: bool, target: str) -> Any | None:
        folder = read_one(self._session, dc, ["vmFolder"], target=target)["vmFolder"]
        for part in path.split("/"):
            child = self._child_folder(folder, part, target)
            if child is None and create:
                try:
                    child = self._create_folder(folder, part, target)
                except OperationRefused as exc:  # DuplicateName: made meanwhile by someone else
                    if exc.code != "duplicate":
                        raise
                    child = self._child_folder(folder, part, target)
            if child is None:
                return None
            folder = child
        return folder

    def _create_folder(self, parent: Any, name: str, target: str) -> Any:
        return self._session.call(lambda c: parent.CreateFolder(name=name), target=target, retry=False)

    def _child_folder(self, folder: Any, name: str, target: str) -> Any | None:
        children = read_one(self._session, folder, ["childEntity"], target=target).get("childEntity") or ()
        for child in children:
            if isinstance(child, vim.Folder) and read_one(self._session, child, ["name"]).get("name") == name:
                return child
        return None

    def _members(self, folder: Any, target: str) -> list[tuple[Any, dict[str, Any]]]:
        """The VMs and templates directly in ``folder`` with :data:`COPY_PATHS`."""
        traverse = PC.TraversalSpec(name="children", type=vim.Folder, path="childEntity", skip=False)
        found = retrieve(
            self._session,
            [PC.ObjectSpec(obj=folder, skip=True, selectSet=[traverse])],
            [PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(COPY_PATHS))],
            target=target,
        )
        return [(item.obj, props_of(item)) for item in found if isinstance(item.obj, vim.VirtualMachine)]

    def _marked(
        self, folder: Any | None, role: str, target: str
    ) -> list[tuple[Any, dict[str, Any], BackupOwnership]]:
        if folder is None:
            return []
        out = []
        for mo, props in self._members(folder, target):
            owner = ownership_of(props)
            if owner is not None and owner.role == role:
                out.append((mo, props, owner))
        return out

    def _marked_vm(self, moref: str, role: str, target: str) -> tuple[Any, dict[str, Any]] | None:
        mo = self._session.mo(vim.VirtualMachine, moref)
        try:
            props = read_one(self._session, mo, COPY_PATHS, target=target)
        except NotFound:
            return None
        owner = ownership_of(props)
        if owner is None or owner.role != role:
            raise OperationRefused(
                f"{props.get('name', moref)} is not a {role} made by patchwave; left alone",
                target=target,
                code="not_ours",
            )
        return mo, props

    def _datacenters(self) -> list[Any]:
        root = self._session.content.rootFolder
        if self._settings.datacenter:
            return [find_by_name(self._session, root, vim.Datacenter, self._settings.datacenter)]
        view = self._session.call(
            lambda c: c.viewManager.CreateContainerView(container=root, type=[vim.Datacenter], recursive=True)
        )
        try:
            return list(read_one(self._session, view, ["view"]).get("view") or ())
        finally:
            self._session.call(lambda c: view.DestroyView())

    def _remove_quietly(self, mo: Any, name: str, timeout: float) -> None:
        try:
            self._remove(mo, name, timeout)
        except ProviderError as exc:  # the restore's own error is what the caller needs to see
            log.warning("backup_copy_cleanup_failed", copy=mo._moId, code=exc.code, error=exc.message)

    def _remove(self, mo: Any, name: str, timeout: float) -> None:
        power = read_one(self._session, mo, ["runtime.powerState"], target=name).get("runtime.powerState")
        if power != "poweredOff":
            run_task(
                self._session,
                lambda: mo.PowerOffVM_Task(),
                timeout=timeout,
                what="power off copy",
                target=name,
            )
        run_task(self._session, lambda: mo.Destroy_Task(), timeout=timeout, what="destroy copy", target=name)
        log.info("backup_copy_destroyed", copy=mo._moId)
