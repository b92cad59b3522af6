"""Lab guests as libvirt domains: XML, golden saved states, restore, removal.

Domain (GUEST-LAB.md §2, pitfalls 1-3, 8): ``<domain type='qemu'>`` (TCG), 2 vCPUs, direct kernel
boot with the fast initrd, a qcow2 overlay disk, a virtio-serial channel for qemu-guest-agent.
Networking is QEMU's slirp passed through ``<qemu:commandline>`` (libvirt 9.0 ignores
``<portForward>`` and rejects passt): ``restrict=off`` so the guest reaches the host's loopback as
10.0.2.2, host forwards bound to 127.0.0.1 only, and the NIC at PCI ``addr=0x10`` so it does not
take libvirt's slot 2.

Golden states: each guest *slot* is booted cold once, waited on until systemd has finished
starting, and saved with ``virDomainSave``. A guest is then a qcow2 overlay on the slot's golden
overlay plus ``virDomainRestoreFlags`` with an XML that names the new overlay, the new forwarded
ports and the new console log (libvirt's ABI check allows those changes). A save file keeps its
domain's UUID, which libvirt refuses to change at restore, so there is one golden per slot and
guests of one lab never share a UUID.

Tags live in the domain ``<metadata>`` as::

    <pw:tags xmlns:pw="https://patchwave.dev/xmlns/tags/1"><tag>lab</tag><label key="ring">canary</label></pw:tags>

and a second element (namespace :data:`LAB_NS`) records which lab state dir owns the domain, so
``down`` can find leftovers even when ``lab.json`` was never written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import structlog

from patchwave_lab.command import run_command
from patchwave_lab.errors import LabError
from patchwave_lab.guest_clock import agent_exec, wait_agent
from patchwave_lab.image import GuestImage
from providers.errors import SdkMissing

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - exercised only without the extra installed
    libvirt = None
    libvirt_qemu = None

log = structlog.get_logger(__name__)

#: Bump when the XML below changes: it is part of the golden-state cache key.
DOMAIN_VERSION = "2"
MEMORY_MIB = 768
VCPUS = 2
TAGS_NS = "https://patchwave.dev/xmlns/tags/1"
LAB_NS = "https://patchwave.dev/xmlns/lab/1"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
#: ``systemd.show_status=auto``: quiet, unless a start or stop job takes long — then the console log
#: names it ("A stop job is running for ..."), which is what a reboot that hangs needs to be explained.
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=auto"

ET.register_namespace("qemu", QEMU_NS)
ET.register_namespace("pw", TAGS_NS)
ET.register_namespace("pwlab", LAB_NS)


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """What differs between guests (and between a golden state and the guests restored from it)."""

    name: str
    disk: Path
    ssh_port: int
    health_port: int
    console_log: Path
    owner: str  # the lab state dir that owns the domain
    tags: tuple[str, ...] = ("lab",)
    labels: Mapping[str, str] = field(default_factory=dict)


def connect(uri: str) -> Any:
    """Open a libvirt connection; silence libvirt's stderr printing (pitfall 14)."""
    if libvirt is None:
        raise SdkMissing("the lab needs libvirt-python: pip install 'patchwave[libvirt]'", code="sdk_missing")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LabError(
            f"cannot connect to {uri}: {exc.get_error_message()} (is libvirtd running? see .ci/setup-libvirt.sh)",
            code="libvirt",
        ) from exc


# --------------------------------------------------------------------------------------------
# XML
# --------------------------------------------------------------------------------------------


def _metadata(spec: GuestSpec) -> str:
    tags = "".join(f"<tag>{escape(t)}</tag>" for t in spec.tags)
    labels = "".join(f"<label key={quoteattr(k)}>{escape(v)}</label>" for k, v in spec.labels.items())
    return (
        f'<pw:tags xmlns:pw="{TAGS_NS}">{tags}{labels}</pw:tags>'
        f'<pwlab:lab xmlns:pwlab="{LAB_NS}" owner={quoteattr(spec.owner)}/>'
    )


def _netdev(spec: GuestSpec) -> str:
    return (
        f"user,id=pwnet0,net=10.0.2.0/24,restrict=off,"
        f"hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22,hostfwd=tcp:127.0.0.1:{spec.health_port}-:8080"
    )


def domain_xml(spec: GuestSpec, image: GuestImage) -> str:
    return f"""<domain type='qemu' xmlns:qemu='{QEMU_NS}'>
  <name>{escape(spec.name)}</name>
  <metadata>{_metadata(spec)}</metadata>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>{VCPUS}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{KERNEL_CMDLINE}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(spec.disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='virtio-serial' index='0'/>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <serial type='file'>
      <source path={quoteattr(str(spec.console_log))}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={quoteattr(str(spec.console_log))}/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='{_netdev(spec)}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=pwnet0,bus=pci.0,addr=0x10,mac=52:54:00:70:77:01'/>
  </qemu:commandline>
</domain>
"""


def retarget(saved_xml: str, spec: GuestSpec) -> str:
    """Rewrite a saved state's XML for ``spec``: disk, forwarded ports, console log, metadata."""
    root = ET.fromstring(saved_xml)
    if root.findtext("name") != spec.name:
        raise LabError(f"saved state is for {root.findtext('name')!r}, not {spec.name!r}", code="golden")
    source = root.find("devices/disk[@device='disk']/source")
    if source is None:
        raise LabError("saved state has no disk source", code="golden")
    source.set("file", str(spec.disk))
    for chardev in root.iterfind("devices/serial/source"):
        chardev.set("path", str(spec.console_log))
    for chardev in root.iterfind("devices/console/source"):
        chardev.set("path", str(spec.console_log))
    args = root.findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    for flag, value in itertools.pairwise(args):
        if flag.get("value") == "-netdev":
            value.set("value", _netdev(spec))
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    metadata.clear()
    for element in ET.fromstring(f"<m>{_metadata(spec)}</m>"):
        metadata.append(element)
    return ET.tostring(root, encoding="unicode")


def owner_of(dom: Any) -> str:
    """The lab state dir recorded in a domain's metadata, or ``""`` when it is not a lab domain."""
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, LAB_NS, 0)
    except libvirt.libvirtError:
        return ""
    return ET.fromstring(text).get("owner", "")


# --------------------------------------------------------------------------------------------
# Overlays, golden states, restore, removal
# --------------------------------------------------------------------------------------------


def create_overlay(backing: Path, overlay: Path) -> Path:
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)
    run_command(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing), str(overlay)])
    return overlay


def golden_key(conn: Any, image: GuestImage) -> str:
    parts = [image.key, DOMAIN_VERSION, str(MEMORY_MIB), str(VCPUS), str(conn.getLibVersion())]
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Golden:
    dir: Path
    state: Path  # the virDomainSave file
    disk: Path  # the golden overlay (read-only once saved)
    seconds: float  # time to create it; 0.0 when it came from the cache
    cached: bool


def ensure_golden(conn: Any, image: GuestImage, spec: GuestSpec, *, boot_timeout: float = 180.0) -> Golden:
    """Return the golden state for ``spec.name``, booting and saving it first when missing.

    The caller holds the cache lock. The golden's disk and console log live in the cache next to
    the image; its ports are ``spec``'s (every restore replaces them).
    """
    gdir = image.dir / "golden" / golden_key(conn, image) / spec.name
    state, disk = gdir / "state.save", gdir / "disk.qcow2"
    if (gdir / "golden.json").exists():
        return Golden(gdir, state, disk, 0.0, cached=True)
    started = time.monotonic()
    for stale in gdir.parent.parent.glob("*"):  # goldens of an older libvirt or domain XML
        if stale != gdir.parent:
            shutil.rmtree(stale, ignore_errors=True)
    gdir.mkdir(parents=True, exist_ok=True)
    create_overlay(image.disk, disk)
    golden_spec = replace(spec, disk=disk, console_log=gdir / "console.log")
    (gdir / "console.log").unlink(missing_ok=True)
    dom = _call(lambda: conn.createXML(domain_xml(golden_spec, image), 0), "start golden domain")
    try:
        wait_agent(dom, timeout=boot_timeout, console_log=gdir / "console.log")
        result = agent_exec(dom, ["systemctl", "is-system-running", "--wait"], timeout=120)
        if result.stdout.strip() not in ("running", "degraded"):
            raise LabError(f"golden guest did not finish booting: {result.stdout.strip()!r}", code="golden")
        _call(lambda: dom.save(str(state)), "save golden state")
    except BaseException:
        destroy(conn, spec.name)
        raise
    seconds = time.monotonic() - started
    info = {"name": spec.name, "uuid": dom.UUIDString(), "seconds": round(seconds, 1), "image": image.key}
    (gdir / "golden.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("lab_golden_created", name=spec.name, seconds=round(seconds, 1))
    return Golden(gdir, state, disk, seconds, cached=False)


def restore(conn: Any, golden: Golden, spec: GuestSpec) -> Any:
    """Start ``spec`` from ``golden`` (running) and make it a persistent domain."""
    xml = retarget(_call(lambda: conn.saveImageGetXMLDesc(str(golden.state), 0), "read golden XML"), spec)
    create_overlay(golden.disk, spec.disk)
    spec.console_log.unlink(missing_ok=True)
    _call(
        lambda: conn.restoreFlags(str(golden.state), xml, libvirt.VIR_DOMAIN_SAVE_RUNNING), "restore golden"
    )
    dom = conn.lookupByName(spec.name)
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
    _call(lambda: conn.defineXML(dom.XMLDesc(flags)), "define restored domain")
    return dom


def destroy(conn: Any, name: str) -> bool:
    """Stop and undefine ``name`` with its snapshot metadata. False when it did not exist."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise LabError(f"cannot look up {name}: {exc.get_error_message()}", code="libvirt") from exc
    if dom.isActive():
        _call(dom.destroy, f"destroy {name}")
    try:
        persistent = dom.isPersistent()
    except libvirt.libvirtError:
        return True  # transient: gone with destroy
    if persistent:
        flags = libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        try:
            dom.undefineFlags(flags | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:  # a driver without checkpoints
                raise LabError(f"undefine {name} failed: {exc.get_error_message()}", code="libvirt") from exc
            _call(lambda: dom.undefineFlags(flags), f"undefine {name}")
    return True


def _call(fn: Any, what: str) -> Any:
    try:
        return fn()
    except libvirt.libvirtError as exc:
        raise LabError(f"{what} failed: {exc.get_error_message()}", code="libvirt") from exc
