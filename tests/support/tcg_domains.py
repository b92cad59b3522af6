"""Disposable TCG domains on the real ``qemu:///system`` (tiny, diskless in practice: an empty qcow2
each), for tests that need what libvirt's test driver cannot do — state shared between processes
(a killed run resumed by another process), the backup job API. Destroyed and undefined afterwards.

Without libvirtd or QEMU the test skips saying how to enable it — and fails under ``CI=true``, where
``.ci/setup-libvirt.sh`` has installed and started both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

URI = "qemu:///system"
_DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <description>patchwave test domain; safe to destroy</description>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>{features}
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>{channel}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def domain_xml(
    name: str,
    emulator: str,
    disk: Path | str,
    *,
    memory_mib: int = 48,
    acpi: bool = False,
    agent_channel: bool = False,
) -> str:
    """A TCG domain booting ``disk`` (``acpi``: the ACPI feature; ``agent_channel``: the
    qemu-guest-agent virtio channel)."""
    return _DOMAIN_XML.format(
        name=name, emulator=emulator, disk=disk, memory_mib=memory_mib,
        features="\n  <features><acpi/></features>" if acpi else "",
        channel="\n    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
        if agent_channel else "",
    )  # fmt: skip


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: run .ci/setup-libvirt.sh as root before the tests)", pytrace=False)
    pytest.skip(f"{reason}; run .ci/setup-libvirt.sh as root to enable this test")


@contextmanager
def disposable_domains(
    workdir: Path, prefix: str, count: int = 2, *, disk_size: str = "32M", **xml: Any
) -> Iterator[dict[str, str]]:
    """name -> uuid of ``count`` running TCG domains named ``<prefix>-<tag>-<n>`` (``xml``: the
    keywords of :func:`domain_xml`), each on an empty qcow2 of ``disk_size``."""
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    emulator, qemu_img = shutil.which("qemu-system-x86_64"), shutil.which("qemu-img")
    if not emulator or not qemu_img:
        unavailable("qemu-system-x86_64 / qemu-img are not installed")
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        unavailable(f"libvirtd does not answer on {URI}: {exc.get_error_message()}")
    tag = uuid.uuid4().hex[:8]
    made = []
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(1, count + 1):
            disk = workdir / f"disk{index}.qcow2"
            subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(disk), disk_size], check=True)
            dom = conn.defineXML(domain_xml(f"{prefix}-{tag}-{index}", emulator, disk, **xml))
            made.append(dom)
            dom.create()
        yield {dom.name(): dom.UUIDString() for dom in made}
    finally:
        for dom in made:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            )
        conn.close()
