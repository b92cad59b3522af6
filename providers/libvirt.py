"""libvirt adapter: one libvirt connection (``qemu:///system``, ``qemu+ssh://...``, ``test:///default``).

Model
    One connection is one host: ``HostRef.id`` is the connection's canonical URI, its name the
    hypervisor's hostname, its failure domain ``failure_domain`` from the settings (default: the
    hostname). VMs are libvirt domains, identified by UUID.

Tags
    Tags and labels live in the domain's ``<metadata>`` under our namespace (``tag_namespace``)::

        <pw:tags xmlns:pw="https://patchwave.dev/xmlns/tags/1">
          <pw:tag>web</pw:tag><pw:label key="ring">canary</pw:label>
        </pw:tags>

    :meth:`LibvirtProvider.write_tags` writes them (adapter-specific, not part of the Protocol).

Guest agent readiness
    ``inventory()`` never talks to guest agents (one slow or hung agent would stall discovery of
    the whole site). It reports ``agent_ready`` from the agent channel's ``state='connected'``
    in the live domain XML, which libvirt updates when qemu-ga opens its virtio port: free,
    but "the agent process is there", not "it answers". ``get_vm()`` sends a real
    ``guest-ping`` (``agent_timeout``) and, when it answers, asks the agent for IP addresses.

Snapshots (internal, qcow2)
    ``create_snapshot`` makes an internal snapshot with ``VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC``.
    On a running or paused domain libvirt 9 can only make a *full system checkpoint* (disks and
    RAM): a disk-only internal snapshot of a running domain is refused ("must include the memory
    state") and external snapshots cannot be reverted before libvirt 9.7. So ``memory=False`` on
    a running domain still captures memory, and the returned ``has_memory`` says so honestly;
    reverting it brings the domain back *running*. On a stopped domain the snapshot is disk-only
    whatever ``memory`` says. ``quiesce`` is refused (internal snapshots cannot be quiesced).
    Reverting passes ``REVERT_RUNNING``/``REVERT_PAUSED`` for snapshots taken running/paused and
    adds ``REVERT_FORCE`` only when libvirt answers ``VIR_ERR_SNAPSHOT_REVERT_RISKY``.

Threads and retries
    libvirt connections are thread-safe, so activities share one connection; a lock guards only
    opening/replacing it. Before each call the connection is checked with ``isAlive()`` and
    reopened if it dropped (a reopened ``test:///`` connection is a fresh hypervisor). Read-only
    calls are retried under the named ``API_CALL`` policy; state-changing calls are not (the
    engine checks reality and retries the activity), only opening the connection for them is.

Errors
    ``libvirtError`` is translated by error code and error domain (never message text) into
    ``providers.base`` errors; see :func:`translate_error`.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog

from providers.base import (
    API_CALL,
    SYSTEM_CLOCK,
    AuthenticationFailed,
    Capability,
    CapabilityMissing,
    Clock,
    ExecResult,
    HostInfo,
    HostRef,
    HostState,
    Inventory,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    PowerState,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResourceBusy,
    SdkMissing,
    SettingsError,
    SnapshotInfo,
    TransientProviderError,
    VmInfo,
    VmRef,
    wait_until,
)

log = structlog.get_logger("patchwave.providers.libvirt")

T = TypeVar("T")

DEFAULT_TAG_NAMESPACE = "https://patchwave.dev/xmlns/tags/1"
TAG_PREFIX = "pw"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"
#: guest-exec's ``env`` replaces the environment, so PATH is always sent (caller's env wins).
GUEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SUPPORTED_DRIVERS = ("qemu", "test")
SUPPORTED_TRANSPORTS = ("", "unix", "ssh", "libssh", "libssh2", "tls", "tcp", "ext")

# ============================================================================================
# Settings (validated without importing libvirt)
# ============================================================================================


@dataclass(frozen=True, slots=True)
class LibvirtSettings:
    site: str
    uri: str
    failure_domain: str = ""  # "" = the hypervisor's hostname
    tag_namespace: str = DEFAULT_TAG_NAMESPACE
    connect_timeout: float = 30.0  # seconds for opening the connection
    agent_timeout: float = 5.0  # seconds for one guest agent command (guest-ping, exec status)


_URI = re.compile(r"^(?P<driver>[A-Za-z][A-Za-z0-9]*)(?:\+(?P<transport>[A-Za-z0-9]+))?://")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_KEYS = ("uri", "failure_domain", "tag_namespace", "connect_timeout", "agent_timeout")


def parse_settings(site: str, raw: Mapping[str, Any]) -> LibvirtSettings:
    """Validate a ``[providers.<site>]`` table of kind libvirt; raises :class:`SettingsError`."""
    if not isinstance(site, str) or not site.strip():
        raise SettingsError("site", "must be a non-empty name", "name the table [providers.<site>]")
    if not isinstance(raw, Mapping):
        raise SettingsError("providers." + site, "must be a table", 'write uri = "qemu:///system" in it')
    unknown = sorted(set(raw) - set(_KEYS) - {"kind"})
    if unknown:
        raise SettingsError(
            unknown[0], "is not a libvirt setting", f"remove it; known settings: {', '.join(_KEYS)}"
        )
    return LibvirtSettings(
        site=site.strip(),
        uri=_parse_uri(raw.get("uri")),
        failure_domain=_string(raw, "failure_domain", ""),
        tag_namespace=_parse_namespace(_string(raw, "tag_namespace", DEFAULT_TAG_NAMESPACE)),
        connect_timeout=_duration(raw, "connect_timeout", 30.0),
        agent_timeout=_duration(raw, "agent_timeout", 5.0),
    )


def _parse_uri(value: Any) -> str:
    fix = 'write uri = "qemu:///system" (local) or "qemu+ssh://root@host/system" or "test:///default"'
    if value is None:
        raise SettingsError("uri", "is required", fix)
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("uri", f"must be a non-empty string, got {value!r}", fix)
    uri = value.strip()
    match = _URI.match(uri)
    if not match:
        raise SettingsError("uri", f"{uri!r} is not a libvirt connection URI", fix)
    driver, transport = match.group("driver").lower(), (match.group("transport") or "").lower()
    if driver not in SUPPORTED_DRIVERS:
        raise SettingsError("uri", f"driver {driver!r} is not supported by this adapter", fix)
    if transport not in SUPPORTED_TRANSPORTS:
        raise SettingsError(
            "uri", f"unknown transport {transport!r}", f"use one of: {', '.join(SUPPORTED_TRANSPORTS[1:])}"
        )
    if urlsplit(uri).password is not None:
        raise SettingsError(
            "uri", "contains a password", "use SSH keys (qemu+ssh://user@host/system); never inline secrets"
        )
    return uri


def _parse_namespace(value: str) -> str:
    parts = urlsplit(value)
    if not (parts.scheme and (parts.netloc or parts.scheme == "urn")):
        raise SettingsError(
            "tag_namespace", f"{value!r} is not an absolute URI", f'write e.g. "{DEFAULT_TAG_NAMESPACE}"'
        )
    return value


def _string(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SettingsError(key, f"must be a string, got {type(value).__name__}", f'write {key} = "..."')
    return value.strip() or default


def _duration(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if isinstance(value, bool) or not (isinstance(value, int | float) or match):
        raise SettingsError(key, f"invalid duration {value!r}", f'write seconds or e.g. {key} = "30s"')
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else float(value)
    if not 0 < seconds <= 3600:
        raise SettingsError(
            key, f"must be between 0 and 1h, got {seconds:g}s", f'write e.g. {key} = "{default:g}s"'
        )
    return seconds


# ============================================================================================
# Error translation (by code and error domain, never by message text)
# ============================================================================================


def translate_error(
    libvirt: Any, exc: Any, *, target: str = "", connection_alive: bool = True
) -> ProviderError:
    """Map a ``libvirtError`` to a ``providers.base`` error."""
    code, domain = exc.get_error_code(), exc.get_error_domain()
    message = f"libvirt: {exc.get_error_message() or exc}"
    lv = libvirt
    by_code: dict[int, tuple[type[ProviderError], str]] = {
        lv.VIR_ERR_NO_DOMAIN: (NotFound, "not_found"),
        lv.VIR_ERR_NO_DOMAIN_SNAPSHOT: (NotFound, "snapshot_not_found"),
        lv.VIR_ERR_NO_DOMAIN_METADATA: (NotFound, "metadata_not_found"),
        lv.VIR_ERR_OPERATION_INVALID: (OperationRefused, "invalid_state"),
        lv.VIR_ERR_OPERATION_UNSUPPORTED: (OperationRefused, "unsupported"),
        lv.VIR_ERR_CONFIG_UNSUPPORTED: (OperationRefused, "config_unsupported"),
        lv.VIR_ERR_ARGUMENT_UNSUPPORTED: (OperationRefused, "argument_unsupported"),
        lv.VIR_ERR_DOM_EXIST: (OperationRefused, "exists"),
        lv.VIR_ERR_SNAPSHOT_REVERT_RISKY: (OperationRefused, "revert_risky"),
        lv.VIR_ERR_NO_SUPPORT: (CapabilityMissing, "driver_unsupported"),
        lv.VIR_ERR_AUTH_FAILED: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_AUTH_CANCELLED: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_AUTH_UNAVAILABLE: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_ACCESS_DENIED: (AuthenticationFailed, "access_denied"),
        lv.VIR_ERR_OPERATION_DENIED: (AuthenticationFailed, "access_denied"),
        lv.VIR_ERR_AGENT_UNRESPONSIVE: (TransientProviderError, "agent_unresponsive"),
        lv.VIR_ERR_AGENT_UNSYNCED: (TransientProviderError, "agent_unsynced"),
        lv.VIR_ERR_OPERATION_TIMEOUT: (ProviderTimeout, "timeout"),  # e.g. the domain's job lock
        lv.VIR_ERR_RESOURCE_BUSY: (ResourceBusy, "busy"),
        lv.VIR_ERR_NO_CONNECT: (ProviderUnavailable, "connection"),
        lv.VIR_ERR_INVALID_CONN: (ProviderUnavailable, "connection"),
        lv.VIR_ERR_RPC: (ProviderUnavailable, "connection"),
    }
    if domain in (lv.VIR_FROM_RPC, lv.VIR_FROM_REMOTE) and code not in by_code:
        return ProviderUnavailable(message, target=target, code="connection")
    if code == lv.VIR_ERR_SYSTEM_ERROR and not connection_alive:
        return ProviderUnavailable(message, target=target, code="connection")
    cls, short = by_code.get(code, (PermanentProviderError, f"libvirt_{code}"))
    return cls(message, target=target, code=short)


# ============================================================================================
# Connection
# ============================================================================================


class Connection:
    """The shared ``virConnect``: opened with a deadline, reopened when it is no longer alive."""

    def __init__(self, libvirt: Any, uri: str, *, timeout: float) -> None:
        self._libvirt = libvirt
        self._uri = uri
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False

    def get(self) -> Any:
        with self._lock:
            if self._closed:
                raise PermanentProviderError("the provider was closed", target=self._uri, code="closed")
            if self._conn is None or not alive(self._conn):
                if self._conn is not None:
                    log.warning("libvirt_reconnect", uri=self._uri)
                # A dead connection is forgotten, not closed: other threads may still be inside a
                # call on it; libvirt-python closes it when the last reference goes away.
                self._conn = self._open()
            return self._conn

    def drop(self, conn: Any) -> None:
        """Forget ``conn`` (after a connection error) so that the next :meth:`get` reopens."""
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._close_quietly(self._conn)
                self._conn = None

    def _open(self) -> Any:
        """``virConnectOpen`` has no timeout: run it in a helper thread and stop waiting at the deadline."""
        outcome: dict[str, Any] = {}
        done, guard = threading.Event(), threading.Lock()

        def opener() -> None:
            try:
                conn = self._libvirt.open(self._uri)
            except self._libvirt.libvirtError as exc:
                conn, outcome["error"] = None, exc
            with guard:
                if outcome.get("abandoned") and conn is not None:
                    self._close_quietly(conn)
                outcome["conn"] = conn
                done.set()

        threading.Thread(target=opener, name="libvirt-open", daemon=True).start()
        if not done.wait(self._timeout):
            with guard:
                if not done.is_set():
                    outcome["abandoned"] = True
                    raise ProviderTimeout(
                        f"could not connect within {self._timeout:g}s",
                        target=self._uri,
                        code="connect_timeout",
                    )
        if "error" in outcome:  # daemon down / socket missing = VIR_ERR_SYSTEM_ERROR -> ProviderUnavailable
            raise translate_error(self._libvirt, outcome["error"], target=self._uri, connection_alive=False)
        return outcome["conn"]

    def _close_quietly(self, conn: Any) -> None:
        try:
            conn.close()
        except self._libvirt.libvirtError:
            pass


def alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:  # noqa: BLE001 - a connection that cannot answer isAlive is not alive
        return False


# ============================================================================================
# XML parsing (pure)
# ============================================================================================


def parse_tags(domain_xml: str, namespace: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """Tags and labels from our ``<metadata>`` element (children accepted with or without namespace)."""
    root = ET.fromstring(domain_xml)
    element = root.find(f"metadata/{{{namespace}}}tags")
    tags: list[str] = []
    labels: dict[str, str] = {}
    for child in element if element is not None else ():
        local = child.tag.rsplit("}", 1)[-1]
        text = (child.text or "").strip()
        if local == "tag" and text and text not in tags:
            tags.append(text)
        elif local == "label" and child.get("key"):
            labels[child.get("key", "")] = text
    return tuple(tags), labels


def tags_xml(tags: Sequence[str], labels: Mapping[str, str]) -> str:
    root = ET.Element("tags")
    for tag in tags:
        ET.SubElement(root, "tag").text = tag
    for key, value in labels.items():
        ET.SubElement(root, "label", key=key).text = value
    return ET.tostring(root, encoding="unicode")


def agent_channel_state(domain_xml: str) -> str | None:
    """``connected``/``disconnected`` for the qemu-ga channel, ``""`` when unknown, None without one."""
    root = ET.fromstring(domain_xml)
    for target in root.iterfind("devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            return target.get("state", "")
    return None


def guest_os(domain_xml: str) -> str:
    os_element = ET.fromstring(domain_xml).find(f"metadata/{{{LIBOSINFO_NS}}}libosinfo/{{{LIBOSINFO_NS}}}os")
    return os_element.get("id", "") if os_element is not None else ""


def snapshot_xml(name: str, description: str) -> str:
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "name").text = name
    if description:
        ET.SubElement(root, "description").text = description
    return ET.tostring(root, encoding="unicode")


def parse_snapshot(vm: VmRef, xml: str) -> SnapshotInfo:
    root = ET.fromstring(xml)
    state = root.findtext("state", "")
    memory = root.find("memory")
    if memory is not None:
        has_memory = memory.get("snapshot") in ("internal", "external")
    else:  # snapshots made before libvirt reported <memory>: running/paused ones are checkpoints
        has_memory = state in ("running", "paused")
    created = root.findtext("creationTime", "")
    return SnapshotInfo(
        vm=vm,
        id=root.findtext("name", ""),
        name=root.findtext("name", ""),
        description=root.findtext("description", ""),
        created_at=datetime.fromtimestamp(int(created), UTC).isoformat(timespec="seconds") if created else "",
        has_memory=has_memory,
        parent=root.findtext("parent/name", ""),
    )


def snapshot_state(xml: str) -> str:
    return ET.fromstring(xml).findtext("state", "")


def decode_version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# ============================================================================================
# The provider
# ============================================================================================


class LibvirtProvider:
    """Provider + SnapshotOps + PowerOps + GuestExecOps over one libvirt connection."""

    def __init__(self, settings: LibvirtSettings, libvirt: Any, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.site = settings.site
        self.settings = settings
        self._lv = libvirt
        self._clock = clock
        self._connection = Connection(libvirt, settings.uri, timeout=settings.connect_timeout)
        conn = API_CALL.call(self._connection.get, clock)
        self._driver = self._call(conn, "getType", settings.uri, lambda c: c.getType())
        self.capabilities = frozenset(
            {
                Capability.INVENTORY,
                Capability.POWER,
                Capability.GUEST_REBOOT,
                Capability.SNAPSHOT,
                Capability.SNAPSHOT_MEMORY,
            }
            | ({Capability.GUEST_EXEC} if self._driver == "QEMU" else set())
        )

    # ------------------------------------------------------------------ plumbing

    def _call(self, conn: Any, what: str, target: str, fn: Callable[[Any], T]) -> T:
        try:
            return fn(conn)
        except self._lv.libvirtError as exc:
            error = translate_error(self._lv, exc, target=target, connection_alive=alive(conn))
            if isinstance(error, ProviderUnavailable):
                self._connection.drop(conn)
            log.debug("libvirt_call_failed", what=what, target=target, code=error.code)
            raise error from exc

    def _read(self, what: str, target: str, fn: Callable[[Any], T]) -> T:
        """A read-only call: retried under API_CALL, reconnecting when the connection dropped."""
        return API_CALL.call(lambda: self._call(self._connection.get(), what, target, fn), self._clock)

    def _write(self, what: str, target: str, fn: Callable[[Any], T]) -> T:
        """A state-changing call: only getting a live connection is retried, never the call itself."""
        conn = API_CALL.call(self._connection.get, self._clock)
        return self._call(conn, what, target, fn)

    def _domain(self, conn: Any, vm: VmRef) -> Any:
        if vm.site != self.site:
            raise NotFound(
                f"VM belongs to site {vm.site!r}, not {self.site!r}", target=str(vm), code="wrong_site"
            )
        try:
            uuid.UUID(vm.id)
        except ValueError:
            raise NotFound(
                f"{vm.id!r} is not a libvirt domain UUID", target=str(vm), code="not_found"
            ) from None
        return conn.lookupByUUIDString(vm.id)

    def _require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise CapabilityMissing(
                f"the {self._driver} driver does not support {capability.value}",
                target=self.settings.uri,
                code="capability",
            )

    # ------------------------------------------------------------------ inventory

    def inventory(self) -> Inventory:
        def collect(conn: Any) -> Inventory:
            host = self._host_info(conn)
            vms = []
            for dom in conn.listAllDomains(0):
                try:
                    vms.append(self._vm_info(dom, host.ref, probe_agent=False))
                except self._lv.libvirtError as exc:
                    if exc.get_error_code() != self._lv.VIR_ERR_NO_DOMAIN:  # vanished while listing
                        raise
            return Inventory(site=self.site, hosts=(host,), vms=tuple(vms))

        return self._read("inventory", self.settings.uri, collect)

    def get_vm(self, vm: VmRef) -> VmInfo:
        return self._read(
            "get_vm",
            str(vm),
            lambda conn: self._vm_info(self._domain(conn, vm), self._host_ref(conn), probe_agent=True),
        )

    def get_host(self, host: HostRef) -> HostInfo:
        def lookup(conn: Any) -> HostInfo:
            info = self._host_info(conn)
            if (host.site, host.id) != (info.ref.site, info.ref.id):
                raise NotFound(
                    f"this connection's host is {info.ref.id!r}", target=str(host), code="not_found"
                )
            return info

        return self._read("get_host", str(host), lookup)

    def close(self) -> None:
        self._connection.close()

    def _host_ref(self, conn: Any) -> HostRef:
        return HostRef(self.site, conn.getURI(), conn.getHostname())

    def _host_info(self, conn: Any) -> HostInfo:
        ref = self._host_ref(conn)
        return HostInfo(
            ref=ref,
            state=HostState.CONNECTED,
            failure_domain=self.settings.failure_domain or ref.name,
            version=f"{self._driver} {decode_version(conn.getVersion())}",
            build=f"libvirt {decode_version(conn.getLibVersion())}",
            boot_time=self._boot_time(ref.id),
            running_vms=len(conn.listAllDomains(self._lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)),
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

    def _vm_info(self, dom: Any, host: HostRef, *, probe_agent: bool) -> VmInfo:
        state, reason = dom.state()
        power = self._power_state(state, reason)
        xml = dom.XMLDesc(0)
        tags, labels = parse_tags(xml, self.settings.tag_namespace)
        ref = VmRef(self.site, dom.UUIDString(), dom.name())
        channel = agent_channel_state(xml) if power is PowerState.RUNNING else None
        agent_ready = channel == "connected"
        addresses: tuple[str, ...] = ()
        if probe_agent and channel is not None and Capability.GUEST_EXEC in self.capabilities:
            agent_ready = self._ping(dom)
            addresses = self._agent_addresses(dom) if agent_ready else ()
        return VmInfo(
            ref=ref,
            power=power,
            host=host,
            tags=tags,
            labels=labels,
            guest_os=guest_os(xml),
            ip_addresses=addresses,
            agent_ready=agent_ready,
        )

    def _power_state(self, state: int, reason: int) -> PowerState:
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

    def _agent_addresses(self, dom: Any) -> tuple[str, ...]:
        try:
            interfaces = dom.interfaceAddresses(self._lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        except self._lv.libvirtError:
            return ()  # addresses are a convenience; an agent that cannot list them is still ready
        return tuple(
            a["addr"]
            for name, iface in sorted(interfaces.items())
            if name != "lo"
            for a in iface.get("addrs") or ()
            if a.get("addr")
        )

    def write_tags(
        self, vm: VmRef, tags: Sequence[str] = (), labels: Mapping[str, str] | None = None
    ) -> None:
        """Replace the VM's patchwave tags/labels metadata (live and persistent config). Not in the Protocol."""
        labels = dict(labels or {})

        def write(conn: Any) -> None:
            dom = self._domain(conn, vm)
            flags = (self._lv.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0) | (
                self._lv.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
            )
            xml = tags_xml(tags, labels) if tags or labels else None
            dom.setMetadata(
                self._lv.VIR_DOMAIN_METADATA_ELEMENT,
                xml,
                TAG_PREFIX if xml else None,
                self.settings.tag_namespace,
                flags,
            )

        self._write("write_tags", str(vm), write)
        log.info("vm_tags_written", site=self.site, vm=vm.name, tags=list(tags), labels=labels)

    # ------------------------------------------------------------------ snapshots

    def list_snapshots(self, vm: VmRef) -> list[SnapshotInfo]:
        def collect(conn: Any) -> list[SnapshotInfo]:
            infos = [parse_snapshot(vm, s.getXMLDesc(0)) for s in self._domain(conn, vm).listAllSnapshots(0)]
            return sorted(infos, key=lambda s: (s.created_at, s.name))

        return self._read("list_snapshots", str(vm), collect)

    def create_snapshot(
        self, vm: VmRef, name: str, description: str, *, memory: bool = False, quiesce: bool = False
    ) -> SnapshotInfo:
        if quiesce:
            self._require(Capability.SNAPSHOT_QUIESCE)
        if memory:
            self._require(Capability.SNAPSHOT_MEMORY)
        if not name or "/" in name:
            raise OperationRefused(f"invalid snapshot name {name!r}", target=str(vm), code="invalid_name")

        def create(conn: Any) -> SnapshotInfo:
            dom = self._domain(conn, vm)
            if self._snapshot_exists(dom, name):
                raise OperationRefused(
                    f"a snapshot named {name!r} already exists; it is not replaced",
                    target=str(vm),
                    code="snapshot_exists",
                )
            try:
                snap = dom.snapshotCreateXML(
                    snapshot_xml(name, description), self._lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                )
            except self._lv.libvirtError:
                if self._snapshot_exists(dom, name):  # lost a race with another creator of that name
                    raise OperationRefused(
                        f"a snapshot named {name!r} was created concurrently",
                        target=str(vm),
                        code="snapshot_exists",
                    ) from None
                raise
            return parse_snapshot(vm, snap.getXMLDesc(0))

        info = self._write("create_snapshot", str(vm), create)
        log.info("snapshot_created", site=self.site, vm=vm.name, snapshot=info.id, memory=info.has_memory)
        return info

    def revert_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        lv = self._lv

        def revert(conn: Any) -> None:
            dom = self._domain(conn, vm)
            snap = dom.snapshotLookupByName(snapshot_id, 0)
            state = snapshot_state(snap.getXMLDesc(0))
            flags = {
                "running": lv.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
                "paused": lv.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED,
            }.get(state, 0)
            try:
                dom.revertToSnapshot(snap, flags)
            except lv.libvirtError as exc:
                if exc.get_error_code() != lv.VIR_ERR_SNAPSHOT_REVERT_RISKY:
                    raise
                log.warning("snapshot_revert_forced", site=self.site, vm=vm.name, snapshot=snapshot_id)
                dom.revertToSnapshot(snap, flags | lv.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)

        self._write("revert_snapshot", str(vm), revert)
        log.info("snapshot_reverted", site=self.site, vm=vm.name, snapshot=snapshot_id)

    def delete_snapshot(self, vm: VmRef, snapshot_id: str) -> None:
        self._write(
            "delete_snapshot",
            str(vm),
            lambda conn: self._domain(conn, vm).snapshotLookupByName(snapshot_id, 0).delete(0),
        )
        log.info("snapshot_deleted", site=self.site, vm=vm.name, snapshot=snapshot_id)

    def _snapshot_exists(self, dom: Any, name: str) -> bool:
        # Not snapshotListNames: with libvirt(-python) 9.0 it segfaults the in-process test driver
        # when another thread creates a snapshot at the same time (reproduced; lookups are safe).
        try:
            dom.snapshotLookupByName(name, 0)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return False
            raise
        return True

    # ------------------------------------------------------------------ power

    def power_on(self, vm: VmRef) -> None:
        """Start a stopped (or managed-saved) domain, resume a paused one; no-op when running."""
        lv = self._lv

        def start(conn: Any) -> str:
            dom = self._domain(conn, vm)
            state = dom.state()[0]
            if state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED):
                return "already_running"
            if state == lv.VIR_DOMAIN_SHUTDOWN:
                raise ResourceBusy(
                    "the domain is shutting down; power it on once it stopped",
                    target=str(vm),
                    code="shutting_down",
                )
            if state == lv.VIR_DOMAIN_PAUSED:
                dom.resume()
                return "resumed"
            if state == lv.VIR_DOMAIN_PMSUSPENDED:
                dom.pMWakeup(0)
                return "woken"
            if dom.isActive():
                raise OperationRefused(
                    f"the domain is active in state {state}; not starting it",
                    target=str(vm),
                    code="invalid_state",
                )
            dom.create()
            return "started"

        outcome = self._write("power_on", str(vm), start)
        log.info("vm_powered_on", site=self.site, vm=vm.name, outcome=outcome)

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        """Graceful shutdown (agent when it answers, else ACPI), waiting until the domain is off."""
        lv = self._lv

        def request(conn: Any) -> bool:
            dom = self._domain(conn, vm)
            if not dom.isActive():
                return False
            agent = Capability.GUEST_EXEC in self.capabilities and self._ping(dom)
            # QEMU: explicit agent / ACPI; other drivers (test) know only their default method (0)
            acpi = lv.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN if self._driver == "QEMU" else 0
            dom.shutdownFlags(lv.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT if agent else acpi)
            log.info("vm_shutdown_requested", site=self.site, vm=vm.name, via="agent" if agent else "acpi")
            return True

        if self._write("shutdown", str(vm), request):
            wait_until(
                lambda: self._stopped(vm),
                timeout=timeout,
                interval=1.0,
                what=f"{vm} to shut down",
                clock=self._clock,
                target=str(vm),
            )

    def _stopped(self, vm: VmRef) -> bool:
        try:
            return not self._read("isActive", str(vm), lambda conn: self._domain(conn, vm).isActive())
        except NotFound:  # a transient domain is gone once it stopped
            return True

    def power_off(self, vm: VmRef) -> None:
        """Hard power off (``virDomainDestroy``); no-op when the domain is not running."""

        def destroy(conn: Any) -> bool:
            dom = self._domain(conn, vm)
            if not dom.isActive():
                return False
            dom.destroy()
            return True

        if self._write("power_off", str(vm), destroy):
            log.info("vm_powered_off", site=self.site, vm=vm.name)

    def reboot_guest(self, vm: VmRef) -> None:
        """Ask the guest to reboot: through the agent when it answers, else the ACPI power button."""
        lv = self._lv

        def reboot(conn: Any) -> str:
            dom = self._domain(conn, vm)
            if dom.state()[0] not in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED):
                raise OperationRefused("the domain is not running", target=str(vm), code="invalid_state")
            if Capability.GUEST_EXEC in self.capabilities and self._ping(dom):
                try:
                    dom.reboot(lv.VIR_DOMAIN_REBOOT_GUEST_AGENT)
                    return "agent"
                except lv.libvirtError as exc:  # e.g. no logind in the guest (GUEST-LAB pitfall 4)
                    log.warning(
                        "vm_reboot_agent_failed", site=self.site, vm=vm.name, code=exc.get_error_code()
                    )
            dom.reboot(lv.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
            return "acpi"

        via = self._write("reboot_guest", str(vm), reboot)
        log.info("vm_reboot_requested", site=self.site, vm=vm.name, via=via)

    # ------------------------------------------------------------------ guest agent

    def guest_ping(self, vm: VmRef) -> bool:
        self._require(Capability.GUEST_EXEC)
        return self._read("guest_ping", str(vm), lambda conn: self._ping(self._domain(conn, vm)))

    def guest_exec(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` through qemu-ga ``guest-exec`` and wait (bounded) for it to exit."""
        self._require(Capability.GUEST_EXEC)
        if not argv:
            raise OperationRefused("guest_exec needs a program to run", target=str(vm), code="invalid_argv")
        environment = {"PATH": GUEST_PATH, **(env or {})}
        arguments: dict[str, Any] = {
            "path": argv[0],
            "arg": list(argv[1:]),
            "capture-output": True,
            "env": [f"{key}={value}" for key, value in environment.items()],
        }
        if stdin is not None:
            arguments["input-data"] = base64.b64encode(stdin.encode()).decode()
        started = self._clock.monotonic()
        pid = self._spawn(vm, arguments)
        try:
            status = self._wait_exit(vm, pid, timeout=timeout, what=f"{argv[0]} (pid {pid}) to exit")
        except ProviderTimeout:
            self._kill_quietly(vm, pid)
            raise
        return ExecResult(
            exit_code=status.get("exitcode") if "signal" not in status else None,
            stdout=_decode(status.get("out-data")),
            stderr=_decode(status.get("err-data")),
            signal=status.get("signal"),
            stdout_truncated=bool(status.get("out-truncated")),
            stderr_truncated=bool(status.get("err-truncated")),
            duration_s=round(self._clock.monotonic() - started, 3),
        )

    def _agent(self, dom: Any, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        import libvirt_qemu  # part of libvirt-python; imported lazily like libvirt

        request = {"execute": command, **({"arguments": dict(arguments)} if arguments is not None else {})}
        seconds = max(1, math.ceil(self.settings.agent_timeout))
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), seconds, 0)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() != self._lv.VIR_ERR_INTERNAL_ERROR:
                raise
            # qemu-ga answered with an error (e.g. guest-exec: no such program): the guest said no
            raise OperationRefused(
                f"guest agent refused {command}: {exc.get_error_message()}",
                target=dom.name(),
                code="agent_command_failed",
            ) from exc
        return json.loads(reply)["return"]

    def _ping(self, dom: Any) -> bool:
        """True when qemu-ga answers ``guest-ping`` within ``agent_timeout``; never raises for agent trouble."""
        if Capability.GUEST_EXEC not in self.capabilities or not dom.isActive():
            return False
        try:
            self._agent(dom, "guest-ping")
        except OperationRefused:
            return False
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN:
                raise
            return False
        return True

    def _spawn(self, vm: VmRef, arguments: Mapping[str, Any]) -> int:
        return int(
            self._write(
                "guest_exec",
                str(vm),
                lambda conn: self._agent(self._domain(conn, vm), "guest-exec", arguments)["pid"],
            )
        )

    def _wait_exit(self, vm: VmRef, pid: int, *, timeout: float, what: str) -> dict[str, Any]:
        """Poll ``guest-exec-status`` (not retried: qemu-ga forgets a process once it reported its exit)."""

        def exited() -> dict[str, Any] | None:
            status = self._write(
                "guest_exec_status",
                str(vm),
                lambda conn: self._agent(self._domain(conn, vm), "guest-exec-status", {"pid": pid}),
            )
            return status if status.get("exited") else None

        return wait_until(exited, timeout=timeout, interval=0.2, what=what, clock=self._clock, target=str(vm))

    def _kill_quietly(self, vm: VmRef, pid: int) -> None:
        """qemu-ga has no 'kill' command: best effort, SIGKILL the timed-out process and its descendants
        with a shell in the guest, then collect its status so qemu-ga forgets it."""
        arguments = {
            "path": "/bin/sh",
            "arg": ["-c", KILL_TREE, "kill-tree", str(pid)],
            "env": [f"PATH={GUEST_PATH}"],
        }
        try:
            killer = self._spawn(vm, arguments)
            self._wait_exit(vm, killer, timeout=30, what=f"kill of pid {pid}")
            self._wait_exit(vm, pid, timeout=10, what=f"pid {pid} to die")
        except ProviderError as exc:
            log.warning("guest_exec_kill_failed", site=self.site, vm=vm.name, pid=pid, code=exc.code)
        else:
            log.info("guest_exec_killed", site=self.site, vm=vm.name, pid=pid)


#: Stop a process, kill its descendants (parents from /proc/*/status, read with builtins only: a
#: fork per process takes seconds under TCG), then kill it. POSIX sh (dash, busybox, bash).
KILL_TREE = """
kill_tree() {
  local d key value parent
  kill -STOP "$1" 2>/dev/null
  for d in /proc/[0-9]*; do
    parent=
    [ -r "$d/status" ] || continue
    while read -r key value; do
      if [ "$key" = "PPid:" ]; then parent=$value; break; fi
    done < "$d/status"
    if [ "$parent" = "$1" ]; then kill_tree "${d#/proc/}"; fi
  done
  kill -KILL "$1" 2>/dev/null
}
kill_tree "$1"
"""


def _decode(data: str | None) -> str:
    return base64.b64decode(data).decode("utf-8", errors="replace") if data else ""


# ============================================================================================
# Entry point
# ============================================================================================

_handler_lock = threading.Lock()
_handler_registered = False


def _silence_libvirt_stderr(libvirt: Any) -> None:
    """libvirt prints every error (e.g. each agent poll while the agent boots) to stderr unless a
    handler is registered (GUEST-LAB pitfall 14). Errors still raise ``libvirtError``; the handler is
    process-wide, registered once."""
    global _handler_registered
    with _handler_lock:
        if not _handler_registered:
            libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
            _handler_registered = True


def open_provider(settings: LibvirtSettings, *, clock: Clock = SYSTEM_CLOCK) -> LibvirtProvider:
    """Connect to ``settings.uri``; libvirt-python is imported here, not at module import."""
    try:
        import libvirt
    except ImportError as exc:
        raise SdkMissing(
            "the libvirt provider needs libvirt-python: pip install 'patchwave[libvirt]'", code="sdk_missing"
        ) from exc
    _silence_libvirt_stderr(libvirt)
    provider = LibvirtProvider(settings, libvirt, clock=clock)
    log.info("provider_connected", site=settings.site, uri=settings.uri, driver=provider._driver)
    return provider
