"""Handlers for /version, /cluster/*, /nodes and /nodes/{node}/{status,tasks,apt,migrateall,...}."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.simulators.pvesim import actions
from tests.simulators.pvesim.state import ApiError, Cluster, Guest, Node, Task

GIB = 1024**3
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):"
    r"([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)


@dataclass
class Request:
    cluster: Cluster
    params: dict[str, Any]
    user: str
    tokenid: str | None
    fixed: dict[str, str]
    restricted: bool = False  # a privilege-separated token without ACLs

    @property
    def auth(self) -> tuple[str, str | None]:
        return self.user, self.tokenid

    @property
    def now(self) -> float:
        return self.cluster.clock.monotonic()


# -- shared views -------------------------------------------------------------------------------


def node_resource(cl: Cluster, node: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f"node/{node.name}",
        "type": "node",
        "node": node.name,
        "level": "",
        "status": "online" if node.online else "offline",
        "maxcpu": 8,
        "maxmem": node.memory_total,
        "maxdisk": 100 * GIB,
    }
    if node.online:
        entry.update(
            uptime=node.uptime(cl.clock.monotonic()),
            cpu=0.02,
            mem=cl.memory_used(node),
            disk=10 * GIB,
            **{"cgroup-mode": 2},
        )
    return entry


def guest_resource(cl: Cluster, guest: Guest) -> dict[str, Any]:
    running = guest.status == "running"
    entry: dict[str, Any] = {
        "id": f"{guest.kind}/{guest.vmid}",
        "type": guest.kind,
        "vmid": guest.vmid,
        "name": guest.name,
        "node": guest.node,
        "status": guest.status,
        "template": int(guest.template),
        "maxcpu": 2,
        "maxmem": guest.memory * 1024**2,
        "mem": guest.memory * 1024**2 // 2 if running else 0,
        "cpu": 0.01 if running else 0,
        "maxdisk": 32 * GIB,
        "disk": 0,
        "netin": 0,
        "netout": 0,
        "diskread": 0,
        "diskwrite": 0,
        "uptime": int(cl.clock.monotonic() - guest.started_at) if running else 0,
    }
    if guest.tags:
        entry["tags"] = ";".join(guest.tags)
    if guest.lock:
        entry["lock"] = guest.lock
    if guest.ha_managed:
        entry["hastate"] = "started"
    return entry


def task_view(task: Task) -> dict[str, Any]:
    view = {
        "upid": task.upid,
        "node": task.node,
        "pid": task.pid,
        "pstart": task.pstart,
        "starttime": task.starttime,
        "type": task.type,
        "id": task.id,
        "user": task.user,
        "status": task.status,
    }
    if task.exitstatus is not None:
        view["exitstatus"] = task.exitstatus
    if task.tokenid:
        view["tokenid"] = task.tokenid
    return view


def task_list_entry(task: Task) -> dict[str, Any]:
    """Task lists carry the exit status in ``status`` (absent while running) and an ``endtime``."""
    entry = {k: v for k, v in task_view(task).items() if k not in ("status", "exitstatus", "tokenid")}
    if task.exitstatus is not None:
        entry.update(status=task.exitstatus, endtime=task.starttime)
    return entry


# -- version and cluster ------------------------------------------------------------------------


def version(req: Request) -> dict[str, Any]:
    return {"version": "9.1.3", "release": "9.1", "repoid": "5b1e4c44d61a0b5f", "console": "xtermjs"}


def cluster_resources(req: Request) -> list[dict[str, Any]]:
    cl, kind = req.cluster, req.params.get("type")
    if req.restricted:
        return []
    out: list[dict[str, Any]] = []
    if kind in (None, "node"):
        out += [node_resource(cl, n) for n in cl.nodes.values()]
    if kind in (None, "storage"):
        out += [
            {
                "id": f"storage/{n}/local-zfs",
                "type": "storage",
                "storage": "local-zfs",
                "node": n,
                "status": "available",
                "plugintype": "zfspool",
                "content": "images,rootdir",
                "shared": 0,
                "disk": 5 * GIB,
                "maxdisk": 500 * GIB,
            }
            for n in cl.nodes
        ]
    if kind in (None, "vm"):
        out += [guest_resource(cl, g) for g in sorted(cl.guests.values(), key=lambda g: g.vmid)]
    return out


def cluster_status(req: Request) -> list[dict[str, Any]]:
    cl = req.cluster
    entries: list[dict[str, Any]] = []
    if cl.config.cluster_name:
        entries.append(
            {
                "type": "cluster",
                "id": "cluster",
                "name": cl.config.cluster_name,
                "nodes": len(cl.nodes),
                "quorate": 1,
                "version": 7,
            }
        )
    for i, node in enumerate(cl.nodes.values()):
        entries.append(
            {
                "type": "node",
                "id": f"node/{node.name}",
                "name": node.name,
                "nodeid": node.nodeid,
                "ip": node.ip,
                "online": int(node.online),
                "local": int(i == 0),
                "level": "",
            }
        )
    return entries


def cluster_tasks(req: Request) -> list[dict[str, Any]]:
    return [task_list_entry(t) for t in list(req.cluster.tasks.values())[-50:]]


def _master(cl: Cluster) -> str:
    return next((n.name for n in cl.nodes.values() if n.online), "")


def ha_status_current(req: Request) -> list[dict[str, Any]]:
    cl = req.cluster
    master = _master(cl)
    out: list[dict[str, Any]] = [
        {"id": "quorum", "type": "quorum", "node": master, "status": "OK", "quorate": 1},
        {
            "id": "master",
            "type": "master",
            "node": master,
            "status": f"{master} (active, Thu Jan  1 00:00:00 2026)",
        },
    ]
    for node in cl.nodes.values():
        mode = (
            "maintenance mode"
            if node.ha_maintenance
            else "active"
            if node.online
            else "old timestamp - dead?"
        )
        out.append(
            {
                "id": f"lrm:{node.name}",
                "type": "lrm",
                "node": node.name,
                "status": f"{node.name} ({mode}, Thu Jan  1 00:00:00 2026)",
            }
        )
    for guest in sorted((g for g in cl.guests.values() if g.ha_managed), key=lambda g: g.vmid):
        out.append(
            {
                "id": f"service:{guest.sid}",
                "sid": guest.sid,
                "type": "service",
                "node": guest.node,
                "state": "started" if guest.status == "running" else "stopped",
                "crm_state": "started",
                "request_state": "started",
                "status": "started",
                "max_relocate": 1,
                "max_restart": 1,
                "failback": 1,
            }
        )
    return out


def ha_manager_status(req: Request) -> dict[str, Any]:
    cl = req.cluster
    node_status = {
        n.name: "maintenance" if n.ha_maintenance else "online" if n.online else "unknown"
        for n in cl.nodes.values()
    }
    return {
        "manager_status": {
            "master_node": _master(cl),
            "node_status": node_status,
            "node_request": {n.name: {"maintenance": 1} for n in cl.nodes.values() if n.ha_request},
            "service_status": {
                g.sid: {"node": g.node, "state": "started" if g.status == "running" else "stopped"}
                for g in cl.guests.values()
                if g.ha_managed
            },
            "timestamp": int(cl.clock.time()),
        },
        "lrm_status": {
            n.name: {"mode": "maintenance" if n.ha_maintenance else "active", "state": "active"}
            for n in cl.nodes.values()
        },
        "quorum": {"node": _master(cl), "quorate": "1"},
    }


def ha_resources(req: Request) -> list[dict[str, Any]]:
    want = req.params.get("type")
    guests = [g for g in req.cluster.guests.values() if g.ha_managed]
    return [{"sid": g.sid} for g in guests if want is None or g.sid.startswith(want + ":")]


def ha_rules(req: Request) -> list[dict[str, Any]]:
    """``GET /cluster/ha/rules``: every rule with its whole configuration, the defaults of optional
    settings filled in, ``digest`` and ``order`` (pve-ha-manager ``API2/HA/Rules.pm``: the index
    returns ``$get_api_ha_rule`` per rule although the schema declares only ``rule``)."""
    cl, want, resource = req.cluster, req.params.get("type"), req.params.get("resource")
    digest = f"{hash(tuple(sorted(cl.ha_rules))) & 0xFFFFFFFF:040x}"
    out = []
    for order, (rule_id, rule) in enumerate(cl.ha_rules.items(), start=1):
        if want is not None and rule["type"] != want:
            continue
        if resource is not None and resource not in rule["resources"].split(","):
            continue
        out.append({"rule": rule_id, **rule, "digest": digest, "order": order})
    return out


# -- nodes ------------------------------------------------------------------------------------


def nodes_index(req: Request) -> list[dict[str, Any]]:
    out = []
    for node in req.cluster.nodes.values():
        entry = {
            "node": node.name,
            "status": "online" if node.online else "offline",
            "level": "",
            "ssl_fingerprint": "AA:" * 31 + "AA",
            "maxcpu": 8,
            "maxmem": node.memory_total,
        }
        if node.online:
            entry.update(uptime=node.uptime(req.now), cpu=0.02, mem=req.cluster.memory_used(node))
        out.append(entry)
    return out


def node_status(req: Request) -> dict[str, Any]:
    node = req.cluster.node(req.params["node"])
    release = node.kernel_running
    used = req.cluster.memory_used(node)
    free = node.memory_total - used
    return {
        "uptime": node.uptime(req.now),
        "pveversion": node.pveversion,
        "kversion": f"Linux {release} #1 SMP",
        "current-kernel": {
            "sysname": "Linux",
            "release": release,
            "version": "#1 SMP PREEMPT_DYNAMIC PMX",
            "machine": "x86_64",
        },
        "boot-info": {"mode": "efi", "secureboot": 0},
        "cpu": 0.02,
        "wait": 0.0,
        "idle": 0,
        "cpuinfo": {
            "cores": 4,
            "cpus": 8,
            "sockets": 1,
            "model": "Simulated CPU",
            "mhz": "2400.000",
            "hvm": "1",
            "user_hz": 100,
            "flags": "",
        },
        "loadavg": ["0.10", "0.05", "0.01"],
        "memory": {"total": node.memory_total, "used": used, "free": free, "available": free},
        "swap": {"total": 0, "used": 0, "free": 0},
        "rootfs": {"total": 100 * GIB, "used": 10 * GIB, "free": 90 * GIB, "avail": 90 * GIB},
        "ksm": {"shared": 0},
    }


def node_power(req: Request) -> None:
    if req.params["command"] == "shutdown":
        raise ApiError(500, "node shutdown is not simulated")
    actions.reboot_node(req.cluster, req.params["node"])


def node_migrateall(req: Request) -> str:
    p = req.params
    vms = {int(v) for v in p["vms"].split(",")} if p.get("vms") else None
    workers = p.get("max-workers") or p.get("maxworkers")
    return actions.migrate_all(req.cluster, p["node"], p["target"], vms, workers, req.auth).upid


def node_qemu_index(req: Request) -> list[dict[str, Any]]:
    return _guest_index(req, "qemu")


def node_lxc_index(req: Request) -> list[dict[str, Any]]:
    return _guest_index(req, "lxc")


def _guest_index(req: Request, kind: str) -> list[dict[str, Any]]:
    keep = (
        "vmid",
        "name",
        "status",
        "tags",
        "lock",
        "template",
        "maxmem",
        "mem",
        "cpu",
        "maxdisk",
        "uptime",
        "diskread",
        "diskwrite",
        "netin",
        "netout",
    )
    guests = [g for g in req.cluster.guests_on(req.params["node"]) if g.kind == kind]
    return [
        {k: v for k, v in guest_resource(req.cluster, g).items() if k in keep} | {"cpus": 2} for g in guests
    ]


# -- tasks ------------------------------------------------------------------------------------


def _task(req: Request) -> Task:
    upid = req.params["upid"]
    if not UPID_RE.match(upid):
        raise ApiError(400, "Parameter verification failed.", {"upid": "unable to parse worker upid"})
    task = req.cluster.tasks.get(upid)
    if task is None or task.node != req.params["node"]:
        raise ApiError(400, "Parameter verification failed.", {"upid": "no such task"})
    return task


def task_status(req: Request) -> dict[str, Any]:
    return task_view(_task(req))


def task_log(req: Request) -> tuple[list[dict[str, Any]], int]:
    lines = _task(req).log or ["no content"]
    start, limit = req.params.get("start", 0), req.params.get("limit", 50)
    chosen = lines[start:] if limit == 0 else lines[start : start + limit]
    return [{"n": start + i + 1, "t": text} for i, text in enumerate(chosen)], len(lines)


def task_stop(req: Request) -> None:
    req.cluster.kill_task(_task(req).upid)


def node_tasks(req: Request) -> list[dict[str, Any]]:
    p = req.params
    source = p.get("source", "archive")
    tasks = [t for t in req.cluster.tasks.values() if t.node == p["node"]]
    if source == "archive":
        tasks = [t for t in tasks if t.status == "stopped"]
    elif source == "active":
        tasks = [t for t in tasks if t.status == "running"]
    if p.get("typefilter"):
        tasks = [t for t in tasks if t.type == p["typefilter"]]
    if p.get("vmid"):
        tasks = [t for t in tasks if t.id == str(p["vmid"])]
    if p.get("errors"):
        tasks = [t for t in tasks if t.exitstatus not in (None, "OK")]
    start, limit = p.get("start", 0), p.get("limit", 50)
    views = [task_list_entry(t) for t in reversed(tasks)]
    return views[start:] if limit == 0 else views[start : start + limit]


# -- apt ----------------------------------------------------------------------------------------


def apt_update_list(req: Request) -> list[dict[str, Any]]:
    return actions.pending_updates(req.cluster, req.params["node"])


def apt_update_refresh(req: Request) -> str:
    task = req.cluster.start_task(req.params["node"], "aptupdate", "", req.auth)
    task.log.append("Reading package lists... Done")
    return task.upid


def apt_versions(req: Request) -> list[dict[str, Any]]:
    node = req.cluster.node(req.params["node"])
    out = []
    for name, (installed, _candidate) in sorted(node.packages.items()):
        entry = {
            "Package": name,
            "Version": installed,
            "CurrentState": "Installed",
            "Arch": "amd64",
            "Origin": "Proxmox",
            "Priority": "optional",
            "Section": "admin",
            "Title": name,
            "Description": name,
        }
        if name == "proxmox-ve":
            entry.update(RunningKernel=node.kernel_running, ManagerVersion=node.pveversion.split("/")[1])
        out.append(entry)
    return out
