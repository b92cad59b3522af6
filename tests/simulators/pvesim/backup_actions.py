"""Backups in the simulated cluster: vzdump, restore (``POST /nodes/{node}/qemu`` with ``archive``),
destroy, and deleting a backup volume. Behaviour read from the PVE source:

* ``vzdump`` (``PVE::VZDump``): a ``vzdump`` task whose id is the vmid. The guest holds
  ``lock: backup`` while the archive is written. A guest that cannot be backed up (locked, ENOSPC, ...)
  is logged as ``ERROR: Backup of VM <vmid> failed - <reason>`` and the job ends with the exit
  status ``job errors``. Notes come from ``notes-template``; a template with a bad escape only
  warns. ``remove=1`` prunes by the storage's retention, which is ``keep-all`` here: nothing.
* Restore (``PVE::API2::Qemu::create_vm`` with ``archive``): the vmid must be free and the archive
  must exist (checked before the worker starts, an HTTP 500 otherwise); a ``qmrestore`` task then
  writes the guest from the archive. Options given with the call override the archived config
  (``override_conf``); a NIC without a MAC address gets a random one, and ``unique=1`` gives every
  archived NIC a new one. A failed restore removes the ``create`` lock and leaves the rest ("VM state
  is NOT cleaned up").
* Destroy (``DELETE /nodes/{node}/qemu/{vmid}``): a ``qmdestroy`` task; a running or locked VM is
  refused inside the task.
* Deleting a backup volume: an ``imgdel`` task with id ``<vmid>@<storage>``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from tests.simulators.pvesim.actions import Auth, check_lock
from tests.simulators.pvesim.state import ApiError, Cluster, Guest, Task, TaskError, mac_address
from tests.simulators.pvesim.storage import (
    Storage,
    Volume,
    archive_name,
    find_volume,
    generate_notes,
    storage,
)

_MAC = re.compile(r"^(?P<model>[a-z0-9]+)=(?P<mac>[0-9A-Fa-f:]{17})(?P<rest>,.*)?$")


def _log(task: Task, line: str) -> None:
    task.log.append(line)


def vzdump(cl: Cluster, node: str, guest: Guest, params: dict[str, Any], auth: Auth) -> Task:
    target = storage(cl, params["storage"]) if params.get("storage") else storage(cl, "local")
    if "backup" not in target.content:
        raise ApiError(500, f"storage '{target.name}' does not support vzdump backups")
    mode, compress = params.get("mode", "snapshot"), params.get("compress", "0")
    started = int(cl.clock.time())

    def begin() -> None:
        if guest.node != node:
            raise TaskError(f"unable to find VM {guest.vmid} on node '{node}'")
        check_lock(guest)
        guest.lock = "backup"

    def finish() -> int:
        _log(
            task, f"INFO: starting new backup job: vzdump {guest.vmid} --mode {mode} --storage {target.name}"
        )
        _log(task, f"INFO: Starting Backup of VM {guest.vmid} ({guest.kind})")
        _log(task, f"INFO: backup mode: {mode}")
        name = archive_name(guest.kind, guest.vmid, started, compress)
        _log(task, f"INFO: creating vzdump archive '/mnt/pve/{target.name}/dump/{name}'")
        volume = _archive(cl, node, guest, target, name, started)
        guest.lock = None
        if target.avail() < volume.size:
            return _failed(task, guest, "vma_queue_write: write error - No space left on device")
        warnings = _notes(cl, task, guest, node, volume, params.get("notes-template", ""))
        volume.protected = bool(params.get("protected"))
        target.volumes[volume.volid] = volume
        _log(task, f"INFO: Finished Backup of VM {guest.vmid} (00:00:01)")
        _log(task, "INFO: Backup job finished successfully")
        cl.record("backup_created", guest.sid, vmid=guest.vmid, volid=volume.volid)
        return warnings

    def undo() -> None:
        guest.lock = None

    task = cl.start_task(node, "vzdump", str(guest.vmid), auth, begin=begin, finish=finish, undo=undo)
    return task


def _failed(task: Task, guest: Guest, reason: str) -> int:
    _log(task, f"ERROR: Backup of VM {guest.vmid} failed - {reason}")
    _log(task, "INFO: Backup job finished with errors")
    raise TaskError("job errors")


def _archive(cl: Cluster, node: str, guest: Guest, target: Storage, name: str, started: int) -> Volume:
    files = dict(guest.files)
    size = guest.memory * 1024 * 256 + sum(len(v) for v in files.values()) + 4096
    return Volume(
        volid=f"{target.name}:backup/{name}",
        node=node,
        vmid=guest.vmid,
        kind=guest.kind,
        ctime=started,
        size=size,
        format=name.split(".", 1)[1],
        config=guest.config(),
        files=files,
        scripts=[dict(s) for s in guest.scripts],
        guest_name=guest.name,
        memory=guest.memory,
        agent=guest.agent,
        nets=dict(guest.nets),
    )


def _notes(cl: Cluster, task: Task, guest: Guest, node: str, volume: Volume, template: str) -> int:
    if not template:
        return 0
    info = {
        "cluster": cl.config.cluster_name or "standalone node",
        "guestname": guest.name,
        "node": node,
        "vmid": str(guest.vmid),
    }
    _log(task, "INFO: adding notes to backup")
    try:
        volume.notes = generate_notes(template, info)
    except ValueError as exc:
        _log(task, f"WARN: unable to add notes - {exc}")
        return 1
    return 0


# -- restore ------------------------------------------------------------------------------------


def restore(cl: Cluster, node: str, params: dict[str, Any], auth: Auth) -> Task:
    vmid = int(params["vmid"])
    if vmid in cl.guests:
        raise ApiError(
            500, f"unable to restore VM {vmid} - unable to create VM {vmid}: config file already exists"
        )
    _store, volume = find_volume(cl, node, params["archive"])
    if volume.kind != "qemu":
        raise ApiError(500, f"unable to restore VM {vmid} - {volume.volid} is not a VM backup")
    disks = storage(cl, params["storage"]) if params.get("storage") else None
    if disks is not None and "images" not in disks.content:
        raise ApiError(500, f"storage '{disks.name}' does not support vm images")
    guest = cl.add_guest(vmid, "qemu", "", node, status="stopped", lock="create", nets={})

    def finish() -> int:
        if disks is not None and disks.full:
            raise TaskError(f"unable to restore VM {vmid} - no space left on storage '{disks.name}'")
        _fill(guest, volume, params)
        guest.lock = None
        cl.record("restored", guest.sid, vmid=vmid, archive=volume.volid)
        return 0

    def undo() -> None:  # "VM state is NOT cleaned up": only the lock goes
        guest.lock = None

    return cl.start_task(node, "qmrestore", str(vmid), auth, finish=finish, undo=undo)


def _fill(guest: Guest, volume: Volume, params: dict[str, Any]) -> None:
    guest.name = params.get("name") or volume.guest_name
    guest.description = params.get("description", str(volume.config.get("description", "")))
    guest.memory, guest.agent = volume.memory, volume.agent
    guest.files, guest.scripts = dict(volume.files), [dict(s) for s in volume.scripts]
    tags = params.get("tags", str(volume.config.get("tags", "")))
    guest.tags = [t for t in tags.replace(",", ";").split(";") if t]
    nets = {key: value for key, value in volume.nets.items()}
    if params.get("unique"):
        nets = {key: _new_mac(value, guest.vmid) for key, value in nets.items()}
    nets.update({key: value for key, value in params.items() if re.fullmatch(r"net\d+", key)})
    guest.nets = {key: _with_mac(value) for key, value in sorted(nets.items())}


def _new_mac(net: str, seed: int) -> str:
    match = _MAC.match(net)
    if not match:
        return net
    return f"{match['model']}={mac_address(seed * 7919 + random.randrange(1 << 16))}{match['rest'] or ''}"


def _with_mac(net: str) -> str:
    """``add_random_macs``: ``virtio,bridge=...`` becomes ``virtio=<random MAC>,bridge=...``."""
    model, _, rest = net.partition(",")
    if "=" in model or any(part.startswith("macaddr=") for part in rest.split(",")):
        return net
    return f"{model}={mac_address(random.randrange(1 << 24))}" + (f",{rest}" if rest else "")


# -- destroy --------------------------------------------------------------------------------------


def destroy(cl: Cluster, guest: Guest, skiplock: bool, auth: Auth) -> Task:
    def begin() -> None:
        if not skiplock:
            check_lock(guest)
        if guest.status == "running":
            raise TaskError(f"VM {guest.vmid} is running - destroy failed")
        guest.lock = "destroyed"

    def finish() -> int:
        cl.guests.pop(guest.vmid, None)
        cl.record("destroyed", guest.sid, vmid=guest.vmid, name=guest.name)
        return 0

    def undo() -> None:
        guest.lock = None

    return cl.start_task(
        guest.node, "qmdestroy", str(guest.vmid), auth, begin=begin, finish=finish, undo=undo
    )


def delete_volume(cl: Cluster, node: str, store: Storage, volume: Volume, auth: Auth) -> Task:
    def finish() -> int:
        if volume.protected:
            raise TaskError(
                f"cannot remove protected archive '/mnt/pve/{store.name}/dump/{volume.volid.split('/')[-1]}'"
            )
        store.volumes.pop(volume.volid, None)
        return 0

    return cl.start_task(node, "imgdel", f"{volume.vmid}@{store.name}", auth, finish=finish)
