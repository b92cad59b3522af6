"""Reading vSphere inventory: one ContainerView + RetrievePropertiesEx (paged by ``token``), and the
conversion of property sets into our typed values. Also the evacuation capacity check (pure).

Never pyVmomi's lazy attribute access on managed objects: every attribute is a round trip, and vcsim
0.24 panics on a Fetch of an unset property.

Static per-VM facts: a VM whose VMware Tools are not installed (``guest.toolsVersionStatus2`` is
``guestToolsNotInstalled``) lists GUEST_EXEC and SNAPSHOT_QUIESCE in ``VmInfo.unsupported`` (when
the provider declares them); tools that are installed but not running are only ``agent_ready=False``.
A host's ``address`` is its inventory name: the DNS name or IP vCenter connected it by.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyVmomi import vim, vmodl

from providers.base import Capability, HostInfo, HostRef, HostState, PowerState, VmInfo, VmRef
from providers.errors import NotFound, ProviderError
from providers.vsphere.session import Session

PC = vmodl.query.PropertyCollector

HOST_PATHS = (
    "name", "parent", "runtime.connectionState", "runtime.inMaintenanceMode", "runtime.bootTime",
    "summary.config.product", "summary.hardware.memorySize", "customValue",
)  # fmt: skip
VM_PATHS = (
    "name", "runtime.powerState", "runtime.host", "runtime.connectionState", "config.template",
    "summary.config.guestFullName", "summary.config.memorySizeMB", "guest.toolsRunningStatus",
    "guest.ipAddress", "guest.net", "guest.guestFullName", "guest.toolsVersionStatus2", "customValue",
)  # fmt: skip
CLUSTER_PATHS = ("name",)

#: What a VM without VMware Tools installed cannot do (guest operations and quiescing need them).
NEEDS_TOOLS = (Capability.GUEST_EXEC, Capability.SNAPSHOT_QUIESCE)

_POWER = {
    "poweredOn": PowerState.RUNNING,
    "poweredOff": PowerState.STOPPED,
    "suspended": PowerState.SUSPENDED,
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Raw inventory, keyed by moref value: what ``inventory()`` and capacity checks work from."""

    hosts: Mapping[str, dict[str, Any]]
    vms: Mapping[str, dict[str, Any]]
    clusters: Mapping[str, dict[str, Any]]
    fields: Mapping[int, str]


def iso(value: Any, timespec: str = "seconds") -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return when.astimezone(UTC).isoformat(timespec=timespec)
    return ""


def retrieve(
    session: Session,
    object_specs: Sequence[Any],
    prop_specs: Sequence[Any],
    *,
    target: str = "",
    retry: bool = True,
) -> list[Any]:
    """RetrievePropertiesEx, then ContinueRetrievePropertiesEx while the result carries a token."""
    spec = PC.FilterSpec(objectSet=list(object_specs), propSet=list(prop_specs))
    options = PC.RetrieveOptions(maxObjects=session.settings.page_size)
    result = session.call(
        lambda c: c.propertyCollector.RetrievePropertiesEx(specSet=[spec], options=options),
        target=target,
        retry=retry,
    )
    objects = list(result.objects) if result is not None else []
    while result is not None and result.token:
        result = session.call(
            lambda c, token=result.token: c.propertyCollector.ContinueRetrievePropertiesEx(token=token),  # type: ignore[misc]  # lambda binding a loop variable: python/mypy#15459
            target=target,
            retry=retry,
        )
        objects.extend(result.objects or ())
    return objects


def props_of(content: Any) -> dict[str, Any]:
    return {p.name: p.val for p in content.propSet or ()}


def read_one(
    session: Session, obj: Any, paths: Sequence[str], *, target: str = "", retry: bool = True
) -> dict[str, Any]:
    """Properties of one managed object; NotFound when it no longer exists."""
    found = retrieve(
        session,
        [PC.ObjectSpec(obj=obj, skip=False)],
        [PC.PropertySpec(type=type(obj), pathSet=list(paths))],
        target=target,
        retry=retry,
    )
    if not found:
        raise NotFound(f"{obj._moId} not found", target=target, code="not_found")
    return props_of(found[0])


def read_inventory(session: Session, root: Any) -> Snapshot:
    """Clusters, hosts and VMs under ``root`` plus custom field names, in one paged retrieval."""
    return session.unit(lambda: _read_inventory(session, root))


def _destroy(session: Session, view: Any) -> None:
    try:
        session.call(lambda c: view.DestroyView())
    except ProviderError:
        pass  # a view of an expired session is gone already


def _read_inventory(session: Session, root: Any) -> Snapshot:
    content = session.content
    view = session.call(
        lambda c: c.viewManager.CreateContainerView(
            container=root,
            type=[vim.ClusterComputeResource, vim.HostSystem, vim.VirtualMachine],
            recursive=True,
        )
    )
    try:
        traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
        object_specs = [PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])]
        prop_specs = [
            PC.PropertySpec(type=vim.ClusterComputeResource, pathSet=list(CLUSTER_PATHS)),
            PC.PropertySpec(type=vim.HostSystem, pathSet=list(HOST_PATHS)),
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(VM_PATHS)),
        ]
        if content.customFieldsManager is not None:
            object_specs.append(PC.ObjectSpec(obj=content.customFieldsManager, skip=False))
            prop_specs.append(PC.PropertySpec(type=vim.CustomFieldsManager, pathSet=["field"]))
        objects = retrieve(session, object_specs, prop_specs)
    finally:
        _destroy(session, view)
    hosts: dict[str, dict[str, Any]] = {}
    vms: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    fields: dict[int, str] = {}
    for item in objects:
        props = props_of(item)
        if isinstance(item.obj, vim.HostSystem):
            hosts[item.obj._moId] = props
        elif isinstance(item.obj, vim.VirtualMachine):
            vms[item.obj._moId] = props
        elif isinstance(item.obj, vim.ClusterComputeResource):
            clusters[item.obj._moId] = props
        elif isinstance(item.obj, vim.CustomFieldsManager):
            fields = field_names(props.get("field"))
    return Snapshot(hosts=hosts, vms=vms, clusters=clusters, fields=fields)


def field_names(defs: Iterable[Any] | None) -> dict[int, str]:
    return {int(d.key): str(d.name) for d in defs or ()}


def read_host(session: Session, host: Any, *, target: str) -> Snapshot:
    """One host with its cluster's name and its VMs' power states, in one retrieval (cheaper than
    the whole inventory for ``get_host``)."""
    select = [
        PC.TraversalSpec(name="vms", type=vim.HostSystem, path="vm", skip=False),
        PC.TraversalSpec(name="parent", type=vim.HostSystem, path="parent", skip=False),
    ]
    found = retrieve(
        session,
        [PC.ObjectSpec(obj=host, skip=False, selectSet=select)],
        [
            PC.PropertySpec(type=vim.HostSystem, pathSet=list(HOST_PATHS)),
            PC.PropertySpec(type=vim.VirtualMachine, pathSet=["runtime.powerState", "runtime.host"]),
            PC.PropertySpec(type=vim.ClusterComputeResource, pathSet=list(CLUSTER_PATHS)),
        ],
        target=target,
    )
    kinds: dict[type[Any], dict[str, dict[str, Any]]] = {
        vim.HostSystem: {},
        vim.VirtualMachine: {},
        vim.ClusterComputeResource: {},
    }
    for item in found:
        for kind, bucket in kinds.items():
            if isinstance(item.obj, kind):
                bucket[item.obj._moId] = props_of(item)
    if host._moId not in kinds[vim.HostSystem]:
        raise NotFound(f"{host._moId} not found", target=target, code="not_found")
    return Snapshot(
        hosts=kinds[vim.HostSystem],
        vms=kinds[vim.VirtualMachine],
        clusters=kinds[vim.ClusterComputeResource],
        fields={},
    )


def find_by_name(session: Session, root: Any, kind: Any, name: str) -> Any:
    """The first object of ``kind`` named ``name`` under ``root`` (datacenter/cluster filters)."""
    return session.unit(lambda: _find_by_name(session, root, kind, name))


def _find_by_name(session: Session, root: Any, kind: Any, name: str) -> Any:
    view = session.call(
        lambda c: c.viewManager.CreateContainerView(container=root, type=[kind], recursive=True)
    )
    try:
        traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
        found = retrieve(
            session,
            [PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            [PC.PropertySpec(type=kind, pathSet=["name"])],
        )
    finally:
        _destroy(session, view)
    for item in found:
        if props_of(item).get("name") == name:
            return item.obj
    raise NotFound(f"no {kind.__name__.split('.')[-1]} named {name!r}", target=name, code="not_found")


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def labels_of(custom_values: Iterable[Any] | None, fields: Mapping[int, str]) -> dict[str, str]:
    """Custom field values by field name; the last value wins (vcsim appends duplicates)."""
    labels: dict[str, str] = {}
    for value in custom_values or ():
        name = fields.get(int(value.key))
        if name is not None and isinstance(getattr(value, "value", None), str):
            labels[name] = value.value
    return labels


def tags_of(labels: Mapping[str, str], tags_field: str) -> tuple[str, ...]:
    """Plain tags from the comma-separated ``tags_field`` plus ``key=value`` for other labels."""
    plain = [t.strip() for t in labels.get(tags_field, "").split(",") if t.strip()]
    keyed = [f"{k}={v}" for k, v in sorted(labels.items()) if k != tags_field]
    return tuple(dict.fromkeys(plain + keyed))


def failure_domain(props: Mapping[str, Any], clusters: Mapping[str, Mapping[str, Any]]) -> str:
    parent = props.get("parent")
    if isinstance(parent, vim.ClusterComputeResource):
        return str(clusters.get(parent._moId, {}).get("name") or parent._moId)
    return str(props.get("name", ""))  # a standalone host is its own failure domain


def host_state(props: Mapping[str, Any]) -> HostState:
    connection = props.get("runtime.connectionState")
    if connection != "connected":
        return HostState.DISCONNECTED if connection else HostState.UNKNOWN
    return HostState.MAINTENANCE if props.get("runtime.inMaintenanceMode") else HostState.CONNECTED


def host_info(
    site: str, moref: str, props: Mapping[str, Any], snap: Snapshot, tags_field: str, running: int
) -> HostInfo:
    product = props.get("summary.config.product")
    labels = labels_of(props.get("customValue"), snap.fields)
    name = str(props.get("name", moref))
    return HostInfo(
        ref=HostRef(site=site, id=moref, name=name),
        state=host_state(props),
        failure_domain=failure_domain(props, snap.clusters),
        version=str(getattr(product, "version", "") or ""),
        build=str(getattr(product, "build", "") or ""),
        boot_time=iso(props.get("runtime.bootTime"), "milliseconds"),  # a fast reboot stays visible
        running_vms=running,
        tags=tags_of(labels, tags_field),
        address=name if "name" in props else "",  # the name vCenter reaches the host by
    )


def vm_power(props: Mapping[str, Any]) -> PowerState:
    if props.get("runtime.connectionState", "connected") != "connected":
        return PowerState.UNKNOWN
    return _POWER.get(str(props.get("runtime.powerState")), PowerState.UNKNOWN)


def ip_addresses(props: Mapping[str, Any]) -> tuple[str, ...]:
    found = [props.get("guest.ipAddress") or ""]
    for nic in props.get("guest.net") or ():
        found.extend(nic.ipAddress or ())
    return tuple(dict.fromkeys(ip for ip in found if ip))


def vm_info(
    site: str,
    moref: str,
    props: Mapping[str, Any],
    hosts: Mapping[str, str],
    fields: Mapping[int, str],
    tags_field: str,
    capabilities: frozenset[Capability] = frozenset(),
) -> VmInfo:
    """Typed info of one VM; ``capabilities`` (the provider's) bound what ``unsupported`` lists."""
    host = props.get("runtime.host")
    no_tools = props.get("guest.toolsVersionStatus2") == "guestToolsNotInstalled"
    labels = labels_of(props.get("customValue"), fields)
    return VmInfo(
        ref=VmRef(site=site, id=moref, name=str(props.get("name", moref))),
        power=vm_power(props),
        host=HostRef(site=site, id=host._moId, name=hosts.get(host._moId, host._moId))
        if host is not None
        else None,
        tags=tags_of(labels, tags_field),
        labels=labels,
        guest_os=str(props.get("guest.guestFullName") or props.get("summary.config.guestFullName") or ""),
        ip_addresses=ip_addresses(props),
        agent_ready=props.get("guest.toolsRunningStatus") == "guestToolsRunning",
        unsupported=tuple(c for c in NEEDS_TOOLS if c in capabilities) if no_tools else (),
    )


# --------------------------------------------------------------------------------------------
# Evacuation capacity (pure)
# --------------------------------------------------------------------------------------------


def evacuation_refusal(host_id: str, snap: Snapshot, *, overcommit: float) -> str:
    """Why the powered-on VMs of ``host_id`` cannot move to the rest of its cluster ("" = they can).

    Targets are the other connected, non-maintenance hosts of the same cluster. Memory is counted
    as configured VM memory against physical host memory times ``overcommit``.
    """
    host = snap.hosts[host_id]
    parent = host.get("parent")
    movable = [vm for vm in snap.vms.values() if runs_on(vm, host_id)]
    if not movable:
        return ""
    if not isinstance(parent, vim.ClusterComputeResource):
        return f"{len(movable)} powered-on VMs on a standalone host have nowhere to go"
    targets = [
        moref
        for moref, props in snap.hosts.items()
        if moref != host_id
        and _same(props.get("parent"), parent)
        and host_state(props) is HostState.CONNECTED
    ]
    if not targets:
        return f"{len(movable)} powered-on VMs and no other connected host outside maintenance in the cluster"
    mib = 1024 * 1024
    need = sum(int(vm.get("summary.config.memorySizeMB") or 0) for vm in movable)
    free = {
        t: int(snap.hosts[t].get("summary.hardware.memorySize") or 0) * overcommit / mib
        - sum(int(vm.get("summary.config.memorySizeMB") or 0) for vm in snap.vms.values() if runs_on(vm, t))
        for t in targets
    }
    largest = max(int(vm.get("summary.config.memorySizeMB") or 0) for vm in movable)
    if largest > max(free.values()):
        return f"the largest VM needs {largest} MiB and no target host has that much free"
    if need > sum(max(0.0, f) for f in free.values()):
        return f"evacuation needs {need} MiB, the other hosts have {sum(max(0.0, f) for f in free.values()):.0f} MiB free"
    return ""


def runs_on(vm: Mapping[str, Any], host_id: str) -> bool:
    host = vm.get("runtime.host")
    return host is not None and host._moId == host_id and vm.get("runtime.powerState") == "poweredOn"


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a._moId == b._moId
