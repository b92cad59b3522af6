"""Backups on Proxmox VE: ``vzdump`` to a backup storage, and restore-verify into a throw-away VM.

Backup (Capability.BACKUP, declared when ``backup_storage`` is set)
    ``POST /nodes/{node}/vzdump`` on the guest's node with ``vmid``, ``storage``, ``mode``
    (``backup_mode``, snapshot by default: no downtime), ``compress`` (zstd), ``remove=0`` (PVE's own
    retention never prunes our backups; ours does) and a ``notes-template`` carrying the
    :class:`~providers.backups.BackupOwnership` (backslashes doubled: they are the template's escape
    character). The ``vzdump`` task is waited for and its exit status checked; a failed guest makes
    the job end ``job errors``, and the ``ERROR: Backup of VM ...`` line of its log is the reason
    given. The archive is then found through ``GET /nodes/{node}/storage/{storage}/content
    ?content=backup&vmid=`` by its notes (``volid``, ``size``, ``ctime``, ``format``). A second call
    with the same ownership finds that archive and starts no second job. PVE names archives by the
    second the job started, so a backup is not started in the same second as the guest's newest one
    (the second would replace the first). PVE gives no checksum of the archive: reading it all back
    in a restore is the check (zstd frames carry their own checksums). Containers are backed up the
    same way.

Restore-verify (Capability.BACKUP_VERIFY, QEMU guests with the agent enabled)
    The archived config is read with ``GET /nodes/{node}/vzdump/extractconfig``; a free VMID comes
    from ``GET /cluster/nextid``; ``POST /nodes/{node}/qemu`` restores the archive to it with
    ``unique=1``, the copy's name and ownership (``description``), the tag ``patchwave-verify``, and
    every NIC given again *without* its MAC and with ``link_down=1`` (options given with a restore
    override the archived config), so the copy is isolated from its first start. The restored config
    is read back (ownership and every ``link_down=1``) before ``status/start``. Probes run through
    the guest agent (``agent/ping``, ``agent/exec``). Destroy = ``status/stop`` +
    ``DELETE /nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1``, only for a VM whose
    description carries a restore ownership. A restore that fails leaves a VM with no config to
    speak of (PVE: "VM state is NOT cleaned up"); ``restore_copy`` destroys it before raising. Copies
    run on ``verify_node`` (or the node where the archive was listed), their disks on
    ``restore_storage`` (or where the backup's disks were).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from providers.backups import (
    RESTORE_NAME_PREFIX,
    BackupInfo,
    BackupOwnership,
    RestoreCheck,
    RestoredCopy,
    RestoreProbe,
    detail_of,
    run_probes,
)
from providers.base import VmRef
from providers.errors import CapabilityMissing, NotFound, OperationRefused, ProviderError
from providers.proxmox.agent import AgentExec
from providers.proxmox.session import PveSession, flag
from providers.proxmox.settings import ProxmoxSettings
from providers.proxmox.tasks import TaskFailed, TaskWaiter

log = structlog.get_logger("patchwave.providers.proxmox")

VERIFY_TAG = "patchwave-verify"
_NET_KEY = re.compile(r"^net\d+$")
_MODEL_MAC = re.compile(r"^[a-z0-9]+=[0-9A-Fa-f:]{17}$")
_BACKUP_ERROR = re.compile(r"ERROR: Backup of VM \d+ failed - (?P<reason>.*)$")
COMPRESS = {"zstd": "zstd", "gzip": "gzip", "lzo": "lzo", "none": "0"}


def notes_template(text: str) -> str:
    """``text`` as a vzdump notes template that renders back to ``text`` (``\\`` is its escape)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def isolated_net(value: str) -> str:
    """A NIC option string without its MAC (PVE gives the copy a new one) and with ``link_down=1``."""
    parts = [p for p in value.split(",") if p and not p.startswith(("macaddr=", "link_down="))]
    if parts and _MODEL_MAC.match(parts[0]):
        parts[0] = parts[0].split("=", 1)[0]
    return ",".join([*parts, "link_down=1"])


def archived_nets(config_text: str) -> dict[str, str]:
    """The ``netN`` options of the archived config's current section (snapshot sections skipped)."""
    nets: dict[str, str] = {}
    for line in config_text.splitlines():
        if line.startswith("["):
            break
        key, sep, value = line.partition(":")
        if sep and _NET_KEY.match(key.strip()):
            nets[key.strip()] = value.strip()
    return nets


def _iso(ctime: object) -> str:
    return datetime.fromtimestamp(int(ctime or 0), UTC).isoformat(timespec="seconds")  # type: ignore[call-overload]


class PveBackups:
    """The backup verbs over one PVE session; ``locate``/``unlocked`` are the provider's guest lookups."""

    def __init__(
        self,
        session: PveSession,
        tasks: TaskWaiter,
        agent: AgentExec,
        settings: ProxmoxSettings,
        *,
        locate: Callable[[VmRef], Any],
        unlocked: Callable[[VmRef], Any],
    ) -> None:
        self._session, self._tasks, self._agent, self._settings = session, tasks, agent, settings
        self._locate, self._unlocked = locate, unlocked
        self._clock = session.clock

    # ------------------------------------------------------------------ backups

    def _storage(self, target: str) -> str:
        storage = target or self._settings.backup_storage
        if not storage:
            raise OperationRefused(
                "no backup storage: set backup_storage in the site's provider table", code="no_backup_target"
            )
        return storage

    def create(self, vm: VmRef, *, ownership: BackupOwnership, target: str, timeout: float) -> BackupInfo:
        storage, text = self._storage(target), ownership.to_text()
        existing = self._owned(vm, storage, ownership)
        if existing is not None:
            return existing  # at-least-once delivery: the backup of this (run, step) exists
        self._not_in_the_same_second(vm, storage)
        guest = self._unlocked(vm)
        params = {"vmid": guest.vmid, "storage": storage, "mode": self._settings.backup_mode}
        params.update(compress=COMPRESS[self._settings.backup_compress], remove=flag(False))
        upid = self._session.post(
            f"nodes/{guest.node}/vzdump", **params, **{"notes-template": notes_template(text)}
        )
        try:
            self._tasks.wait(upid, timeout=timeout, target=str(vm))
        except TaskFailed as exc:
            reasons = [m["reason"] for line in exc.log_tail if (m := _BACKUP_ERROR.search(line))]
            raise OperationRefused(
                f"vzdump of {vm.name} to {storage} failed: {reasons[-1] if reasons else exc.exitstatus}",
                target=str(vm),
                code="backup_failed",
            ) from exc
        found = self._owned(vm, storage, ownership)
        if found is None:
            raise OperationRefused(
                f"vzdump succeeded but no archive on {storage} carries this step's notes "
                "(is notes support missing on that storage?)",
                target=str(vm),
                code="backup_missing",
            )
        log.info("backup_created", vm=vm.name, volid=found.id, size=found.size, storage=storage)
        return found

    def _owned(self, vm: VmRef, storage: str, ownership: BackupOwnership) -> BackupInfo | None:
        return next((b for b in self.backups(vm, target=storage) if ownership.same_owner(b.ownership)), None)

    def _not_in_the_same_second(self, vm: VmRef, storage: str) -> None:
        newest = max((int(b.detail.get("ctime", "0")) for b in self.backups(vm, target=storage)), default=0)
        wait = newest + 1.1 - self._clock.now().timestamp()
        if wait > 0:
            self._clock.sleep(min(wait, 2.0))

    def backups(self, vm: VmRef, *, target: str) -> list[BackupInfo]:
        storage = self._storage(target)
        node, kind, vmid = self._where(vm)
        entries = self._session.get(f"nodes/{node}/storage/{storage}/content", content="backup", vmid=vmid)
        found = [
            self._info(vm, storage, node, e)
            for e in entries or ()
            if e.get("subtype", kind) == kind and int(e.get("vmid") or 0) == vmid
        ]
        return sorted(found, key=lambda b: (b.created_at, b.id))

    def _where(self, vm: VmRef) -> tuple[str, str, int]:
        """(node, kind, vmid) of the guest; for a guest that is gone, any online node (backups
        outlive their guest; a shared storage shows them from every node, a local one only from its own)."""
        try:
            guest = self._locate(vm)
            return guest.node, guest.kind, guest.vmid
        except NotFound:
            kind, _, vmid = vm.id.partition("/")
            if kind not in ("qemu", "lxc") or not vmid.isdigit():
                raise
        nodes = [n["node"] for n in self._session.get("nodes") if n.get("status") == "online"]
        if not nodes:
            raise NotFound("no online node to list backups from", target=str(vm), code="not_found")
        return self._settings.verify_node or min(nodes), kind, int(vmid)

    def _info(self, vm: VmRef, storage: str, node: str, entry: Mapping[str, Any]) -> BackupInfo:
        return BackupInfo(
            vm=vm,
            id=str(entry["volid"]),
            location=str(entry["volid"]),
            target=storage,
            created_at=_iso(entry.get("ctime")),
            size=int(entry.get("size") or 0),
            description=str(entry.get("notes") or ""),
            detail=detail_of(
                {
                    "node": node,
                    "format": entry.get("format"),
                    "subtype": entry.get("subtype"),
                    "ctime": entry.get("ctime"),
                    "protected": "1" if entry.get("protected") else "",
                }
            ),
        )

    def delete(self, backup: BackupInfo, *, timeout: float) -> None:
        node = backup.detail.get("node") or self._where(backup.vm)[0]
        path = f"nodes/{node}/storage/{backup.target}/content"
        listed = self._session.get(path, content="backup")
        if not any(e.get("volid") == backup.id for e in listed or ()):
            raise NotFound(
                f"backup {backup.id} not found on {backup.target}", target=str(backup.vm), code="not_found"
            )
        upid = self._session.delete(f"{path}/{backup.id}")
        if upid:
            self._tasks.wait(upid, timeout=timeout, target=str(backup.vm))
        log.info("backup_deleted", vm=backup.vm.name, volid=backup.id)

    # ------------------------------------------------------------------ restore-verify

    def restore_copy(self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float) -> RestoredCopy:
        if backup.detail.get("subtype", "qemu") != "qemu":
            raise CapabilityMissing(
                "containers have no guest agent to probe a restored copy through",
                target=str(backup.vm),
                code="capability",
            )
        for leftover in self.copies():
            if ownership.same_owner(leftover.ownership):
                self.destroy(leftover, timeout=timeout)
        node = self._settings.verify_node or backup.detail.get("node") or self._where(backup.vm)[0]
        config = self._session.get(f"nodes/{node}/vzdump/extractconfig", volume=backup.id)
        vmid = int(self._session.get("cluster/nextid"))
        name, text = ownership.name(backup.vm.name), ownership.to_text()
        params: dict[str, Any] = {
            "vmid": vmid,
            "archive": backup.id,
            "unique": flag(True),
            "start": flag(False),
        }
        params.update(
            name=name, description=text, tags=VERIFY_TAG, storage=self._settings.restore_storage or None
        )
        params.update({key: isolated_net(value) for key, value in archived_nets(str(config or "")).items()})
        copy = RestoredCopy(
            id=f"qemu/{vmid}",
            name=name,
            backup_id=backup.id,
            vm=backup.vm,
            description=text,
            created_at=ownership.created_at,
            detail={"node": node, "vmid": str(vmid)},
        )
        upid = self._session.post(f"nodes/{node}/qemu", **params)
        try:
            self._tasks.wait(upid, timeout=timeout, target=name)
            self._check_isolated(copy)
            self._tasks.wait(
                self._session.post(f"nodes/{node}/qemu/{vmid}/status/start"), timeout=timeout, target=name
            )
        except ProviderError:
            self._remove_quietly(copy, timeout=timeout)  # the VM we just created, whatever its state
            raise
        log.info("backup_restored_copy", vm=backup.vm.name, volid=backup.id, copy=vmid, node=node)
        return copy

    def _check_isolated(self, copy: RestoredCopy) -> None:
        config = self._session.get(f"nodes/{copy.detail['node']}/qemu/{copy.detail['vmid']}/config")
        open_nics = [
            k for k, v in config.items() if _NET_KEY.match(k) and "link_down=1" not in str(v).split(",")
        ]
        if (
            open_nics
            or not copy.ownership
            or not copy.ownership.same_owner(BackupOwnership.from_text(str(config.get("description", ""))))
        ):
            raise OperationRefused(
                f"restored copy {copy.name} is not isolated and marked (NICs up: {', '.join(open_nics) or 'none'})",
                target=copy.name,
                code="copy_not_isolated",
            )

    def copies(self) -> list[RestoredCopy]:
        found = []
        for r in self._session.get("cluster/resources", type="vm"):
            if r.get("type") != "qemu" or not str(r.get("name", "")).startswith(RESTORE_NAME_PREFIX):
                continue
            node, vmid = str(r["node"]), int(r["vmid"])
            config = self._session.get(f"nodes/{node}/qemu/{vmid}/config")
            owner = BackupOwnership.from_text(str(config.get("description", "")))
            if owner is None or owner.role != "restore":
                continue
            source = VmRef(site=self._settings.site, id=owner.vm_id, name=owner.vm_id)
            found.append(
                RestoredCopy(
                    id=f"qemu/{vmid}",
                    name=str(r["name"]),
                    backup_id=owner.backup_id,
                    vm=source,
                    description=owner.to_text(),
                    created_at=owner.created_at,
                    detail={"node": node, "vmid": str(vmid)},
                )
            )
        return found

    def probe(self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float) -> RestoreCheck:
        node, vmid = copy.detail["node"], int(copy.detail["vmid"])
        started = self._clock.monotonic()
        deadline = started + timeout
        while not self._agent.ping(node, vmid):
            if self._clock.monotonic() >= deadline:
                return RestoreCheck(
                    copy.id, False, "agent", round(timeout, 1), detail="the guest agent never answered"
                )
            self._clock.sleep(min(self._settings.poll_interval, max(0.0, deadline - self._clock.monotonic())))
        boot_s = round(self._clock.monotonic() - started, 1)

        def run(argv: tuple[str, ...], seconds: float) -> Any:
            return self._agent.run(node, vmid, argv, timeout=seconds, env=None, stdin=None, target=copy.name)

        results = run_probes(run, probes, deadline=deadline, clock=self._clock)
        return RestoreCheck(copy.id, all(r.ok for r in results), "agent", boot_s, results)

    def destroy(self, copy: RestoredCopy, *, timeout: float) -> None:
        vmid = int(copy.detail.get("vmid") or copy.id.split("/")[-1])
        where = next(
            (r for r in self._session.get("cluster/resources", type="vm") if int(r.get("vmid") or 0) == vmid),
            None,
        )
        if where is None:
            return  # gone already
        config = self._session.get(f"nodes/{where['node']}/qemu/{vmid}/config")
        owner = BackupOwnership.from_text(str(config.get("description", "")))
        if owner is None or owner.role != "restore":
            raise OperationRefused(
                f"VM {vmid} ({where.get('name', '')}) is not a restored copy made by patchwave; not destroyed",
                target=copy.name,
                code="not_ours",
            )
        self._remove(
            RestoredCopy(
                copy.id,
                copy.name,
                copy.backup_id,
                copy.vm,
                detail={"node": str(where["node"]), "vmid": str(vmid)},
            ),
            timeout=timeout,
        )

    def _remove_quietly(self, copy: RestoredCopy, *, timeout: float) -> None:
        try:
            self._remove(copy, timeout=timeout)
        except ProviderError as exc:  # the restore's own error is what the caller needs to see
            log.warning("backup_copy_cleanup_failed", copy=copy.id, code=exc.code, error=exc.message)

    def _remove(self, copy: RestoredCopy, *, timeout: float) -> None:
        node, vmid = copy.detail["node"], copy.detail["vmid"]
        status = self._session.get(f"nodes/{node}/qemu/{vmid}/status/current")
        if status.get("status") == "running":
            self._tasks.wait(
                self._session.post(f"nodes/{node}/qemu/{vmid}/status/stop"), timeout=timeout, target=copy.name
            )
        upid = self._session.delete(
            f"nodes/{node}/qemu/{vmid}", purge=flag(True), **{"destroy-unreferenced-disks": flag(True)}
        )
        self._tasks.wait(upid, timeout=timeout, target=copy.name)
        log.info("backup_copy_destroyed", copy=vmid, node=node)
