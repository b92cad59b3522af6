"""Snapshot verbs of the vSphere provider: list, create, revert, delete.

The VM's snapshot tree is flattened into :class:`~providers.base.SnapshotInfo` values (``parent``
links kept). ``create`` looks before it creates, inside one retry loop: a dropped connection may
have hidden a snapshot that was made, so a blind retry of the create could make a second one.
``revert`` and ``delete`` act only on a snapshot that exists on that VM (``NotFound`` otherwise).
Capability checks are the provider's; every task is waited on with a deadline.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from pyVmomi import vim

from providers.base import SnapshotInfo, VmRef
from providers.errors import NotFound
from providers.timing import API_CALL
from providers.vsphere.inventory import iso, read_one
from providers.vsphere.session import Session
from providers.vsphere.tasks import run_task, wait_task

log = structlog.get_logger("patchwave.providers.vsphere")


class VmSnapshots:
    """Snapshots of the VMs of one site; ``resolve`` turns a VmRef into its managed object (and
    refuses another site's)."""

    def __init__(
        self, session: Session, *, site: str, task_timeout: float, resolve: Callable[[VmRef], Any]
    ) -> None:
        self._session = session
        self._site = site
        self._task_timeout = task_timeout
        self._resolve = resolve

    def list(self, vm: VmRef) -> list[SnapshotInfo]:
        return self._read(vm, retry=True)

    def create(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        mo = self._resolve(vm)

        def start() -> Any:
            for snap in self._read(vm, retry=False):
                if snap.name == name and snap.description == description:
                    return snap
            return self._session.call(
                lambda c: mo.CreateSnapshot_Task(
                    name=name, description=description, memory=memory, quiesce=quiesce
                ),
                target=str(vm),
                retry=False,
            )

        started = API_CALL.call(start, self._session.clock)
        if isinstance(started, SnapshotInfo):
            return started
        result = wait_task(
            self._session, started, timeout=self._task_timeout, what="snapshot", target=str(vm)
        )
        snap = self._find(vm, result._moId)
        log.info(
            "snapshot_created", site=self._site, vm=vm.name, snapshot=snap.id, memory=memory, quiesce=quiesce
        )
        return snap

    def revert(self, vm: VmRef, snapshot_id: str) -> None:
        """Revert to the snapshot's state: a snapshot without memory leaves the VM powered off (as
        vSphere does), a memory snapshot of a running VM leaves it running."""
        self._find(vm, snapshot_id)
        snap = self._session.mo(vim.vm.Snapshot, snapshot_id)
        self._run(lambda: snap.RevertToSnapshot_Task(), what="snapshot revert", vm=vm)
        log.info("snapshot_reverted", site=self._site, vm=vm.name, snapshot=snapshot_id)

    def delete(self, vm: VmRef, snapshot_id: str) -> None:
        self._find(vm, snapshot_id)
        snap = self._session.mo(vim.vm.Snapshot, snapshot_id)
        self._run(lambda: snap.RemoveSnapshot_Task(removeChildren=False), what="snapshot delete", vm=vm)
        log.info("snapshot_deleted", site=self._site, vm=vm.name, snapshot=snapshot_id)

    def _run(self, start: Callable[[], Any], *, what: str, vm: VmRef) -> Any:
        return run_task(self._session, start, timeout=self._task_timeout, what=what, target=str(vm))

    def _read(self, vm: VmRef, *, retry: bool) -> builtins.list[SnapshotInfo]:  # `list` is a method here
        props = read_one(self._session, self._resolve(vm), ["snapshot"], target=str(vm), retry=retry)
        tree = getattr(props.get("snapshot"), "rootSnapshotList", None) or []
        found: list[SnapshotInfo] = []

        def walk(nodes: Sequence[Any], parent: str) -> None:
            for node in nodes:
                snap_id = node.snapshot._moId
                found.append(
                    SnapshotInfo(
                        vm=vm,
                        id=snap_id,
                        name=node.name,
                        description=node.description or "",
                        created_at=iso(node.createTime),
                        has_memory=node.state in ("poweredOn", "suspended"),
                        parent=parent,
                    )
                )
                walk(node.childSnapshotList or [], snap_id)

        walk(tree, "")
        return found

    def _find(self, vm: VmRef, snapshot_id: str) -> SnapshotInfo:
        for snap in self.list(vm):
            if snap.id == snapshot_id:
                return snap
        raise NotFound(f"snapshot {snapshot_id} not found on {vm}", target=str(vm), code="not_found")
