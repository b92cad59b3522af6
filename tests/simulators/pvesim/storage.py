"""Storages and the backup archives on them (pve-storage behaviour, read from its source).

* A backup archive is named ``vzdump-<qemu|lxc>-<vmid>-<YYYY_MM_DD-HH_MM_SS>.<vma|tar>[.<zst|gz|lzo>]``
  from the job's start time in local time (``PVE::VZDump::exec_backup_task``); the volume id is
  ``<storage>:backup/<name>``. Two backups of one guest started in the same second get the same
  name, and the second one replaces the first, as on PVE.
* Listing (``GET .../storage/{storage}/content?content=backup``, ``Plugin::get_subdir_files``):
  ``volid``, ``format`` (``vma.zst``), ``size``, ``ctime`` (parsed back from the name), ``vmid``,
  ``subtype`` (``qemu``/``lxc``), ``content`` (``backup``), ``notes`` (the *first line* of the notes
  file) and ``protected`` (only when set). ``subtype`` and ``content`` are not declared in the schema.
* Notes come from vzdump's ``notes-template``: ``\\\\`` and ``\\n`` are the only escapes (anything
  else is refused with a warning and no notes), then ``{{cluster}}``, ``{{guestname}}``,
  ``{{node}}``, ``{{vmid}}`` are replaced (``VZDump.pm``'s ``$generate_notes``).
* A storage that is not ``shared`` has its own volumes per node.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.simulators.pvesim.state import ApiError, Cluster

GIB = 1024**3
COMPRESSION_SUFFIX = {"0": "", "1": ".lzo", "lzo": ".lzo", "gzip": ".gz", "zstd": ".zst"}


@dataclass
class Volume:
    """One backup archive: what a restore gets back (config, files, scripts of the guest)."""

    volid: str
    node: str  # where it lives (for storages that are not shared)
    vmid: int
    kind: str  # "qemu" | "lxc"
    ctime: int
    size: int
    format: str
    notes: str = ""
    protected: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    scripts: list[dict[str, Any]] = field(default_factory=list)
    guest_name: str = ""
    memory: int = 2048
    agent: bool = True
    nets: dict[str, str] = field(default_factory=dict)


@dataclass
class Storage:
    name: str
    type: str  # dir | zfspool | nfs
    content: tuple[str, ...]
    shared: bool = False
    total: int = 200 * GIB
    base_used: int = 2 * GIB
    full: bool = False  # injected: writes fail with ENOSPC
    volumes: dict[str, Volume] = field(default_factory=dict)

    def used(self) -> int:
        return self.base_used + sum(v.size for v in self.volumes.values())

    def avail(self) -> int:
        return 0 if self.full else max(0, self.total - self.used())

    def on(self, node: str) -> list[Volume]:
        return [v for v in self.volumes.values() if self.shared or v.node == node]


def storages(cl: Cluster) -> dict[str, Storage]:
    return cl.storages  # type: ignore[no-any-return]


def storage(cl: Cluster, name: str) -> Storage:
    found = storages(cl).get(name)
    if found is None:
        raise ApiError(500, f"storage '{name}' does not exist")
    return found


def archive_name(kind: str, vmid: int, started: int, compress: str) -> str:
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(started))
    container = "vma" if kind == "qemu" else "tar"
    return f"vzdump-{kind}-{vmid}-{stamp}.{container}{COMPRESSION_SUFFIX[compress]}"


def generate_notes(template: str, info: dict[str, str]) -> str:
    """``$generate_notes``: unescape ``\\\\``/``\\n`` (others are an error), then the variables."""
    if "\n" in template:
        raise ValueError("contains a line feed")
    bad = [m.group(1) for m in re.finditer(r"\\(.)", template) if m.group(1) not in ("n", "\\")]
    if bad:
        raise ValueError(f"found unknown escape sequence '\\{bad[0]}'")
    text = re.sub(r"\\(.)", lambda m: "\\" if m.group(1) == "\\" else "\n", template)
    return re.sub(r"\{\{(cluster|guestname|node|vmid)\}\}", lambda m: info[m.group(1)], text)


def find_volume(cl: Cluster, node: str, volid: str) -> tuple[Storage, Volume]:
    name, _, rest = volid.partition(":")
    if not rest:
        raise ApiError(500, f"unable to parse volume ID '{volid}'")
    store = storage(cl, name)
    volume = store.volumes.get(volid)
    if volume is None or not (store.shared or volume.node == node):
        raise ApiError(500, f"volume '{volid}' does not exist")
    return store, volume


def content_entry(volume: Volume) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "volid": volume.volid,
        "format": volume.format,
        "size": volume.size,
        "ctime": volume.ctime,
        "vmid": volume.vmid,
        "subtype": volume.kind,
        "content": "backup",
    }
    if volume.notes:
        entry["notes"] = volume.notes.split("\n", 1)[0]
    if volume.protected:
        entry["protected"] = 1
    return entry


def config_text(volume: Volume) -> str:
    """The guest config inside the archive (``qemu-server.conf``): description as ``#`` lines."""
    lines = [f"#{line}" for line in str(volume.config.get("description", "")).splitlines()]
    for key, value in volume.config.items():
        if key not in ("description", "digest", "lock", "parent"):
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def default_storages() -> dict[str, Storage]:
    return {
        "local": Storage("local", "dir", ("backup", "iso", "vztmpl"), total=100 * GIB),
        "local-zfs": Storage("local-zfs", "zfspool", ("images", "rootdir"), total=400 * GIB),
        "backup-nfs": Storage("backup-nfs", "nfs", ("backup",), shared=True, total=2000 * GIB),
    }
