"""Handlers for /nodes/{node}/{qemu|lxc}/{vmid}/...: status, config, power, snapshots, migrate, agent."""

from __future__ import annotations

from typing import Any

from tests.simulators.pvesim import actions
from tests.simulators.pvesim.commands import run_guest
from tests.simulators.pvesim.node_handlers import Request, guest_resource
from tests.simulators.pvesim.state import ApiError, Guest, GuestProcess


def _guest(req: Request) -> Guest:
    return req.cluster.guest(req.params["node"], req.fixed["kind"], req.params["vmid"])


# -- status and config ------------------------------------------------------------------------


def status_current(req: Request) -> dict[str, Any]:
    guest = _guest(req)
    entry = guest_resource(req.cluster, guest)
    for key in ("id", "type", "node", "maxcpu", *(("disk",) if guest.kind == "qemu" else ())):
        entry.pop(key)
    entry["ha"] = {"managed": 1, "state": "started", "group": ""} if guest.ha_managed else {"managed": 0}
    entry["cpus"] = 2
    if guest.kind == "qemu":
        entry["agent"] = int(guest.agent)
        entry["qmpstatus"] = guest.status
    return entry


def config_get(req: Request) -> dict[str, Any]:
    guest = _guest(req)
    name = req.params.get("snapshot")
    if name:
        if name not in guest.snapshots:
            raise ApiError(500, f"snapshot '{name}' does not exist")
        return dict(guest.snapshots[name].config)
    return guest.config()


def config_put(req: Request) -> None:
    """Only what recovery needs: ``delete=lock&skiplock=1`` (``qm unlock``) and ``tags``."""
    guest, p = _guest(req), req.params
    if guest.lock and not p.get("skiplock"):
        raise ApiError(500, f"{guest.label} is locked ({guest.lock})")
    deleted = set(p.get("delete", "").split(",")) - {""}
    if "lock" in deleted:
        guest.lock = None
    if "tags" in deleted:
        guest.tags = []
    if "tags" in p:
        guest.tags = [t for t in p["tags"].replace(",", ";").split(";") if t]


# -- power --------------------------------------------------------------------------------------


def power(req: Request) -> str:
    return actions.power(req.cluster, _guest(req), req.fixed["action"], req.auth).upid


def migrate(req: Request) -> str:
    p = req.params
    task = actions.migrate(
        req.cluster,
        _guest(req),
        p["target"],
        req.auth,
        online=bool(p.get("online")),
        restart=bool(p.get("restart")),
    )
    return task.upid


# -- snapshots --------------------------------------------------------------------------------


def snapshot_list(req: Request) -> list[dict[str, Any]]:
    guest = _guest(req)
    out = []
    for snap in guest.snapshots.values():
        entry: dict[str, Any] = {
            "name": snap.name,
            "description": snap.description,
            "snaptime": snap.snaptime,
        }
        if guest.kind == "qemu":
            entry["vmstate"] = int(snap.vmstate)
        if snap.parent:
            entry["parent"] = snap.parent
        if snap.snapstate:
            entry["snapstate"] = snap.snapstate
        out.append(entry)
    current: dict[str, Any] = {
        "name": "current",
        "description": "You are here!",
        "running": int(guest.status == "running"),
        "digest": guest.config()["digest"],
    }
    if guest.parent:
        current["parent"] = guest.parent
    return [*out, current]


def snapshot_create(req: Request) -> str:
    p = req.params
    task = actions.snapshot_create(
        req.cluster, _guest(req), p["snapname"], p.get("description", ""), bool(p.get("vmstate")), req.auth
    )
    return task.upid


def snapshot_rollback(req: Request) -> str:
    p = req.params
    return actions.snapshot_rollback(
        req.cluster, _guest(req), p["snapname"], bool(p.get("start")), req.auth
    ).upid


def snapshot_delete(req: Request) -> str:
    p = req.params
    return actions.snapshot_delete(
        req.cluster, _guest(req), p["snapname"], bool(p.get("force")), req.auth
    ).upid


def snapshot_config(req: Request) -> dict[str, Any]:
    guest, name = _guest(req), req.params["snapname"]
    if name not in guest.snapshots:
        raise ApiError(500, f"snapshot '{name}' does not exist")
    return dict(guest.snapshots[name].config)


# -- guest agent (QEMU) -------------------------------------------------------------------------


def _agent(req: Request) -> Guest:
    guest = _guest(req)
    if not guest.agent:
        raise ApiError(500, "No QEMU guest agent configured")
    if guest.status != "running":
        raise ApiError(500, f"VM {guest.vmid} is not running")
    if req.now < guest.agent_ready_at or req.cluster.take_fault("agent_down", vmid=guest.vmid):
        raise ApiError(500, "QEMU guest agent is not running")
    return guest


def agent_ping(req: Request) -> dict[str, Any]:
    _agent(req)
    return {"result": {}}


def agent_info(req: Request) -> dict[str, Any]:
    guest = _agent(req)
    names = (
        "guest-ping",
        "guest-info",
        "guest-exec",
        "guest-exec-status",
        "guest-get-osinfo",
        "guest-network-get-interfaces",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-thaw",
    )
    commands = [
        {"name": n, "enabled": not (n == "guest-exec" and guest.exec_disabled), "success-response": True}
        for n in names
    ]
    return {"result": {"version": "10.0.2", "supported_commands": commands}}


def agent_osinfo(req: Request) -> dict[str, Any]:
    _agent(req)
    return {
        "result": {
            "id": "debian",
            "name": "Debian GNU/Linux",
            "pretty-name": "Debian GNU/Linux 13 (trixie)",
            "version": "13 (trixie)",
            "version-id": "13",
            "kernel-release": "6.12.48+deb13-amd64",
            "kernel-version": "#1 SMP PREEMPT_DYNAMIC Debian",
            "machine": "x86_64",
        }
    }


def agent_interfaces(req: Request) -> dict[str, Any]:
    guest = _agent(req)
    return {
        "result": [
            {
                "name": "lo",
                "hardware-address": "00:00:00:00:00:00",
                "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}],
            },
            {
                "name": "eth0",
                "hardware-address": f"bc:24:11:00:{guest.vmid // 256:02x}:{guest.vmid % 256:02x}",
                "ip-addresses": [
                    {"ip-address": guest.ip, "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64},
                ],
            },
        ]
    }


def agent_exec(req: Request) -> dict[str, Any]:
    guest = _agent(req)
    if guest.exec_disabled:
        raise ApiError(500, "Agent error: Command guest-exec has been disabled: the command is not allowed")
    outcome = run_guest(guest, list(req.params["command"]), req.params.get("input-data"))
    cap = req.cluster.config.agent_output_cap
    pid = req.cluster.next_pid()
    guest.processes[pid] = GuestProcess(
        pid=pid,
        done_at=req.now + outcome.duration,
        exitcode=outcome.exitcode,
        signal=outcome.signal,
        out=outcome.stdout[:cap],
        err=outcome.stderr[:cap],
        out_truncated=len(outcome.stdout) > cap,
        err_truncated=len(outcome.stderr) > cap,
    )
    return {"pid": pid}


def agent_exec_status(req: Request) -> dict[str, Any]:
    guest = _agent(req)
    proc = guest.processes.get(req.params["pid"])
    if proc is None:
        raise ApiError(500, "Agent error: Invalid parameter 'pid'")
    if req.now < proc.done_at:
        return {"exited": 0}
    del guest.processes[proc.pid]  # qemu-ga forgets the pid once it reported ``exited``
    answer: dict[str, Any] = {"exited": 1, "out-data": proc.out, "err-data": proc.err}
    if proc.signal is not None:
        answer["signal"] = proc.signal
    else:
        answer["exitcode"] = proc.exitcode
    if proc.out_truncated:
        answer["out-truncated"] = 1
    if proc.err_truncated:
        answer["err-truncated"] = 1
    return answer
