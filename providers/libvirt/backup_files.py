"""The files of libvirt backups: directory layout, manifest, checksums, ``qemu-img``.

Layout under ``backup_dir`` (one directory per backup, named by its ownership, see
:meth:`providers.backups.BackupOwnership.name`)::

    <backup_dir>/pw-bk-web-1-0123456789ab/
        ownership.txt     written first: the directory is ours (an unfinished backup if alone)
        vda.qcow2 ...     one full qcow2 per disk (virDomainBackupBegin, push mode)
        manifest.json     written last, atomically: the backup is complete
    <backup_dir>/.copies/pw-rv-web-1-.../   a restore-verify copy: ownership.txt, overlays, console.log

``manifest.json``: ownership text, VM (site, id, name), created_at, the source's inactive domain XML
(never the secure one: no passwords), and per disk its target, file, virtual size, size on disk and
sha256. The backup's checksum is the sha256 of the sorted ``"<target> <sha256>"`` lines. ``qemu-img
check`` runs after the job and again before every restore; a mismatching sha256 or a failed check
is :class:`BackupCorrupt` (the backup must not be trusted).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from providers.errors import NotFound, OperationRefused, ProviderTimeout

OWNERSHIP_FILE = "ownership.txt"
MANIFEST_FILE = "manifest.json"
COPIES_DIR = ".copies"
_CHUNK = 4 * 1024 * 1024


class BackupCorrupt(OperationRefused):
    """A backup file does not match its manifest or fails ``qemu-img check``: do not trust it."""


@dataclass(frozen=True, slots=True)
class DiskFile:
    target: str
    file: str  # name inside the backup directory
    virtual_size: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    ownership: str
    vm_site: str
    vm_id: str
    vm_name: str
    created_at: str
    domain_xml: str
    disks: tuple[DiskFile, ...]

    @property
    def checksum(self) -> str:
        lines = "".join(f"{d.target} {d.sha256}\n" for d in sorted(self.disks, key=lambda d: d.target))
        return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(d.size for d in self.disks)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    tmp = directory / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(directory / MANIFEST_FILE)


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of a complete backup, ``None`` when there is none (or it cannot be read)."""
    try:
        data: dict[str, Any] = json.loads((directory / MANIFEST_FILE).read_text())
        disks = tuple(DiskFile(**d) for d in data.pop("disks"))
        return Manifest(**data, disks=disks)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def read_ownership(directory: Path) -> str:
    try:
        return (directory / OWNERSHIP_FILE).read_text().strip()
    except OSError:
        return ""


def claim(directory: Path, ownership: str) -> None:
    """Create ``directory`` and record who it belongs to before anything else goes in. Mode 0711:
    QEMU, when it runs as its own user, must reach the files libvirt creates (0600) and labels for
    it, but nobody can list the directory."""
    directory.mkdir(mode=0o711, parents=True, exist_ok=True)
    (directory / OWNERSHIP_FILE).write_text(ownership + "\n")


def remove_tree(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _qemu_img(args: list[str], *, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["qemu-img", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise OperationRefused("qemu-img is not installed on this machine", code="qemu_img_missing") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProviderTimeout(
            f"qemu-img {what} took longer than {timeout:.0f}s", code="qemu_img_timeout"
        ) from exc


def check_image(path: Path, *, timeout: float) -> tuple[int, int]:
    """``qemu-img check``: (virtual size, size on disk); :class:`BackupCorrupt` when it is not clean
    (corruptions or check errors; leaked clusters are only wasted space and pass)."""
    if not path.is_file():
        raise BackupCorrupt(f"backup file {path} is missing", target=str(path), code="backup_corrupt")
    done = _qemu_img(["check", "-f", "qcow2", "--output=json", str(path)], timeout=timeout, what="check")
    try:
        report = json.loads(done.stdout or "{}")
    except ValueError:
        report = {}
    if done.returncode not in (0, 3) or report.get("corruptions") or report.get("check-errors"):
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise BackupCorrupt(
            f"qemu-img check of {path.name} failed: {detail[0]}", target=str(path), code="backup_corrupt"
        )
    info = _qemu_img(["info", "-f", "qcow2", "--output=json", str(path)], timeout=timeout, what="info")
    sizes = json.loads(info.stdout or "{}")
    return int(sizes.get("virtual-size") or 0), int(sizes.get("actual-size") or path.stat().st_size)


def verify_disk(directory: Path, disk: DiskFile, *, timeout: float) -> None:
    """The file still has the sha256 of the manifest and passes ``qemu-img check``."""
    path = directory / disk.file
    if not path.is_file():
        raise BackupCorrupt(f"backup file {path} is missing", target=str(path), code="backup_corrupt")
    actual = sha256_of(path)
    if actual != disk.sha256:
        raise BackupCorrupt(
            f"backup file {path.name} changed since the backup: sha256 {actual[:16]}..., "
            f"manifest says {disk.sha256[:16]}...",
            target=str(path),
            code="backup_corrupt",
        )
    check_image(path, timeout=timeout)


def create_overlay(backing: Path, overlay: Path, *, timeout: float) -> None:
    """A qcow2 overlay on ``backing`` (which QEMU then opens read-only)."""
    done = _qemu_img(
        ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(backing), str(overlay)],
        timeout=timeout,
        what="create",
    )
    if done.returncode != 0:
        raise OperationRefused(
            f"qemu-img create {overlay.name} failed: {done.stderr.strip()}", code="overlay_failed"
        )


def backup_directory(root: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise NotFound(f"{name!r} is not a backup of this directory", target=str(root), code="not_found")
    return root / name
