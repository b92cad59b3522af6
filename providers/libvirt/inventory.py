"""Reading one libvirt connection as typed infos: the host and its domains.

Model
    One connection is one host: ``HostRef.id`` is the connection's canonical URI, its name the
    hypervisor's hostname, its failure domain ``failure_domain`` from the settings (default: the
    hostname); ``address`` is the URI's host (``qemu+ssh://root@kvm1/system`` -> ``kvm1``), else the
    local hostname. VMs are libvirt domains, identified by UUID.

Guest agent readiness
    ``inventory()`` never talks to guest agents (one slow or hung agent would stall discovery of
    the whole site). It reports ``agent_ready`` from the agent channel's ``state='connected'``
    in the live domain XML, which libvirt updates when qemu-ga opens its virtio port: free,
    but "the agent process is there", not "it answers". ``get_vm()`` sends a real
    ``guest-ping`` (``agent_timeout``) and, when it answers, asks the agent for IP addresses.
    A domain with no qemu-ga channel configured at all lists GUEST_EXEC (and BACKUP_VERIFY when
    declared) in ``unsupported`` (a
    static fact of its definition; a *disconnected* channel is only ``agent_ready=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from providers.base import Capability, HostInfo, HostRef, HostState, PowerState, VmInfo, VmRef
from providers.libvirt.agent import GuestAgent
from providers.libvirt.settings import LibvirtSettings
from providers.libvirt.xml import agent_channel_state, decode_version, guest_os, parse_tags


class InventoryReader:
    """Host and domain infos of one connection (calls run inside the provider's boundary)."""

    def __init__(
        self,
        libvirt: Any,
        settings: LibvirtSettings,
        *,
        driver: str,
        capabilities: frozenset[Capability],
        agent: GuestAgent,
        ping: Callable[[Any], bool],
    ) -> None:
        self._lv = libvirt
        self._settings = settings
        self._driver = driver
        self._capabilities = capabilities
        self._agent = agent
        self._ping = ping

    def host_ref(self, conn: Any) -> HostRef:
        return HostRef(self._settings.site, conn.getURI(), conn.getHostname())

    def host(self, conn: Any) -> HostInfo:
        ref = self.host_ref(conn)
        return HostInfo(
            ref=ref,
            state=HostState.CONNECTED,
            failure_domain=self._settings.failure_domain or ref.name,
            version=f"{self._driver} {decode_version(conn.getVersion())}",
            build=f"libvirt {decode_version(conn.getLibVersion())}",
            boot_time=self._boot_time(ref.id),
            running_vms=len(conn.listAllDomains(self._lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)),
            address=urlsplit(ref.id).hostname or ref.name,
        )

    def _boot_time(self, uri: str) -> str:
        """Known only for a local, real hypervisor (libvirt has no boot-time API): /proc/stat btime."""
        if self._driver == "TEST" or urlsplit(uri).hostname:
            return ""
        try:
            btime = next(
                line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
            )
        except (OSError, StopIteration):
            return ""
        return datetime.fromtimestamp(int(btime.split()[1]), UTC).isoformat(timespec="seconds")

    def vm(self, dom: Any, host: HostRef, *, probe_agent: bool) -> VmInfo:
        state, reason = dom.state()
        power = self.power_state(state, reason)
        xml = dom.XMLDesc(0)
        tags, labels = parse_tags(xml, self._settings.tag_namespace)
        ref = VmRef(self._settings.site, dom.UUIDString(), dom.name())
        configured = agent_channel_state(xml)
        channel = configured if power is PowerState.RUNNING else None
        agent_ready = channel == "connected"
        addresses: tuple[str, ...] = ()
        exec_declared = Capability.GUEST_EXEC in self._capabilities
        if probe_agent and channel is not None and exec_declared:
            agent_ready = self._ping(dom)
            addresses = self._agent.addresses(dom) if agent_ready else ()
        return VmInfo(
            ref=ref,
            power=power,
            host=host,
            tags=tags,
            labels=labels,
            guest_os=guest_os(xml),
            ip_addresses=addresses,
            agent_ready=agent_ready,
            unsupported=self._without_agent() if exec_declared and configured is None else (),
        )

    def power_state(self, state: int, reason: int) -> PowerState:
        lv = self._lv
        if state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED, lv.VIR_DOMAIN_SHUTDOWN):
            return PowerState.RUNNING  # SHUTDOWN = "being shut down": still running
        if state == lv.VIR_DOMAIN_PAUSED:
            return PowerState.PAUSED
        if state == lv.VIR_DOMAIN_PMSUSPENDED:
            return PowerState.SUSPENDED
        if state == lv.VIR_DOMAIN_SHUTOFF:
            return PowerState.SUSPENDED if reason == lv.VIR_DOMAIN_SHUTOFF_SAVED else PowerState.STOPPED
        return PowerState.UNKNOWN  # NOSTATE, CRASHED

    def _without_agent(self) -> tuple[Capability, ...]:
        """What a domain without a qemu-ga channel lacks: agent exec, and so the probes of a
        restore-verify copy (they run through the agent)."""
        verify = (Capability.BACKUP_VERIFY,) if Capability.BACKUP_VERIFY in self._capabilities else ()
        return (Capability.GUEST_EXEC, *verify)
