"""Backups of libvirt (QEMU) domains: the backup job to qcow2 files, restore-verify by a transient copy.

Backup (Capability.BACKUP: the QEMU driver on this machine with ``backup_dir`` set)
    ``virDomainBackupBegin`` in push mode writes each disk of a *running* domain, its whole backing
    chain flattened, into a new qcow2 file in the backup's directory (libvirt 9.0 cannot back up a
    stopped domain: refused, code ``not_running``; internal snapshots on the disks are no
    obstacle, and are not part of the backup). The job is polled (``virDomainGetJobInfo``) until it
    ends, bounded by ``timeout``, and its completed statistics must say ``COMPLETED`` for a backup
    operation. Then ``qemu-img check`` and a sha256 per file, and the manifest (see
    :mod:`providers.libvirt.backup_files`). A second call with the same ownership returns the
    complete backup; finds our unfinished directory with its job still running and waits for it; or
    finds it abandoned and starts again.

Restore-verify (Capability.BACKUP_VERIFY)
    Each disk file is checked again (sha256 against the manifest, ``qemu-img check``): a corrupted
    backup is refused with code ``backup_corrupt`` before anything boots. The copy is a *transient*
    domain made from the manifest's domain XML (:func:`~providers.libvirt.backup_xml.restored_domain_xml`):
    qcow2 overlays on the backup files, **no network interface**, our ownership in its metadata. It
    is found again by that metadata (and an abandoned copy directory by its ``ownership.txt``).
    Probes run through qemu-guest-agent (the copy boots cold, so its clock is the host's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import structlog

from providers.backups import (
    BackupInfo,
    BackupOwnership,
    RestoreCheck,
    RestoredCopy,
    RestoreProbe,
    detail_of,
    run_probes,
)
from providers.base import VmRef
from providers.errors import NotFound, OperationRefused, ProviderTimeout, ResourceBusy
from providers.libvirt import backup_files as files
from providers.libvirt import backup_xml as xml
from providers.libvirt.agent import GuestAgent
from providers.libvirt.connection import LibvirtSession
from providers.libvirt.settings import LibvirtSettings

log = structlog.get_logger("patchwave.providers.libvirt")

POLL_S = 0.5


class LibvirtBackups:
    def __init__(self, session: LibvirtSession, agent: GuestAgent, settings: LibvirtSettings) -> None:
        self._session, self._agent, self._settings = session, agent, settings
        self._lv, self._clock = session.libvirt, session.clock

    def _root(self, target: str) -> Path:
        root = Path(target) if target else self._settings.backup_dir
        if root is None:
            raise OperationRefused(
                "no backup directory: set backup_dir in the site's provider table", code="no_backup_target"
            )
        return root

    # ------------------------------------------------------------------ backups

    def create(self, vm: VmRef, *, ownership: BackupOwnership, target: str, timeout: float) -> BackupInfo:
        root, text = self._root(target), ownership.to_text()
        directory = root / ownership.name(vm.name)
        manifest = files.read_manifest(directory)
        if manifest is not None and ownership.same_owner(BackupOwnership.from_text(manifest.ownership)):
            return self._info(vm, root, directory, manifest)
        claimed = files.read_ownership(directory)
        if claimed and not ownership.same_owner(BackupOwnership.from_text(claimed)):
            raise OperationRefused(
                f"{directory} exists and is not this step's", target=str(vm), code="name_taken"
            )
        domain_xml, disks = self._running_disks(vm)
        outputs = {d.target: str(directory / f"{d.target}.qcow2") for d in disks}
        if not self._job_writes(vm, set(outputs.values())):  # else: our job from an earlier attempt runs on
            files.remove_tree(directory)
            files.claim(directory, text)
            self._begin(vm, xml.backup_xml(domain_xml, outputs), directory)
            log.info("backup_started", vm=vm.name, directory=str(directory), disks=sorted(outputs))
        try:
            self._wait_job(vm, timeout)
            manifest = self._finish(vm, directory, text, disks, timeout)
        except OperationRefused:  # the job failed or its files are bad: nothing of it is kept
            files.remove_tree(directory)
            raise
        log.info(
            "backup_created",
            vm=vm.name,
            directory=str(directory),
            size=manifest.size,
            checksum=manifest.checksum,
        )
        return self._info(vm, root, directory, manifest)

    def _begin(self, vm: VmRef, document: str, directory: Path) -> None:
        try:
            self._session.write_domain("backup_begin", vm, lambda dom: dom.backupBegin(document, None, 0))
        except OperationRefused:
            files.remove_tree(directory)
            raise

    def _running_disks(self, vm: VmRef) -> tuple[str, tuple[xml.Disk, ...]]:
        def read(dom: Any) -> tuple[bool, str]:
            return bool(dom.isActive()), dom.XMLDesc(0)

        active, domain_xml = self._session.read_domain("backup_disks", vm, read)
        if not active:
            raise OperationRefused(
                f"{vm.name} is not running; libvirt backs up running domains only",
                target=str(vm),
                code="not_running",
            )
        disks = xml.backup_disks(domain_xml)
        if not disks:
            raise OperationRefused(f"{vm.name} has no disk to back up", target=str(vm), code="no_disks")
        return domain_xml, disks

    def _job_writes(self, vm: VmRef, outputs: set[str]) -> bool:
        """True when a backup job writing ``outputs`` runs now; ResourceBusy for any other job."""

        def job(dom: Any) -> tuple[int, str]:
            kind = dom.jobInfo()[0]
            if kind == self._lv.VIR_DOMAIN_JOB_NONE:
                return kind, ""
            try:
                return kind, dom.backupGetXMLDesc(0)
            except self._lv.libvirtError:
                return kind, ""

        kind, running = self._session.read_domain("backup_job", vm, job)
        if kind == self._lv.VIR_DOMAIN_JOB_NONE:
            return False
        if running and set(xml.backup_targets(running)) == outputs:
            return True
        raise ResourceBusy(
            f"{vm.name} runs another job; try again when it ends", target=str(vm), code="job_running"
        )

    def _wait_job(self, vm: VmRef, timeout: float) -> None:
        deadline = self._clock.monotonic() + timeout
        while (
            self._session.read_domain("backup_wait", vm, lambda dom: dom.jobInfo()[0])
            != self._lv.VIR_DOMAIN_JOB_NONE
        ):
            if self._clock.monotonic() >= deadline:
                raise ProviderTimeout(
                    f"backup of {vm.name} still running after {timeout:.0f}s (a retry waits for it)",
                    target=str(vm),
                    code="backup_timeout",
                )
            self._clock.sleep(POLL_S)
        stats = self._session.read_domain(
            "backup_stats", vm, lambda dom: dom.jobStats(self._lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
        )
        if (
            stats.get("operation") != self._lv.VIR_DOMAIN_JOB_OPERATION_BACKUP
            or stats.get("type") != self._lv.VIR_DOMAIN_JOB_COMPLETED
        ):
            reason = (
                stats.get("errmsg") or f"job type {stats.get('type')}, operation {stats.get('operation')}"
            )
            raise OperationRefused(
                f"backup job of {vm.name} did not complete: {reason}", target=str(vm), code="backup_failed"
            )

    def _finish(
        self, vm: VmRef, directory: Path, text: str, disks: Sequence[xml.Disk], timeout: float
    ) -> files.Manifest:
        entries = []
        for disk in disks:
            path = directory / f"{disk.target}.qcow2"
            virtual, size = files.check_image(path, timeout=timeout)
            entries.append(files.DiskFile(disk.target, path.name, virtual, size, files.sha256_of(path)))
        inactive = self._session.read_domain(
            "backup_xml", vm, lambda dom: dom.XMLDesc(self._lv.VIR_DOMAIN_XML_INACTIVE)
        )
        created = self._clock.now().astimezone(UTC).isoformat(timespec="microseconds")  # when it was taken
        manifest = files.Manifest(text, vm.site, vm.id, vm.name, created, inactive, tuple(entries))
        files.write_manifest(directory, manifest)
        return manifest

    def _info(self, vm: VmRef, root: Path, directory: Path, manifest: files.Manifest) -> BackupInfo:
        return BackupInfo(
            vm=vm,
            id=directory.name,
            location=str(directory),
            target=str(root),
            created_at=manifest.created_at,
            size=manifest.size,
            checksum=manifest.checksum,
            description=manifest.ownership,
            detail=detail_of({"disks": ",".join(d.target for d in manifest.disks), "format": "qcow2"}),
        )

    def backups(self, vm: VmRef, *, target: str) -> list[BackupInfo]:
        root = self._root(target)
        found = []
        for directory in sorted(root.iterdir()) if root.is_dir() else ():
            manifest = files.read_manifest(directory) if not directory.name.startswith(".") else None
            if manifest is not None and manifest.vm_id == vm.id:
                found.append(self._info(vm, root, directory, manifest))
        return sorted(found, key=lambda b: (b.created_at, b.id))

    def delete(self, backup: BackupInfo, *, timeout: float) -> None:
        directory = files.backup_directory(Path(backup.target), backup.id)
        manifest = files.read_manifest(directory)
        if manifest is None or manifest.vm_id != backup.vm.id:
            raise NotFound(f"backup {directory} not found", target=str(backup.vm), code="not_found")
        files.remove_tree(directory)
        log.info("backup_deleted", vm=backup.vm.name, directory=str(directory))

    # ------------------------------------------------------------------ restore-verify

    def restore_copy(self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float) -> RestoredCopy:
        for leftover in self.copies():
            if ownership.same_owner(leftover.ownership):
                self.destroy(leftover, timeout=timeout)
        source = files.backup_directory(Path(backup.target), backup.id)
        manifest = files.read_manifest(source)
        if manifest is None:
            raise NotFound(f"backup {source} not found", target=str(backup.vm), code="not_found")
        for disk in manifest.disks:
            files.verify_disk(source, disk, timeout=timeout)
        missing = [f for f in xml.boot_files(manifest.domain_xml) if not Path(f).is_file()]
        if missing:
            raise OperationRefused(
                f"the backup boots with host files that are gone: {', '.join(missing)}",
                target=str(backup.vm),
                code="boot_files_missing",
            )
        name, text = ownership.name(backup.vm.name), ownership.to_text()
        directory = Path(backup.target) / files.COPIES_DIR / name
        files.claim(directory, text)
        try:
            return self._boot(backup, manifest, source, directory, name, text, timeout)
        except BaseException:
            files.remove_tree(directory)
            raise

    def _boot(
        self,
        backup: BackupInfo,
        manifest: files.Manifest,
        source: Path,
        directory: Path,
        name: str,
        text: str,
        timeout: float,
    ) -> RestoredCopy:
        overlays = {}
        for disk in manifest.disks:
            overlay = directory / f"{disk.target}.qcow2"
            files.create_overlay(source / disk.file, overlay, timeout=timeout)
            overlays[disk.target] = str(overlay)
        domain_xml = xml.restored_domain_xml(
            manifest.domain_xml,
            name=name,
            overlays=overlays,
            console_log=str(directory / "console.log"),
            ownership=text,
        )
        uuid = self._session.write(
            "restore_copy", name, lambda conn: conn.createXML(domain_xml, 0).UUIDString()
        )
        log.info("backup_restored_copy", vm=backup.vm.name, backup=backup.id, copy=name)
        owner = BackupOwnership.from_text(text)
        created = owner.created_at if owner else ""
        return RestoredCopy(
            name, name, backup.id, backup.vm, text, created, {"uuid": uuid, "dir": str(directory)}
        )

    def copies(self) -> list[RestoredCopy]:
        running = self._session.read("restored_copies", self._settings.uri, self._marked_domains)
        found = [self._copy(text, name, {"uuid": uuid}) for name, uuid, text in running]
        names = {c.name for c in found}
        root = self._settings.backup_dir
        for directory in (
            sorted((root / files.COPIES_DIR).iterdir()) if root and (root / files.COPIES_DIR).is_dir() else ()
        ):
            text = files.read_ownership(directory)
            if (
                directory.name not in names
                and (owner := BackupOwnership.from_text(text))
                and owner.role == "restore"
            ):
                found.append(self._copy(text, directory.name, {"dir": str(directory)}))
        return [c for c in found if c.ownership is not None]

    def _marked_domains(self, conn: Any) -> list[tuple[str, str, str]]:
        out = []
        for dom in conn.listAllDomains(0):
            text = self._marker(dom)
            owner = BackupOwnership.from_text(text)
            if owner is not None and owner.role == "restore":
                out.append((dom.name(), dom.UUIDString(), text))
        return out

    def _marker(self, dom: Any) -> str:
        try:
            return xml.ownership_text(dom.metadata(self._lv.VIR_DOMAIN_METADATA_ELEMENT, xml.BACKUP_NS, 0))
        except self._lv.libvirtError:
            return ""

    def _copy(self, text: str, name: str, detail: dict[str, str]) -> RestoredCopy:
        owner = BackupOwnership.from_text(text)
        assert owner is not None
        source = VmRef(self._settings.site, owner.vm_id, owner.vm_id)
        root = self._settings.backup_dir
        directory = str(root / files.COPIES_DIR / name) if root else ""
        return RestoredCopy(
            name, name, owner.backup_id, source, text, owner.created_at, {"dir": directory} | detail
        )

    def probe(self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float) -> RestoreCheck:
        started = self._clock.monotonic()
        deadline = started + timeout
        uuid = self._session.read(
            "copy_uuid", copy.name, lambda conn: conn.lookupByName(copy.name).UUIDString()
        )
        ref = VmRef(self._settings.site, uuid, copy.name)
        while not self._session.read_domain("copy_ping", ref, self._agent.ping):
            if self._clock.monotonic() >= deadline:
                return RestoreCheck(
                    copy.id,
                    False,
                    "agent",
                    round(timeout, 1),
                    detail="qemu-guest-agent never answered in the copy",
                )
            self._clock.sleep(POLL_S)
        boot_s = round(self._clock.monotonic() - started, 1)
        results = run_probes(
            lambda argv, seconds: self._agent.run(ref, argv, timeout=seconds),
            probes,
            deadline=deadline,
            clock=self._clock,
        )
        return RestoreCheck(copy.id, all(r.ok for r in results), "agent", boot_s, results)

    def destroy(self, copy: RestoredCopy, *, timeout: float) -> None:
        def stop(conn: Any) -> None:
            try:
                dom = conn.lookupByName(copy.name)
            except self._lv.libvirtError as exc:
                if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN:
                    return
                raise
            owner = BackupOwnership.from_text(self._marker(dom))
            if owner is None or owner.role != "restore":
                raise OperationRefused(
                    f"domain {copy.name} is not a restored copy made by patchwave",
                    target=copy.name,
                    code="not_ours",
                )
            if dom.isActive():
                dom.destroy()  # transient: gone with it

        self._session.write("destroy_copy", copy.name, stop)
        directory = Path(copy.detail["dir"]) if copy.detail.get("dir") else None
        if directory is not None and directory.is_dir():
            owner = BackupOwnership.from_text(files.read_ownership(directory))
            if owner is not None and owner.role == "restore":
                files.remove_tree(directory)
        log.info("backup_copy_destroyed", copy=copy.name)
