"""The PVE simulator serves only what PVE 9.1 serves, the way its API schema declares it.

The schema (AGPL data, not copied into this repo) is read at test time from
``../shared/reference/proxmox/pve-api-schema.json`` relative to the repo root, or from
``$PATCHWAVE_PVE_SCHEMA``. Checked for every route in ``tests/simulators/pvesim/routes.py``:

* the path and method exist; ``proxyto`` and ``allowtoken`` agree;
* every declared parameter exists with the same type, optionality, enum, range, maxLength and format;
* every parameter the schema requires is declared (so the simulator rejects what PVE rejects);
* the fields of live GET responses are fields the schema's ``returns`` declares (besides the few
  undeclared fields ENDPOINTS.md documents from the PVE source).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.params import Param
from tests.simulators.pvesim.routes import ROUTES, Route
from tests.support.paths import REPO

SCHEMA_PATH = Path(
    os.environ.get("PATCHWAVE_PVE_SCHEMA", REPO.parent / "shared/reference/proxmox/pve-api-schema.json")
)
#: Fields PVE returns without declaring them (ENDPOINTS.md §2.1, §4.3, §6): not simulator inventions.
UNDECLARED_RETURNS = {
    "/nodes/{node}/qemu/{vmid}/snapshot": {"snapstate", "running", "digest"},
    "/nodes/{node}/lxc/{vmid}/snapshot": {"snapstate", "running", "digest"},
    "/nodes/{node}/tasks/{upid}/status": {"tokenid"},
    "/nodes/{node}/lxc/{vmid}/config": {"parent"},
    # the schema declares only ``upid``; PVE returns the full task list entry
    "/cluster/tasks": {"node", "pid", "pstart", "starttime", "type", "id", "user", "status", "endtime"},
    # volume_list adds them (pve-storage Plugin::get_subdir_files, Storage::volume_list)
    "/nodes/{node}/storage/{storage}/content": {"subtype", "content"},
    # pve-ha-manager API2/HA/Rules.pm: the index returns each rule's whole configuration
    # ($get_api_ha_rule: the rule's settings with defaults, digest, order); the schema declares ``rule``
    "/cluster/ha/rules": {"type", "resources", "nodes", "strict", "disable", "comment", "digest", "order"},
}
JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": int,
    "array": list,
    "object": dict,
}

pytestmark = pytest.mark.skipif(
    not SCHEMA_PATH.is_file(), reason=f"PVE API schema not found at {SCHEMA_PATH} (set PATCHWAVE_PVE_SCHEMA)"
)


@cache
def schema_index() -> dict[str, dict[str, Any]]:
    def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("children") or []:
            yield from walk(child)

    index: dict[str, dict[str, Any]] = {}
    for root in json.loads(SCHEMA_PATH.read_text()):
        for node in walk(root):
            index[node["path"]] = node
    return index


def method_schema(route: Route) -> dict[str, Any]:
    node = schema_index().get(route.path)
    assert node is not None, f"{route.path} is not a PVE 9.1 path"
    info = (node.get("info") or {}).get(route.method)
    assert info is not None, f"{route.method} {route.path} is not a PVE 9.1 method"
    return info


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def expected(prop: dict[str, Any]) -> Param:
    fmt = prop.get("format")
    enum = prop.get("enum")
    return Param(
        name="",
        type=prop["type"],
        optional=bool(prop.get("optional")),
        enum=tuple(enum) if enum else None,
        minimum=prop.get("minimum"),
        maximum=prop.get("maximum"),
        max_length=prop.get("maxLength"),
        format=fmt if isinstance(fmt, str) else None,
    )


def test_every_route_is_declared_once() -> None:
    ids = [route_id(r) for r in ROUTES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_route_exists_with_same_flags(route: Route) -> None:
    info = method_schema(route)
    assert route.proxyto == (info.get("proxyto") == "node"), "proxyto differs"
    assert route.allowtoken == bool(info.get("allowtoken", 1)), "allowtoken differs"


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_route_parameters_match_schema(route: Route) -> None:
    properties = method_schema(route)["parameters"].get("properties") or {}
    for param in route.params:
        name = param.name if param.name in properties else re.sub(r"^([a-z]+)\d+$", r"\1[n]", param.name)
        assert name in properties, f"{param.name!r} is not a parameter of {route_id(route)}"
        want = expected(properties[name])
        got = Param(
            "",
            param.type,
            param.optional,
            param.enum,
            param.minimum,
            param.maximum,
            param.max_length,
            param.format,
        )
        assert got == want, f"{param.name!r} differs from the schema"
    declared = {p.name for p in route.params}
    required = {name for name, prop in properties.items() if not prop.get("optional")}
    assert required <= declared, f"required by the schema but not declared: {sorted(required - declared)}"


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_schema_rejects_unknown_parameters_like_the_simulator(route: Route) -> None:
    assert method_schema(route)["parameters"].get("additionalProperties", 0) in (0, False)


# -- live responses -----------------------------------------------------------------------------

READS = [
    ("/version", {}),
    ("/cluster/resources", {}),
    ("/cluster/status", {}),
    ("/cluster/tasks", {}),
    ("/cluster/ha/status/current", {}),
    ("/cluster/ha/resources", {}),
    ("/cluster/ha/rules", {}),
    ("/nodes", {}),
    ("/nodes/{node}/status", {"node": "pve1"}),
    ("/nodes/{node}/qemu", {"node": "pve1"}),
    ("/nodes/{node}/lxc", {"node": "pve1"}),
    ("/nodes/{node}/apt/update", {"node": "pve1"}),
    ("/nodes/{node}/apt/versions", {"node": "pve1"}),
    ("/nodes/{node}/tasks", {"node": "pve1"}),
    ("/nodes/{node}/tasks/{upid}/status", {"node": "pve1"}),
    ("/nodes/{node}/tasks/{upid}/log", {"node": "pve1"}),
    ("/nodes/{node}/qemu/{vmid}/status/current", {"node": "pve1", "vmid": "100"}),
    ("/nodes/{node}/lxc/{vmid}/status/current", {"node": "pve1", "vmid": "102"}),
    ("/nodes/{node}/qemu/{vmid}/snapshot", {"node": "pve1", "vmid": "100"}),
    ("/nodes/{node}/lxc/{vmid}/snapshot", {"node": "pve1", "vmid": "102"}),
    ("/nodes/{node}/qemu/{vmid}/config", {"node": "pve1", "vmid": "100"}),
    ("/nodes/{node}/lxc/{vmid}/config", {"node": "pve1", "vmid": "102"}),
    ("/nodes/{node}/storage/{storage}/content", {"node": "pve1", "storage": "backup-nfs"}),
    ("/nodes/{node}/storage/{storage}/content/{volume}", {"node": "pve1", "storage": "backup-nfs"}),
    ("/nodes/{node}/storage/{storage}/status", {"node": "pve1", "storage": "backup-nfs"}),
    ("/nodes/{node}/vzdump/extractconfig", {"node": "pve1"}),
    ("/cluster/nextid", {}),
]


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Simulator, dict[str, str]]]:
    with Simulator(SimConfig(task_duration=0.0), ssh=False) as sim:
        token = {"authorization": f"PVEAPIToken=root@pam!patchwave={sim.token_secret}"}
        sim.cluster.add_ha_rule("db-on-pve2", resources="vm:101", nodes="pve2:2,pve3", strict=True)
        for vmid, node in ((100, "pve1"), (102, "pve1")):
            kind = "qemu" if vmid == 100 else "lxc"
            body = b"snapname=pre&description=x"
            sim.api.handle("POST", f"/nodes/{node}/{kind}/{vmid}/snapshot", "", body, token)
        body = b"vmid=100&storage=backup-nfs&mode=snapshot&compress=zstd&remove=0&notes-template=n"
        assert sim.api.handle("POST", "/nodes/pve1/vzdump", "", body, token).status == 200
        sim.cluster.tick()  # the task's zero duration ends at the next tick
        yield sim, token


def _fill(path: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        path = path.replace("{" + key + "}", value)
    return path


def _check_shape(value: Any, returns: dict[str, Any], allowed_extra: set[str], where: str) -> None:
    kind = returns.get("type")
    if kind == "array" and "items" in returns:
        assert isinstance(value, list), where
        for item in value:
            _check_shape(item, returns["items"], allowed_extra, where + "[]")
    elif kind == "object" and returns.get("properties") and isinstance(value, dict):
        props = returns["properties"]
        for key, item in value.items():
            if key in allowed_extra:
                continue
            key = re.sub(r"^([a-z]+)\d+$", r"\1[n]", key) if key not in props else key  # scsi0 -> scsi[n]
            assert key in props or returns.get("additionalProperties"), (
                f"{where}: field {key!r} not in the schema"
            )
            if key in props and "type" in props[key] and props[key]["type"] in JSON_TYPES:
                assert isinstance(item, JSON_TYPES[props[key]["type"]]), f"{where}.{key}: {item!r}"
    elif kind in JSON_TYPES and kind not in ("object", "array"):
        assert isinstance(value, JSON_TYPES[kind]), where


@pytest.mark.parametrize(("path", "values"), READS, ids=[r[0] for r in READS])
def test_live_responses_use_schema_fields(
    live: tuple[Simulator, dict[str, str]], path: str, values: dict[str, str]
) -> None:
    sim, token = live
    if "{upid}" in path:
        values = {**values, "upid": next(iter(sim.cluster.tasks))}
    volid = next(iter(sim.cluster.storages["backup-nfs"].volumes))
    if "{volume}" in path:
        values = {**values, "volume": volid}
    query = f"volume={volid}" if path.endswith("extractconfig") else ""
    response = sim.api.handle("GET", _fill(path, values), query, b"", token)
    assert response.status == 200, response.reason
    data = json.loads(response.body)["data"]
    returns = method_schema(Route("GET", path, (), lambda r: None))["returns"]
    _check_shape(data, returns, UNDECLARED_RETURNS.get(path, set()), path)
