"""Proxmox VE adapter (proxmoxer over the PVE REST API).

Identifiers
    ``VmRef.id`` is PVE's own cluster resource id: ``"qemu/<vmid>"`` for a VM, ``"lxc/<vmid>"`` for a
    container (the ``id`` field of ``GET /cluster/resources``). A vmid is unique cluster-wide and
    survives migration, so the id is stable; the current node is looked up in
    ``/cluster/resources`` before every action (a guest may have migrated since the inventory).
    ``HostRef.id`` and ``HostRef.name`` are the node name; ``failure_domain`` is the cluster name
    (the node name on a standalone node).

Capabilities
    INVENTORY, POWER, GUEST_REBOOT, SNAPSHOT, SNAPSHOT_MEMORY (QEMU ``vmstate``), GUEST_EXEC (QEMU
    guest agent only: containers report ``agent_ready=False`` and ``guest_exec`` raises
    :class:`CapabilityMissing`), HOST_REBOOT, and HOST_MAINTENANCE + HOST_EVACUATE unless
    ``maintenance = "none"``; BACKUP + BACKUP_VERIFY with ``backup_storage`` (vzdump and
    restore-verify, :mod:`providers.proxmox.backups`). Patching the nodes themselves is not a
    provider capability (PVE has no API for it; the orchestrator patches nodes with apt through an SSH channel to
    ``HostInfo.address``, the node's ``ip`` in ``/cluster/status``). Per guest, ``VmInfo.unsupported``
    lists GUEST_EXEC + SNAPSHOT_MEMORY for containers and GUEST_EXEC for a running VM whose config
    does not enable the agent; an agent that does not answer is ``GuestAgentUnavailable``.

Locks
    Before any lock-taking action (snapshot, rollback, delete, power, ...) the guest's ``lock`` is
    read from ``/cluster/resources``; a locked guest is waited for with the ``lock_wait`` policy
    (``LOCK_WAIT`` with ``lock_wait`` as its deadline), then :class:`ResourceBusy` names the lock.

Modules: :mod:`providers.proxmox.settings` (settings, no SDK), :mod:`providers.proxmox.session`
(clients, re-login, errors), :mod:`providers.proxmox.tasks` (UPID waits with exit status),
:mod:`providers.proxmox.inventory` (typed infos), :mod:`providers.proxmox.agent` (guest exec),
:mod:`providers.proxmox.hosts` (maintenance, reboot), :mod:`providers.proxmox.capacity` (can a node's
guests move) and :mod:`providers.proxmox.node_shell` (SSH).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from providers.backups import BackupVerbs
from providers.base import Capability, ExecResult, HostInfo, HostRef, Inventory, SnapshotInfo, VmInfo, VmRef
from providers.errors import CapabilityMissing, NotFound, OperationRefused, ProviderTimeout, ResourceBusy
from providers.proxmox.agent import AgentExec
from providers.proxmox.backups import PveBackups
from providers.proxmox.guest import Guest, newer_snapshots
from providers.proxmox.hosts import GUEST_TYPES, NodeOps
from providers.proxmox.inventory import InventoryMapper, vm_id
from providers.proxmox.session import PveSession, flag
from providers.proxmox.settings import ProxmoxSettings, SshSettings, parse_settings
from providers.proxmox.tasks import TaskFailed, TaskWaiter
from providers.timing import LOCK_WAIT, SYSTEM_CLOCK, Clock

__all__ = ["ProxmoxProvider", "ProxmoxSettings", "SshSettings", "open_provider", "parse_settings", "vm_id"]

_VM_ID = re.compile(r"^(?P<kind>qemu|lxc)/(?P<vmid>[1-9][0-9]{2,8})$")
#: ZFSPoolPlugin ``volume_rollback_is_possible``; only reported as task exit text (see revert).
_NOT_LATEST = re.compile(r"^can't rollback, '(?P<snap>[^']+)' is not most recent snapshot")

BASE_CAPABILITIES = frozenset(
    {
        Capability.INVENTORY,
        Capability.POWER,
        Capability.GUEST_REBOOT,
        Capability.SNAPSHOT,
        Capability.SNAPSHOT_MEMORY,
        Capability.GUEST_EXEC,
        Capability.HOST_REBOOT,
    }
)


def open_provider(settings: ProxmoxSettings, *, clock: Clock = SYSTEM_CLOCK) -> ProxmoxProvider:
    return ProxmoxProvider(settings, clock=clock)


class ProxmoxProvider(BackupVerbs):
    def __init__(self, settings: ProxmoxSettings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.site = settings.site
        self.settings = settings
        self.clock = clock
        maintenance = (
            {Capability.HOST_MAINTENANCE, Capability.HOST_EVACUATE}
            if settings.maintenance != "none"
            else set()
        )
        backups = {Capability.BACKUP, Capability.BACKUP_VERIFY} if settings.backup_storage else set()
        self.capabilities = BASE_CAPABILITIES | maintenance | backups
        self._session = PveSession(settings, clock=clock)
        self._tasks = TaskWaiter(self._session, poll_interval=settings.poll_interval)
        self._agent = AgentExec(
            self._session, poll_interval=settings.poll_interval, output_cap=settings.exec_output_cap
        )
        self._nodes = NodeOps(self._session, self._tasks, settings)
        self._map = InventoryMapper(self.site, self._session, self._agent, self._nodes, verify=bool(backups))
        self._backups = PveBackups(  # the BACKUP verbs (providers.proxmox.backups)
            self._session, self._tasks, self._agent, settings, locate=self._locate, unlocked=self._unlocked
        )
        self._lock_policy = dataclasses.replace(LOCK_WAIT, deadline_s=settings.lock_wait)
        try:
            self._session.get("version")  # authenticate and verify TLS now, not on first use
        except BaseException:
            self._session.close()
            raise

    def close(self) -> None:
        self._session.close()

    # -- inventory ----------------------------------------------------------------------------

    def inventory(self) -> Inventory:
        resources = self._session.get("cluster/resources")
        guests = [r for r in resources if r.get("type") in GUEST_TYPES and not r.get("template")]
        return Inventory(
            site=self.site, hosts=self._map.hosts(resources), vms=tuple(self._map.vm(r) for r in guests)
        )

    def get_vm(self, vm: VmRef) -> VmInfo:
        return self._map.vm(self._locate(vm).resource)

    def get_host(self, host: HostRef) -> HostInfo:
        found = self._map.hosts(self._session.get("cluster/resources"), only=host.id)
        if found:
            return found[0]
        raise NotFound(f"no cluster node {host.id!r}", target=str(host), code="not_found")

    # -- locating and locks ---------------------------------------------------------------------

    def _locate(self, vm: VmRef) -> Guest:
        match = _VM_ID.match(vm.id)
        if not match:
            raise NotFound(
                f"not a Proxmox guest id {vm.id!r} (expected 'qemu/<vmid>' or 'lxc/<vmid>')",
                target=str(vm),
                code="bad_id",
            )
        for r in self._session.get("cluster/resources", type="vm"):
            if r.get("id") == vm.id:
                return Guest(kind=match["kind"], vmid=int(match["vmid"]), node=str(r["node"]), resource=r)
        raise NotFound(f"guest {vm.id} does not exist in the cluster", target=str(vm), code="not_found")

    def _unlocked(self, vm: VmRef) -> Guest:
        """The guest once it holds no lock, waiting with the ``lock_wait`` policy; else ResourceBusy."""

        def probe() -> Guest:
            guest = self._locate(vm)
            if lock := guest.resource.get("lock"):
                raise ResourceBusy(f"{vm.name} is locked ({lock})", target=str(vm), code="locked")
            return guest

        try:
            return self._lock_policy.call(probe, self.clock)
        except ResourceBusy as exc:
            raise ResourceBusy(
                f"{exc.message} for longer than {self.settings.lock_wait:.0f}s; if no task holds it the lock "
                f"is stale: check the node's task list, then 'qm unlock' / 'pct unlock' the guest",
                target=str(vm),
                code="locked",
            ) from exc

    def _run_task(self, upid: object, vm: VmRef, timeout: float | None = None) -> None:
        self._tasks.wait(upid, timeout=timeout or self.settings.task_timeout, target=str(vm))

    # -- snapshots ----------------------------------------------------------------------------

    def _snapshot_entries(self, guest: Guest) -> list[dict[str, Any]]:
        return [s for s in self._session.get(f"{guest.path}/snapshot") if s.get("name") != "current"]

    def _snapshot_info(self, vm: VmRef, s: Mapping[str, Any]) -> SnapshotInfo:
        snaptime = s.get("snaptime")
        created = datetime.fromtimestamp(int(snaptime), UTC).isoformat(timespec="seconds") if snaptime else ""
        name = str(s["name"])
        return SnapshotInfo(
            vm=vm,
            id=name,
            name=name,
            description=str(s.get("description") or ""),
            created_at=created,
            has_memory=bool(s.get("vmstate")),
            parent=str(s.get("parent") or ""),
        )

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        """Committed and half-done snapshots (a failed task leaves ``snapstate``); never ``current``."""
        return [self._snapshot_info(vm, s) for s in self._snapshot_entries(self._locate(vm))]

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        if quiesce:
            raise CapabilityMissing(
                "PVE has no quiesce flag (the agent freezes file systems itself when configured)",
                target=str(vm),
                code="capability",
            )
        guest = self._locate(vm)
        if memory and guest.kind == "lxc":
            raise CapabilityMissing("containers have no RAM snapshots", target=str(vm), code="capability")
        existing = {s["name"]: s for s in self._snapshot_entries(guest)}
        if name in existing:
            current = existing[name]
            if current.get("description", "") != description:
                raise OperationRefused(
                    f"a snapshot named {name!r} already exists and is not this step's",
                    target=str(vm),
                    code="name_taken",
                )
            if not current.get("snapstate"):
                return self._snapshot_info(vm, current)  # already done (at-least-once delivery)
            self._delete(vm, guest, current)  # our own half-created snapshot: remove, then redo
        guest = self._unlocked(vm)
        params: dict[str, Any] = {"snapname": name, "description": description}
        if guest.kind == "qemu":
            params["vmstate"] = flag(memory)
        self._run_task(self._session.post(f"{guest.path}/snapshot", **params), vm)
        for s in self._snapshot_entries(self._locate(vm)):
            if s["name"] == name and s.get("description", "") == description and not s.get("snapstate"):
                return self._snapshot_info(vm, s)
        raise OperationRefused(
            f"snapshot {name!r} is missing after its task succeeded", target=str(vm), code="snapshot_missing"
        )

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        """Roll back to the snapshot's power state: PVE hard-stops the guest, restores disks and config,
        and starts it again only from a RAM (``vmstate``) snapshot. A disk-only snapshot leaves the
        guest stopped (as vSphere and libvirt do); the caller powers it on when it wants it running."""
        entries = self._snapshot_entries(self._locate(vm))
        target = next((s for s in entries if s["name"] == snapshot_id), None)
        if target is None:
            raise NotFound(f"snapshot {snapshot_id!r} not found", target=str(vm), code="not_found")
        if target.get("snapstate"):
            raise OperationRefused(
                f"snapshot {snapshot_id!r} is incomplete (snapstate {target['snapstate']})",
                target=str(vm),
                code="snapshot_incomplete",
            )
        guest = self._unlocked(vm)
        upid = self._session.post(f"{guest.path}/snapshot/{snapshot_id}/rollback")
        try:
            self._run_task(upid, vm)
        except TaskFailed as exc:
            # PVE exposes neither the storage's rollback-latest-only property nor an error code:
            # the refusal exists only as the task's exit text, so the stable ZFSPoolPlugin message
            # is matched, and the newer snapshots are read structurally to say what blocks it.
            if _NOT_LATEST.match(exc.exitstatus):
                newer = newer_snapshots(entries, target)
                raise OperationRefused(
                    f"storage only rolls back to the newest snapshot; {snapshot_id!r} is older than "
                    f"{', '.join(newer) or 'another snapshot'} (delete those first to roll back): {exc.exitstatus}",
                    target=str(vm),
                    code="rollback_not_latest",
                ) from exc
            raise

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        guest = self._locate(vm)
        target = next((s for s in self._snapshot_entries(guest) if s["name"] == snapshot_id), None)
        if target is None:
            raise NotFound(f"snapshot {snapshot_id!r} not found", target=str(vm), code="not_found")
        self._delete(vm, guest, target)

    def _delete(self, vm: VmRef, guest: Guest, snapshot: Mapping[str, Any]) -> None:
        guest = self._unlocked(vm)
        force = {"force": flag(True)} if snapshot.get("snapstate") else {}
        self._run_task(self._session.delete(f"{guest.path}/snapshot/{snapshot['name']}", **force), vm)

    # -- power ----------------------------------------------------------------------------------

    def power_on(self, vm: VmRef) -> None:
        if self._locate(vm).running:
            return
        guest = self._unlocked(vm)
        self._run_task(self._session.post(f"{guest.path}/status/start"), vm)
        self._wait_power(vm, "running", self.settings.task_timeout)

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        if not self._locate(vm).running:
            return
        guest = self._unlocked(vm)
        upid = self._session.post(f"{guest.path}/status/shutdown", timeout=max(1, int(timeout)))
        try:
            self._run_task(upid, vm, timeout + self.settings.task_timeout)
        except TaskFailed as exc:
            if self._locate(vm).running:
                raise ProviderTimeout(
                    f"guest did not shut down within {timeout:.0f}s: {exc.exitstatus}",
                    target=str(vm),
                    code="shutdown_timeout",
                ) from exc
            raise
        self._wait_power(vm, "stopped", timeout)

    def power_off(self, vm: VmRef) -> None:
        if not self._locate(vm).running:
            return
        guest = self._unlocked(vm)
        self._run_task(self._session.post(f"{guest.path}/status/stop"), vm)
        self._wait_power(vm, "stopped", self.settings.task_timeout)

    def reboot_guest(self, vm: VmRef) -> None:
        guest = self._unlocked(vm)
        if not guest.running:
            raise OperationRefused("guest is not running", target=str(vm), code="not_running")
        self._run_task(self._session.post(f"{guest.path}/status/reboot"), vm)
        self._wait_power(vm, "running", self.settings.task_timeout)

    def _wait_power(self, vm: VmRef, want: str, timeout: float) -> None:
        """HA-managed guests answer with ``ha*`` tasks that end before the state changes."""
        deadline = self.clock.monotonic() + timeout
        while (status := self._locate(vm).resource.get("status")) != want:
            if self.clock.monotonic() >= deadline:
                raise ProviderTimeout(f"guest is {status}, not {want}, after {timeout:.0f}s", target=str(vm))
            self.clock.sleep(max(0.0, min(self.settings.poll_interval, deadline - self.clock.monotonic())))

    # -- guest agent ----------------------------------------------------------------------------

    def _agent_guest(self, vm: VmRef) -> tuple[Guest, Mapping[str, Any]]:
        guest = self._locate(vm)
        if guest.kind != "qemu":
            raise CapabilityMissing(
                "containers have no guest agent exec in the PVE API; use an SSH channel",
                target=str(vm),
                code="capability",
            )
        return guest, self._session.get(f"{guest.path}/status/current")

    def guest_ping(self, vm: VmRef) -> bool:
        guest = self._locate(vm)
        return guest.kind == "qemu" and guest.running and self._agent.ping(guest.node, guest.vmid)

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        guest, status = self._agent_guest(vm)
        if status.get("status") != "running":
            raise OperationRefused("guest is not running", target=str(vm), code="not_running")
        if not status.get("agent"):
            raise CapabilityMissing(
                "the QEMU guest agent is not enabled in the VM config (agent: 1)",
                target=str(vm),
                code="agent_not_configured",
            )
        started = self.clock.monotonic()
        self._agent.wait_ready(
            guest.node, guest.vmid, timeout=min(timeout, self.settings.agent_wait), target=str(vm)
        )
        remaining = max(min(timeout, 1.0), timeout - (self.clock.monotonic() - started))
        return self._agent.run(
            guest.node, guest.vmid, argv, timeout=remaining, env=env, stdin=stdin, target=str(vm)
        )

    # -- hosts ------------------------------------------------------------------------------------

    def enter_maintenance(self, host: HostRef, *, evacuate: bool, timeout: float) -> None:
        self._nodes.enter(host.id, evacuate=evacuate, timeout=timeout)

    def exit_maintenance(self, host: HostRef, *, timeout: float) -> None:
        self._nodes.exit(host.id, timeout=timeout)

    def maintenance_refusal(self, host: HostRef, *, evacuate: bool) -> str:
        return self._nodes.refusal(host.id, evacuate=evacuate)

    def reboot_host(self, host: HostRef, *, timeout: float) -> None:
        self._nodes.reboot(host.id, timeout=timeout)
