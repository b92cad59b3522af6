"""Handlers for backups and restores: vzdump, storage content/status, nextid, extractconfig, and
``POST /nodes/{node}/qemu`` (restores only) / ``DELETE /nodes/{node}/qemu/{vmid}``."""

from __future__ import annotations

from typing import Any

from tests.simulators.pvesim import backup_actions
from tests.simulators.pvesim.node_handlers import Request
from tests.simulators.pvesim.state import ApiError
from tests.simulators.pvesim.storage import config_text, content_entry, find_volume, storage


def vzdump(req: Request) -> str:
    p, cl = req.params, req.cluster
    node = p["node"]
    if not p.get("vmid"):
        raise ApiError(400, "Parameter verification failed.", {"vmid": "please specify at least one VM"})
    ids = [int(v) for v in str(p["vmid"]).split(",")]
    if len(ids) != 1:
        raise ApiError(500, "pvesim: a vzdump of several guests is not simulated")
    guest = cl.guests.get(ids[0])
    if guest is None:
        raise ApiError(500, f"unable to find configuration file for VM {ids[0]} on node '{node}'")
    return backup_actions.vzdump(cl, node, guest, p, req.auth).upid


def storage_content(req: Request) -> list[dict[str, Any]]:
    p = req.params
    store = storage(req.cluster, p["storage"])
    if p.get("content") not in (None, "backup"):
        return []
    volumes = sorted(store.on(p["node"]), key=lambda v: (v.ctime, v.volid))
    return [content_entry(v) for v in volumes if p.get("vmid") in (None, v.vmid)]


def storage_volume(req: Request) -> dict[str, Any]:
    _store, volume = find_volume(req.cluster, req.params["node"], _volid(req))
    info: dict[str, Any] = {
        "format": volume.format,
        "path": f"/mnt/pve/{volume.volid.split(':')[0]}/dump/{volume.volid.split('/')[-1]}",
        "size": volume.size,
        "used": volume.size,
        "protected": int(volume.protected),
    }
    if volume.notes:
        info["notes"] = volume.notes
    return info


def storage_volume_delete(req: Request) -> str:
    store, volume = find_volume(req.cluster, req.params["node"], _volid(req))
    return backup_actions.delete_volume(req.cluster, req.params["node"], store, volume, req.auth).upid


def _volid(req: Request) -> str:
    """``volume`` may be a full volume id or, with ``storage`` given, the name on that storage."""
    volume = req.params["volume"]
    if ":" not in volume and req.params.get("storage"):
        return f"{req.params['storage']}:{volume}"
    return str(volume)


def storage_status(req: Request) -> dict[str, Any]:
    store = storage(req.cluster, req.params["storage"])
    return {
        "type": store.type,
        "content": ",".join(store.content),
        "shared": int(store.shared),
        "active": 1,
        "enabled": 1,
        "total": store.total,
        "used": store.used(),
        "avail": store.avail(),
    }


def next_id(req: Request) -> int:
    """``/cluster/nextid``: the lowest free id from 100 (a given id is checked instead)."""
    cl, wanted = req.cluster, req.params.get("vmid")
    if wanted is not None:
        if wanted in cl.guests:
            raise ApiError(400, "Parameter verification failed.", {"vmid": f"VM {wanted} already exists"})
        return int(wanted)
    vmid = 100
    while vmid in cl.guests:
        vmid += 1
    return vmid


def extract_config(req: Request) -> str:
    _store, volume = find_volume(req.cluster, req.params["node"], req.params["volume"])
    return config_text(volume)


def qemu_create(req: Request) -> str:
    if not req.params.get("archive"):
        raise ApiError(500, "pvesim: only restores (archive=...) are simulated, not creating new VMs")
    return backup_actions.restore(req.cluster, req.params["node"], req.params, req.auth).upid


def qemu_destroy(req: Request) -> str:
    p = req.params
    guest = req.cluster.guest(p["node"], "qemu", p["vmid"])
    return backup_actions.destroy(req.cluster, guest, bool(p.get("skiplock")), req.auth).upid
