"""Domain and snapshot XML of the libvirt adapter (pure: strings in, values out).

Tags
    Tags and labels live in the domain's ``<metadata>`` under our namespace (``tag_namespace``)::

        <pw:tags xmlns:pw="https://patchwave.dev/xmlns/tags/1">
          <pw:tag>web</pw:tag><pw:label key="ring">canary</pw:label>
        </pw:tags>

    :meth:`providers.libvirt.LibvirtProvider.write_tags` writes them (adapter-specific, not part of
    the Protocol).

Agent channel
    :func:`agent_channel_state` reads the qemu-ga virtio channel: ``None`` when the domain has none
    configured (a static fact: the domain cannot run agent commands), else its live state.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from providers.base import SnapshotInfo, VmRef

TAG_PREFIX = "pw"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
LIBOSINFO_NS = "http://libosinfo.org/xmlns/libvirt/domain/1.0"


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
