"""XML for libvirt backups (pure: strings in, strings out).

* :func:`backup_disks` picks the disks a full backup copies: ``<disk device='disk'>`` with a file or
  block source (CD-ROMs, floppies and source-less disks are left out).
* :func:`backup_xml` is the ``<domainbackup mode='push'>`` document: each chosen disk written as a
  new qcow2 file (the whole backing chain flattened into it), every other disk ``backup='no'``.
* :func:`restored_domain_xml` turns the source's inactive domain XML (kept in the backup manifest)
  into a *transient, isolated* copy: a new name and no UUID; each backed-up disk replaced by an
  overlay whose backing file is the backup (so the backup is never written); every other disk,
  every ``<interface>``, ``<hostdev>``, ``<redirdev>``, ``<graphics>`` and any ``<qemu:commandline>``
  (the lab passes its NIC that way) removed, so the copy has no network at all and shares nothing
  with the source; file-backed serial consoles written to the copy's own log; our ownership in
  ``<metadata>``. The kernel/initrd of a direct kernel boot are kept as they are (they live on the
  host, not in the disks: :func:`boot_files` lists them so a restore can say they are missing).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

BACKUP_NS = "https://patchwave.dev/xmlns/backup/1"
BACKUP_PREFIX = "pwbackup"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
_REMOVED_DEVICES = ("interface", "hostdev", "redirdev", "graphics")


@dataclass(frozen=True, slots=True)
class Disk:
    target: str  # the guest device name (vda)
    source: str  # the file or block device it reads now
    format: str  # the driver type (qcow2, raw)


def backup_disks(domain_xml: str) -> tuple[Disk, ...]:
    root = ET.fromstring(domain_xml)
    disks = []
    for disk in root.iterfind("devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        path = None if source is None else source.get("file") or source.get("dev")
        if disk.get("device", "disk") != "disk" or target is None or not path:
            continue
        driver = disk.find("driver")
        disks.append(
            Disk(target.get("dev", ""), path, driver.get("type", "raw") if driver is not None else "raw")
        )
    return tuple(disks)


def backup_xml(domain_xml: str, files: Mapping[str, str]) -> str:
    """Push-mode backup of the disks in ``files`` (target -> new qcow2 path); others not backed up."""
    lines = []
    for target in _targets(domain_xml):
        if target in files:
            lines.append(
                f"<disk name={quoteattr(target)} backup='yes' type='file'>"
                f"<target file={quoteattr(files[target])}/><driver type='qcow2'/></disk>"
            )
        else:
            lines.append(f"<disk name={quoteattr(target)} backup='no'/>")
    return f"<domainbackup mode='push'><disks>{''.join(lines)}</disks></domainbackup>"


def _targets(domain_xml: str) -> list[str]:
    root = ET.fromstring(domain_xml)
    return [t.get("dev", "") for t in root.iterfind("devices/disk/target") if t.get("dev")]


def backup_targets(backup_xml_text: str) -> tuple[str, ...]:
    """The target files of a running backup job (``virDomainBackupGetXMLDesc``)."""
    root = ET.fromstring(backup_xml_text)
    return tuple(t.get("file", "") for t in root.iterfind("disks/disk/target") if t.get("file"))


def boot_files(domain_xml: str) -> tuple[str, ...]:
    """Host files a direct kernel boot needs (kernel, initrd, dtb), which a disk backup does not hold."""
    root = ET.fromstring(domain_xml)
    return tuple(
        text for tag in ("kernel", "initrd", "dtb") if (text := (root.findtext(f"os/{tag}") or "").strip())
    )


def ownership_xml(text: str) -> str:
    return f"<{BACKUP_PREFIX}:backup xmlns:{BACKUP_PREFIX}={quoteattr(BACKUP_NS)}>{escape(text)}</{BACKUP_PREFIX}:backup>"


def ownership_text(metadata_xml: str) -> str:
    """The text of our ``<metadata>`` element as ``virDomainGetMetadata`` returns it."""
    return (ET.fromstring(metadata_xml).text or "").strip()


def restored_domain_xml(
    domain_xml: str, *, name: str, overlays: Mapping[str, str], console_log: str, ownership: str
) -> str:
    """The isolated, transient copy of ``domain_xml`` (see the module docstring)."""
    root = ET.fromstring(domain_xml)
    root.find("name").text = name  # type: ignore[union-attr]
    for tag in ("uuid", "metadata", "description", "title"):
        for element in root.findall(tag):
            root.remove(element)
    metadata = ET.SubElement(root, "metadata")
    metadata.append(ET.fromstring(ownership_xml(ownership)))
    devices = root.find("devices")
    if devices is not None:
        _copy_devices(devices, overlays, console_log)
    for element in root.findall(f"{{{QEMU_NS}}}commandline"):
        root.remove(element)
    return ET.tostring(root, encoding="unicode")


def _copy_devices(devices: ET.Element, overlays: Mapping[str, str], console_log: str) -> None:
    for element in list(devices):
        if element.tag in _REMOVED_DEVICES:
            devices.remove(element)
        elif element.tag == "disk":
            target = element.find("target")
            dev = target.get("dev", "") if target is not None else ""
            if element.get("device", "disk") == "disk" and dev in overlays:
                _point_at(element, overlays[dev])
            else:
                devices.remove(element)
        elif element.tag in ("serial", "console") and element.get("type") == "file":
            source = element.find("source")
            if source is not None:
                source.set("path", console_log)
        elif element.tag == "channel":
            for source in element.findall("source"):  # libvirt makes a fresh socket path per domain
                element.remove(source)


def _point_at(disk: ET.Element, overlay: str) -> None:
    disk.set("type", "file")
    for child in disk.findall("source") + disk.findall("backingStore"):
        disk.remove(child)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.SubElement(disk, "driver", name="qemu")
    driver.set("type", "qcow2")
    source = ET.Element("source", file=overlay)
    disk.insert(list(disk).index(driver) + 1, source)
