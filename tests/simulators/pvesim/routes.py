"""The machine-readable route table of the simulator.

Every route the simulator serves is declared here with its method, path template and parameters
(path parameters included, as in the schema). ``tests/contract/test_pvesim_conformance.py``
checks each entry against the official ``pve-api-schema.json``: same path, same method, every
parameter declared there with the same type, optionality, enum, range, maxLength and format.
The simulator rejects any parameter not declared here (``additionalProperties: 0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.simulators.pvesim import guest_handlers as g
from tests.simulators.pvesim import node_handlers as n
from tests.simulators.pvesim import storage_handlers as st
from tests.simulators.pvesim.params import Param


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: tuple[Param, ...]
    handler: Callable[[Any], Any]
    proxyto: bool = False  # forwarded to {node}: 500 for an unknown node, 595 for an offline one
    allowtoken: bool = True
    total: bool = False  # the handler returns (data, total) and the envelope carries "total"
    fixed: dict[str, str] = field(default_factory=dict)  # values bound at declaration (kind, action)
    rest: bool = False  # the last path parameter takes the rest of the path (``fragmentDelimiter ''``)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))


def P(name: str, type_: str = "string", **kw: Any) -> Param:
    return Param(name, type_, **kw)


BOOL = "boolean"
INT = "integer"
NODE = P("node", optional=False, format="pve-node")
VMID = P("vmid", INT, optional=False, minimum=100, maximum=999999999, format="pve-vmid")
UPID = P("upid", optional=False)
SNAPNAME = P("snapname", optional=False, max_length=40, format="pve-configid")
TARGET = P("target", optional=False, format="pve-node")
TIMEOUT = P("timeout", INT, minimum=0)
SKIPLOCK = P("skiplock", BOOL)
STORAGE = P("storage", optional=False, format="pve-storage-id")
VOLUME = P("volume", optional=False)
OPTIONAL_VMID = P("vmid", INT, minimum=100, maximum=999999999, format="pve-vmid")
#: Restore overrides of NICs (``net[n]`` in the schema); the simulator models four.
NETS = tuple(P(f"net{i}") for i in range(4))


def _backup_routes() -> list[Route]:
    """vzdump, the storage content API, restores and destroys (storage_handlers, backup_actions)."""
    content = "/nodes/{node}/storage/{storage}/content"
    return [
        Route(
            "POST",
            "/nodes/{node}/vzdump",
            (
                P("node", format="pve-node"),  # optional in the schema (the CLI fills in the local node)
                P("vmid", format="pve-vmid-list"),
                P("storage", format="pve-storage-id"),
                P("mode", enum=("snapshot", "suspend", "stop")),
                P("compress", enum=("0", "1", "gzip", "lzo", "zstd")),
                P("notes-template", max_length=1024),
                P("remove", BOOL),
                P("protected", BOOL),
            ),
            st.vzdump,
            True,
        ),
        Route("GET", "/nodes/{node}/vzdump/extractconfig", (NODE, VOLUME), st.extract_config, True),
        Route(
            "GET",
            content,
            (NODE, STORAGE, P("content", format="pve-storage-content"), OPTIONAL_VMID),
            st.storage_content,
            True,
        ),
        Route(
            "GET",
            f"{content}/{{volume}}",
            (NODE, P("storage", format="pve-storage-id"), VOLUME),
            st.storage_volume,
            True,
            rest=True,
        ),
        Route(
            "DELETE",
            f"{content}/{{volume}}",
            (NODE, P("storage", format="pve-storage-id"), VOLUME, P("delay", INT, minimum=1, maximum=30)),
            st.storage_volume_delete,
            True,
            rest=True,
        ),
        Route("GET", "/nodes/{node}/storage/{storage}/status", (NODE, STORAGE), st.storage_status, True),
        Route("GET", "/cluster/nextid", (OPTIONAL_VMID,), st.next_id),
        Route(
            "POST",
            "/nodes/{node}/qemu",
            (
                NODE,
                VMID,
                P("archive", max_length=255),
                P("storage", format="pve-storage-id"),
                P("unique", BOOL),
                P("start", BOOL),
                P("force", BOOL),
                P("name", format="dns-name"),
                P("description", max_length=8192),
                P("tags", format="pve-tag-list"),
                *NETS,
            ),
            st.qemu_create,
            True,
        ),
        Route(
            "DELETE",
            "/nodes/{node}/qemu/{vmid}",
            (NODE, VMID, P("purge", BOOL), P("destroy-unreferenced-disks", BOOL), SKIPLOCK),
            st.qemu_destroy,
            True,
        ),
    ]


def _guest_routes(kind: str) -> list[Route]:
    base = f"/nodes/{{node}}/{kind}/{{vmid}}"
    gv = (NODE, VMID)
    fixed = {"kind": kind}
    qemu = kind == "qemu"
    power_params = {
        "start": (SKIPLOCK, TIMEOUT) if qemu else (SKIPLOCK, P("debug", BOOL)),
        "shutdown": (P("forceStop", BOOL), P("keepActive", BOOL), SKIPLOCK, TIMEOUT)
        if qemu
        else (P("forceStop", BOOL), TIMEOUT),
        "stop": (SKIPLOCK, P("keepActive", BOOL), TIMEOUT, P("overrule-shutdown", BOOL))
        if qemu
        else (SKIPLOCK, P("overrule-shutdown", BOOL)),
        "reboot": (TIMEOUT,),
    }
    routes = [
        Route("GET", f"{base}/status/current", gv, g.status_current, True, fixed=fixed),
        Route(
            "GET",
            f"{base}/config",
            (*gv, P("current", BOOL), P("snapshot", max_length=40, format="pve-configid")),
            g.config_get,
            True,
            fixed=fixed,
        ),
        Route(
            "PUT",
            f"{base}/config",
            (
                *gv,
                P("delete", format="pve-configid-list"),
                *((SKIPLOCK,) if qemu else ()),
                P("digest", max_length=40),
                P("tags", format="pve-tag-list"),
            ),
            g.config_put,
            True,
            fixed=fixed,
        ),
        Route("GET", f"{base}/snapshot", gv, g.snapshot_list, True, fixed=fixed),
        Route(
            "POST",
            f"{base}/snapshot",
            (*gv, SNAPNAME, P("description"), *((P("vmstate", BOOL),) if qemu else ())),
            g.snapshot_create,
            True,
            fixed=fixed,
        ),
        Route(
            "DELETE",
            f"{base}/snapshot/{{snapname}}",
            (*gv, SNAPNAME, P("force", BOOL)),
            g.snapshot_delete,
            True,
            fixed=fixed,
        ),
        Route(
            "POST",
            f"{base}/snapshot/{{snapname}}/rollback",
            (*gv, SNAPNAME, P("start", BOOL)),
            g.snapshot_rollback,
            True,
            fixed=fixed,
        ),
        Route(
            "GET",
            f"{base}/snapshot/{{snapname}}/config",
            (*gv, SNAPNAME),
            g.snapshot_config,
            True,
            fixed=fixed,
        ),
        Route(
            "POST",
            f"{base}/migrate",
            (
                *gv,
                TARGET,
                P("online", BOOL),
                *((P("with-local-disks", BOOL),) if qemu else (P("restart", BOOL), P("timeout", INT))),
            ),
            g.migrate,
            True,
            fixed=fixed,
        ),
    ]
    for action, params in power_params.items():
        routes.append(
            Route(
                "POST",
                f"{base}/status/{action}",
                (*gv, *params),
                g.power,
                True,
                fixed={**fixed, "action": action},
            )
        )
    if qemu:
        agent = f"{base}/agent"
        routes += [
            Route("POST", f"{agent}/ping", gv, g.agent_ping, True, fixed=fixed),
            Route("GET", f"{agent}/info", gv, g.agent_info, True, fixed=fixed),
            Route("GET", f"{agent}/get-osinfo", gv, g.agent_osinfo, True, fixed=fixed),
            Route("GET", f"{agent}/network-get-interfaces", gv, g.agent_interfaces, True, fixed=fixed),
            Route(
                "POST",
                f"{agent}/exec",
                (*gv, P("command", "array", optional=False), P("input-data", max_length=65536)),
                g.agent_exec,
                True,
                fixed=fixed,
            ),
            Route(
                "GET",
                f"{agent}/exec-status",
                (*gv, P("pid", INT, optional=False)),
                g.agent_exec_status,
                True,
                fixed=fixed,
            ),
        ]
    return routes


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/access/ticket",
        (
            P("username", optional=False, max_length=64),
            P("password", optional=False),
            P("realm", max_length=32, format="pve-realm"),
            P("otp"),
            P("new-format", BOOL),
        ),
        lambda req: None,
        allowtoken=False,
    ),
    Route("GET", "/version", (), n.version),
    Route(
        "GET", "/cluster/resources", (P("type", enum=("vm", "storage", "node", "sdn")),), n.cluster_resources
    ),
    Route("GET", "/cluster/status", (), n.cluster_status),
    Route("GET", "/cluster/tasks", (), n.cluster_tasks),
    Route("GET", "/cluster/ha/status/current", (), n.ha_status_current),
    Route("GET", "/cluster/ha/status/manager_status", (), n.ha_manager_status),
    Route("GET", "/cluster/ha/resources", (P("type", enum=("ct", "vm")),), n.ha_resources),
    Route(
        "GET",
        "/cluster/ha/rules",
        (P("resource"), P("type", enum=("node-affinity", "resource-affinity"))),
        n.ha_rules,
    ),
    Route("GET", "/nodes", (), n.nodes_index),
    Route("GET", "/nodes/{node}/status", (NODE,), n.node_status, True),
    Route(
        "POST",
        "/nodes/{node}/status",
        (NODE, P("command", optional=False, enum=("reboot", "shutdown"))),
        n.node_power,
        True,
    ),
    Route(
        "POST",
        "/nodes/{node}/migrateall",
        (
            NODE,
            TARGET,
            P("max-workers", INT, minimum=1, maximum=64),
            P("maxworkers", INT, minimum=1, maximum=64),
            P("vms", format="pve-vmid-list"),
            P("with-local-disks", BOOL),
        ),
        n.node_migrateall,
        True,
    ),
    Route(
        "GET",
        "/nodes/{node}/tasks",
        (
            NODE,
            P("errors", BOOL),
            P("limit", INT, minimum=0),
            P("source", enum=("archive", "active", "all")),
            P("start", INT, minimum=0),
            P("typefilter"),
            P("userfilter"),
            P("vmid", INT, minimum=100, maximum=999999999, format="pve-vmid"),
        ),
        n.node_tasks,
        True,
    ),
    Route("GET", "/nodes/{node}/tasks/{upid}/status", (NODE, UPID), n.task_status, True),
    Route(
        "GET",
        "/nodes/{node}/tasks/{upid}/log",
        (NODE, UPID, P("start", INT, minimum=0), P("limit", INT, minimum=0), P("download", BOOL)),
        n.task_log,
        True,
        total=True,
    ),
    Route("DELETE", "/nodes/{node}/tasks/{upid}", (NODE, UPID), n.task_stop, True),
    Route("GET", "/nodes/{node}/apt/update", (NODE,), n.apt_update_list, True),
    Route(
        "POST",
        "/nodes/{node}/apt/update",
        (NODE, P("notify", BOOL), P("quiet", BOOL)),
        n.apt_update_refresh,
        True,
    ),
    Route("GET", "/nodes/{node}/apt/versions", (NODE,), n.apt_versions, True),
    Route("GET", "/nodes/{node}/qemu", (NODE, P("full", BOOL)), n.node_qemu_index, True),
    Route("GET", "/nodes/{node}/lxc", (NODE,), n.node_lxc_index, True),
    *_guest_routes("qemu"),
    *_guest_routes("lxc"),
    *_backup_routes(),
)


def match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    """The route serving ``method path`` and the path parameter values, or ``(None, {})``."""
    segments = tuple(path.strip("/").split("/"))
    for route in ROUTES:
        if route.method != method:
            continue
        if route.rest and len(segments) > len(route.segments):
            cut = len(route.segments) - 1
            segments_here = (*segments[:cut], "/".join(segments[cut:]))
        else:
            segments_here = segments
        if len(route.segments) != len(segments_here):
            continue
        values: dict[str, str] = {}
        for want, got in zip(route.segments, segments_here, strict=True):
            if want.startswith("{"):
                values[want[1:-1]] = got
            elif want != got:
                break
        else:
            return route, values
    return None, {}
