"""Mapping PVE's ``/cluster/resources`` (plus node status and the guest agent) to our typed infos.

* guests: ``type`` qemu -> ``kind="vm"``, lxc -> ``kind="container"``; templates are not guests;
  ``tags`` split on ``;`` (PVE also accepts ``,`` and spaces); ``lock`` -> ``VmInfo.locked``;
  ``labels`` carry ``pve.vmid``, ``pve.type``, ``pve.node`` and, when set, ``pve.hastate`` / ``pve.pool``.
* ``agent_ready`` is one ``agent/ping`` for running QEMU guests whose config enables the agent
  (always ``False`` for containers: PVE has no agent exec for LXC); IPs come from the agent.
* ``unsupported`` (static facts): containers lack GUEST_EXEC and SNAPSHOT_MEMORY (and BACKUP_VERIFY
  when declared: probes of a restored copy run through the agent); a running QEMU
  guest whose config does not enable the agent (``agent: 0``, seen in ``status/current``) lacks
  GUEST_EXEC. An enabled agent that does not answer is only ``agent_ready=False``.
* a guest whose node is unreachable is ``PowerState.UNKNOWN`` rather than an inventory failure.
* nodes: online/offline -> CONNECTED/DISCONNECTED, MAINTENANCE from :class:`NodeOps`; version is
  ``pveversion``, build the running kernel release, ``failure_domain`` the cluster name (the node
  name on a standalone node); ``boot_time`` is derived from ``uptime`` (second precision);
  ``address`` is the node's ``ip`` in ``/cluster/status`` (the corosync/management address).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any

from providers.base import Capability, HostInfo, HostRef, HostState, PowerState, VmInfo, VmRef
from providers.errors import ProviderError, TransientProviderError
from providers.proxmox.agent import AgentExec
from providers.proxmox.hosts import GUEST_TYPES, NodeOps
from providers.proxmox.session import PveSession

_TAG_SPLIT = re.compile(r"[;,\s]+")
_RESOURCE_POWER = {"running": PowerState.RUNNING, "stopped": PowerState.STOPPED}
_QMP_POWER = {"paused": PowerState.PAUSED, "suspended": PowerState.SUSPENDED, "prelaunch": PowerState.PAUSED}
#: What a container cannot do that QEMU guests can (PVE has no agent exec and no RAM state for LXC).
CONTAINER_UNSUPPORTED = (Capability.GUEST_EXEC, Capability.SNAPSHOT_MEMORY)


def vm_id(kind: str, vmid: int) -> str:
    """The ``VmRef.id`` of a guest: ``"qemu/100"`` or ``"lxc/101"`` (PVE's cluster resource id)."""
    return f"{kind}/{vmid}"


class InventoryMapper:
    def __init__(
        self, site: str, session: PveSession, agent: AgentExec, nodes: NodeOps, *, verify: bool = False
    ) -> None:
        self.site = site
        self.verify = verify  # BACKUP_VERIFY is declared: guests without agent exec lack it
        self.session = session
        self.agent = agent
        self.nodes = nodes

    def hosts(self, resources: Sequence[Mapping[str, Any]], only: str = "") -> tuple[HostInfo, ...]:
        nodes = [r for r in resources if r.get("type") == "node" and (not only or r.get("node") == only)]
        if not nodes:
            return ()
        (domain, addresses), maintenance = self._cluster(), self.nodes.maintenance_nodes()
        return tuple(self._host(r, resources, domain, maintenance, addresses) for r in nodes)

    def _host(
        self,
        r: Mapping[str, Any],
        resources: Sequence[Mapping[str, Any]],
        domain: str,
        maintenance: set[str],
        addresses: Mapping[str, str],
    ) -> HostInfo:
        node = str(r["node"])
        online = r.get("status") == "online"
        state = HostState.CONNECTED if online else HostState.DISCONNECTED
        if r.get("status") not in ("online", "offline"):
            state = HostState.UNKNOWN
        if online and node in maintenance:
            state = HostState.MAINTENANCE
        version = build = ""
        if online:
            try:
                status = self.session.get(f"nodes/{node}/status", retry=False)
                version = str(status.get("pveversion", ""))
                build = str((status.get("current-kernel") or {}).get("release", ""))
            except ProviderError:
                pass  # node answers in /cluster/resources but not through the proxy (yet)
        uptime = r.get("uptime")
        boot = (
            (self.session.clock.now() - timedelta(seconds=int(uptime))).astimezone(UTC)
            if online and uptime is not None
            else None
        )
        return HostInfo(
            ref=HostRef(site=self.site, id=node, name=node),
            state=state,
            failure_domain=domain or node,
            version=version,
            build=build,
            boot_time=boot.isoformat(timespec="seconds") if boot else "",
            running_vms=sum(
                1
                for g in resources
                if g.get("node") == node and g.get("type") in GUEST_TYPES and g.get("status") == "running"
            ),
            address=addresses.get(node, ""),
        )

    def _cluster(self) -> tuple[str, dict[str, str]]:
        """The cluster's name ("" on a standalone node) and each node's address, from ``/cluster/status``."""
        name, addresses = "", {}
        for entry in self.session.get("cluster/status"):
            if entry.get("type") == "cluster":
                name = str(entry.get("name", ""))
            elif entry.get("type") == "node" and entry.get("name") and entry.get("ip"):
                addresses[str(entry["name"])] = str(entry["ip"])
        return name, addresses

    def vm(self, r: Mapping[str, Any]) -> VmInfo:
        kind, vmid, node = str(r["type"]), int(r["vmid"]), str(r["node"])
        power = _RESOURCE_POWER.get(str(r.get("status")), PowerState.UNKNOWN)
        agent_ready = False
        ips: tuple[str, ...] = ()
        unsupported: tuple[Capability, ...] = CONTAINER_UNSUPPORTED if kind == "lxc" else ()
        if kind == "qemu" and power is PowerState.RUNNING:
            try:
                status = self.session.get(f"nodes/{node}/qemu/{vmid}/status/current", retry=False)
            except TransientProviderError:  # its node is unreachable: state unknown, not an error
                status, power = {}, PowerState.UNKNOWN
            power = _QMP_POWER.get(str(status.get("qmpstatus", "")), power)
            if status and not status.get("agent"):  # the VM config does not enable the agent
                unsupported = (Capability.GUEST_EXEC,)
            if status.get("agent") and power is PowerState.RUNNING:
                agent_ready = self.agent.ping(node, vmid)
                ips = self._guest_ips(node, vmid) if agent_ready else ()
        if self.verify and Capability.GUEST_EXEC in unsupported:  # probes run through the agent
            unsupported = (*unsupported, Capability.BACKUP_VERIFY)
        labels = {"pve.vmid": str(vmid), "pve.type": kind, "pve.node": node}
        for key in ("hastate", "pool"):
            if r.get(key):
                labels[f"pve.{key}"] = str(r[key])
        return VmInfo(
            ref=VmRef(site=self.site, id=vm_id(kind, vmid), name=str(r.get("name") or vmid)),
            power=power,
            host=HostRef(site=self.site, id=node, name=node),
            kind="vm" if kind == "qemu" else "container",
            tags=tuple(t for t in _TAG_SPLIT.split(str(r.get("tags") or "")) if t),
            labels=labels,
            ip_addresses=ips,
            agent_ready=agent_ready,
            locked=str(r.get("lock") or ""),
            unsupported=unsupported,
        )

    def _guest_ips(self, node: str, vmid: int) -> tuple[str, ...]:
        try:
            answer = self.session.get(f"nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", retry=False)
        except ProviderError:
            return ()
        ips = []
        for interface in (answer or {}).get("result", []):
            for address in interface.get("ip-addresses", []):
                ip = str(address.get("ip-address", ""))
                if ip and not ip.startswith(("127.", "fe80:")) and ip != "::1":
                    ips.append(ip)
        return tuple(ips)
