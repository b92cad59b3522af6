"""The backup contract: BACKUP and BACKUP_VERIFY verbs, their values, and backup ownership.

A snapshot is not a backup: it lives on the VM's own storage, in the same failure domain. A backup
here is a *full* copy of the VM's disks written somewhere else by the platform's own mechanism
(Proxmox ``vzdump`` to a backup storage, libvirt's backup job to qcow2 files in a backup directory,
a vSphere full clone into a backup folder/datastore), and it counts only once it has been restored.

Capability.BACKUP (:class:`~providers.capabilities.BackupOps`)
    ``create_backup`` / ``list_backups`` / ``delete_backup``. A backup carries a
    :class:`BackupOwnership` in the platform's own description field (PVE backup notes, the libvirt
    backup manifest, the vSphere clone's ``extraConfig``), so identity is (run, step, VM), never a
    name: ``create_backup`` with an ownership that already has a complete backup returns that backup
    (activities are delivered at least once) and never makes a second one.

Capability.BACKUP_VERIFY (:class:`~providers.capabilities.BackupVerifyOps`)
    ``restore_copy`` restores a backup into a new, *isolated* copy (no usable network: libvirt
    defines it without any interface, PVE restores it with ``link_down=1`` on every NIC, vSphere
    disconnects every NIC before power-on) and starts it; the backup itself is never modified.
    ``probe_copy`` waits for the copy's guest agent (or VMware Tools heartbeat) and runs
    :class:`RestoreProbe` commands through it; ``destroy_copy`` removes the copy. A copy carries a
    :class:`BackupOwnership` with ``role="restore"``, so a copy left behind by a crash is found by
    ``list_restored_copies`` and removed by ``destroy_copy``, which refuses anything not marked so.

Each verb is safe to run twice: a second ``destroy_copy`` or ``delete_backup`` of something gone is
``NotFound`` (delete) or a no-op (destroy), a second ``create_backup`` returns the first backup.
Every wait is bounded by the verb's ``timeout`` and raises :class:`~providers.errors.ProviderTimeout`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from providers.base import ExecResult, VmRef
from providers.errors import GuestAgentUnavailable, ProviderTimeout
from providers.timing import Clock

BACKUP_OWNERSHIP_PREFIX = "patchwave-backup:"
BACKUP_NAME_PREFIX = "pw-bk-"
RESTORE_NAME_PREFIX = "pw-rv-"
ROLES = ("backup", "restore")
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class BackupOwnership:
    """Who made a backup (``role="backup"``) or a restored copy of one (``role="restore"``), and why.

    Stored as one line of text (:meth:`to_text`) wherever the platform keeps a description.
    ``vm_id`` is the platform id of the VM the backup is of; ``backup_id`` (restored copies only)
    the backup the copy was restored from.
    """

    run_id: str
    step_id: str
    vm_id: str
    created_at: str  # ISO-8601 UTC
    role: str = "backup"
    backup_id: str = ""

    def to_text(self) -> str:
        payload = {"run": self.run_id, "step": self.step_id, "vm": self.vm_id, "created": self.created_at}
        payload["role"] = self.role
        if self.backup_id:
            payload["backup"] = self.backup_id
        return BACKUP_OWNERSHIP_PREFIX + json.dumps(payload, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str | None) -> BackupOwnership | None:
        """The ownership in ``text`` (its first line), or ``None`` when it carries none."""
        if not text or not text.startswith(BACKUP_OWNERSHIP_PREFIX):
            return None
        try:
            payload = json.loads(text.splitlines()[0][len(BACKUP_OWNERSHIP_PREFIX) :])
            role = str(payload.get("role", "backup"))
            if role not in ROLES:
                return None
            return cls(
                run_id=str(payload["run"]),
                step_id=str(payload["step"]),
                vm_id=str(payload["vm"]),
                created_at=str(payload["created"]),
                role=role,
                backup_id=str(payload.get("backup", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def same_owner(self, other: BackupOwnership | None) -> bool:
        """Same run, step, VM, role and backup (the creation time does not matter)."""
        return other is not None and (
            self.run_id,
            self.step_id,
            self.vm_id,
            self.role,
            self.backup_id,
        ) == (other.run_id, other.step_id, other.vm_id, other.role, other.backup_id)

    def name(self, vm_name: str) -> str:
        """A deterministic, DNS-safe name (at most 40 characters) for the backup or copy."""
        key = f"{self.role}/{self.run_id}/{self.step_id}/{self.vm_id}/{self.backup_id}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        readable = _NAME_CHARS.sub("-", vm_name.lower()).strip("-")[:16].strip("-") or "vm"
        prefix = BACKUP_NAME_PREFIX if self.role == "backup" else RESTORE_NAME_PREFIX
        return f"{prefix}{readable}-{digest}"


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A complete backup as the platform lists it.

    ``id`` is what the platform names it by (PVE: the volume id; libvirt: the backup directory's
    name; vSphere: the clone's moref); ``location`` says where it is, for people and reports.
    ``checksum`` is ``"sha256:<hex>"`` when the platform gives one or the adapter computes one,
    else ``""`` (the restore reads the whole archive, which is the check those platforms offer).
    """

    vm: VmRef
    id: str
    location: str
    target: str  # the backup target: PVE storage id, libvirt directory, vSphere folder
    created_at: str  # ISO-8601 UTC
    size: int = 0  # bytes; 0 when the platform does not say
    checksum: str = ""
    description: str = ""  # the ownership text as the platform stores it
    detail: Mapping[str, str] = field(default_factory=dict)  # platform facts (format, node, datastore)

    @property
    def ownership(self) -> BackupOwnership | None:
        return BackupOwnership.from_text(self.description)


@dataclass(frozen=True, slots=True)
class RestoredCopy:
    """An isolated copy restored from a backup (running once ``restore_copy`` returned it)."""

    id: str  # PVE: "qemu/<vmid>"; libvirt: the transient domain's name; vSphere: the copy's moref
    name: str
    backup_id: str
    vm: VmRef  # the VM the backup is of
    description: str = ""  # the ownership text (role "restore")
    created_at: str = ""
    detail: Mapping[str, str] = field(default_factory=dict)

    @property
    def ownership(self) -> BackupOwnership | None:
        return BackupOwnership.from_text(self.description)


@dataclass(frozen=True, slots=True)
class RestoreProbe:
    """A command run in the restored copy through the platform's agent; exit 0 = healthy.

    Tried again (every ``interval`` seconds, each try bounded by ``timeout``) until it passes or the
    ``probe_copy`` deadline: a freshly booted copy may need a moment before its services answer.
    """

    name: str
    argv: tuple[str, ...]
    timeout: float = 30.0
    interval: float = 2.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    ok: bool
    exit_code: int | None = None
    output: str = ""  # the tail of stdout + stderr of the last try
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RestoreCheck:
    """What ``probe_copy`` found. ``how`` is ``"agent"`` (the guest agent answered in the copy and
    the probes ran through it) or ``"heartbeat"`` (VMware Tools reported a heartbeat; probes ran
    through guest operations when there were any). ``ok`` needs liveness and every probe."""

    copy_id: str
    ok: bool
    how: str
    boot_s: float
    probes: tuple[ProbeResult, ...] = ()
    detail: str = ""


def output_tail(stdout: str, stderr: str, limit: int = 400) -> str:
    """The last ``limit`` characters of a command's output (stdout, then stderr), for records."""
    text = (stdout + ("\n" if stdout and stderr else "") + stderr).strip()
    return text[-limit:]


def detail_of(values: Mapping[str, object]) -> dict[str, str]:
    """Platform facts as ``str -> str`` (empty values dropped), for ``detail`` fields."""
    return {k: str(v) for k, v in values.items() if v not in (None, "")}


def run_probes(
    run: Callable[[tuple[str, ...], float], ExecResult],
    probes: Sequence[RestoreProbe],
    *,
    deadline: float,
    clock: Clock,
) -> tuple[ProbeResult, ...]:
    """Run each probe through ``run(argv, timeout)`` until it passes or ``deadline`` (monotonic).

    An agent that stops answering or a try that outlives its timeout is a failed try, not an error:
    the copy is being judged, and a copy whose agent dies is not healthy.
    """
    results = []
    for probe in probes:
        attempts, ok, code, output = 0, False, None, ""
        while True:
            attempts += 1
            remaining = deadline - clock.monotonic()
            try:
                result = run(probe.argv, max(1.0, min(probe.timeout, remaining)))
                ok, code, output = result.ok, result.exit_code, output_tail(result.stdout, result.stderr)
            except (ProviderTimeout, GuestAgentUnavailable) as exc:
                ok, code, output = False, None, str(exc)
            if ok or clock.monotonic() + probe.interval >= deadline:
                break
            clock.sleep(probe.interval)
        results.append(ProbeResult(probe.name, ok, code, output, attempts))
    return tuple(results)


class BackupWork(Protocol):
    """What an adapter's backup component offers; :class:`BackupVerbs` turns it into the verbs."""

    def create(self, vm: VmRef, *, ownership: BackupOwnership, target: str, timeout: float) -> BackupInfo: ...
    def backups(self, vm: VmRef, *, target: str) -> list[BackupInfo]: ...
    def delete(self, backup: BackupInfo, *, timeout: float) -> None: ...
    def restore_copy(
        self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float
    ) -> RestoredCopy: ...
    def copies(self) -> list[RestoredCopy]: ...
    def probe(
        self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float
    ) -> RestoreCheck: ...
    def destroy(self, copy: RestoredCopy, *, timeout: float) -> None: ...


class BackupVerbs:
    """The BACKUP and BACKUP_VERIFY verbs of a provider class, delegated to its ``_backups``
    component (each adapter's ``providers.<kind>.backups``). Mixed into the provider classes so the
    verbs are on the provider itself, as the Protocols require, without growing their modules."""

    _backups: BackupWork

    def create_backup(
        self, vm: VmRef, *, ownership: BackupOwnership, target: str = "", timeout: float
    ) -> BackupInfo:
        return self._backups.create(vm, ownership=ownership, target=target, timeout=timeout)

    def list_backups(self, vm: VmRef, *, target: str = "") -> list[BackupInfo]:
        return self._backups.backups(vm, target=target)

    def delete_backup(self, backup: BackupInfo, *, timeout: float) -> None:
        self._backups.delete(backup, timeout=timeout)

    def restore_copy(self, backup: BackupInfo, *, ownership: BackupOwnership, timeout: float) -> RestoredCopy:
        return self._backups.restore_copy(backup, ownership=ownership, timeout=timeout)

    def list_restored_copies(self) -> list[RestoredCopy]:
        return self._backups.copies()

    def probe_copy(
        self, copy: RestoredCopy, probes: Sequence[RestoreProbe], *, timeout: float
    ) -> RestoreCheck:
        return self._backups.probe(copy, probes, timeout=timeout)

    def destroy_copy(self, copy: RestoredCopy, *, timeout: float) -> None:
        self._backups.destroy(copy, timeout=timeout)
