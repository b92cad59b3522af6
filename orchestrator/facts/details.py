"""The typed details of step journal records: one frozen dataclass per kind of intent or result.

Which action records which detail is :meth:`orchestrator.facts.actions.Action.detail_type`. Each
detail converts to the JSON the store writes (``to_json``; the keys the untyped journal wrote) and
back (``from_json``, which also reads the older shapes, see :mod:`orchestrator.facts.actions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from orchestrator.model import CheckResult, PackageChange

# ------------------------------------------------------------------------------------------
# a VM's patch
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotIntent:
    """SNAPSHOT intent: the deterministic name the snapshot is about to get."""

    name: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(name=str(data.get("name", "")))


@dataclass(frozen=True)
class SnapshotDetail:
    """SNAPSHOT result (the platform's id), REVERT intent and result (the id reverted to)."""

    snapshot_id: str

    def to_json(self) -> dict[str, Any]:
        return {"snapshot_id": self.snapshot_id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(snapshot_id=str(data.get("snapshot_id", "")))


@dataclass(frozen=True)
class PatchIntent:
    """PATCH intent: the update mode about to be applied (all | security | pinned), the detached job
    that applies it (:mod:`orchestrator.guests.job`; "" in records older than jobs), and the plan:
    ``before`` (name -> installed version, "" = not installed) and ``planned`` (name -> the version
    the assessment selected, or the pin). A resumed attempt finds the job and judges the outcome
    against these; the intent's time anchors the patch deadline. ``pins``: the exact selection of a
    pinned promotion (``pkg=version`` / NEVRA), so a resumed attempt starts the same install."""

    mode: str
    job: str = ""
    before: Mapping[str, str] = field(default_factory=dict)
    planned: Mapping[str, str] = field(default_factory=dict)
    pins: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode}
        if self.job:
            data |= {"job": self.job, "before": dict(self.before), "planned": dict(self.planned)}
        if self.pins:
            data["pins"] = list(self.pins)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            mode=str(data.get("mode", "")),
            job=str(data.get("job", "")),
            before={str(k): str(v) for k, v in dict(data.get("before", {})).items()},
            planned={str(k): str(v) for k, v in dict(data.get("planned", {})).items()},
            pins=tuple(str(p) for p in data.get("pins", ())),
        )


@dataclass(frozen=True)
class PatchDetail:
    """PATCH result: the versions now installed of the changed packages, and the changes."""

    installed: Mapping[str, str] = field(default_factory=dict)  # name -> version, as the guest reports
    changes: tuple[PackageChange, ...] = ()
    reboot_required: bool = False
    nothing_to_do: bool = False  # nothing selected was pending: nothing was applied
    restart_needed: tuple[str, ...] = ()  # services running old libraries afterwards ("kernel": newer kernel)
    kernel_pending: bool = False  # a kernel changed or a newer one is installed

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "installed": dict(self.installed),
            "changed": [{"name": c.name, "old": c.old, "new": c.new} for c in self.changes],
            "reboot_required": self.reboot_required,
            "nothing": self.nothing_to_do,
        }
        if self.restart_needed or self.kernel_pending:  # older records lack them: read as () / False
            data.update(restart_needed=list(self.restart_needed), kernel_pending=self.kernel_pending)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            installed={str(k): str(v) for k, v in dict(data.get("installed", {})).items()},
            changes=tuple(package_change(c) for c in data.get("changed", ())),
            reboot_required=bool(data.get("reboot_required", False)),
            nothing_to_do=bool(data.get("nothing", False)),
            restart_needed=tuple(str(s) for s in data.get("restart_needed", ())),
            kernel_pending=bool(data.get("kernel_pending", False)),
        )


@dataclass(frozen=True)
class ServicesDetail:
    """RESTART_SERVICES intent (the stale services about to be restarted) and result (what is still
    stale afterwards: services the tool keeps running, a newer kernel)."""

    services: tuple[str, ...] = ()
    remaining: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"services": list(self.services), "remaining": list(self.remaining)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            services=tuple(str(s) for s in data.get("services", ())),
            remaining=tuple(str(s) for s in data.get("remaining", ())),
        )


@dataclass(frozen=True)
class RebootDetail:
    """REBOOT intent (the boot id before) and result (the boot id and kernel after)."""

    boot_id: str
    kernel: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id, "kernel": self.kernel}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(boot_id=str(data.get("boot_id", "")), kernel=str(data.get("kernel", "")))


@dataclass(frozen=True)
class HealthDetail:
    """BASELINE_HEALTH / VERIFY_HEALTH result: every check's result."""

    checks: tuple[CheckResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "checks": [
                {"name": c.name, "kind": c.kind, "ok": c.ok, "detail": c.detail, "attempts": c.attempts}
                for c in self.checks
            ]
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        checks = (
            CheckResult(
                name=str(c.get("name", "")),
                kind=str(c.get("kind", "")),
                ok=bool(c.get("ok", False)),
                detail=str(c.get("detail", "")),
                attempts=int(c.get("attempts", 1)),
            )
            for c in data.get("checks", ())
        )
        return cls(checks=tuple(checks))


# ------------------------------------------------------------------------------------------
# a hypervisor host
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPatchIntent:
    """HOST_PATCH intent: the build the host reported before the install."""

    build: str

    def to_json(self) -> dict[str, Any]:
        return {"build": self.build}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(build=str(data.get("build", "")))


@dataclass(frozen=True)
class HostPatchDetail:
    """HOST_PATCH result: did the install change anything, does it need a reboot, build after."""

    changed: bool
    reboot_required: bool
    build: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "reboot_required": self.reboot_required, "build": self.build}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            changed=bool(data.get("changed", False)),
            reboot_required=bool(data.get("reboot_required", False)),
            build=str(data.get("build", "")),
        )


@dataclass(frozen=True)
class HostAssessDetail:
    """HOST_ASSESS result: a report-only host's pending updates (current -> candidate), read-only."""

    pending: tuple[PackageChange, ...] = ()
    security: tuple[str, ...] = ()  # names of the pending security updates
    reboot_required: bool = False
    kernel: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "report_only": True,
            "pending": [{"name": c.name, "old": c.old, "new": c.new} for c in self.pending],
            "security": list(self.security),
            "reboot_required": self.reboot_required,
            "kernel": self.kernel,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            pending=tuple(package_change(c) for c in data.get("pending", ())),
            security=tuple(str(s) for s in data.get("security", ())),
            reboot_required=bool(data.get("reboot_required", False)),
            kernel=str(data.get("kernel", "")),
        )


@dataclass(frozen=True)
class HostRebootDetail:
    """HOST_REBOOT intent: the host's boot time before (a retry that sees another one rebooted)."""

    boot_time: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"boot_time": self.boot_time}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(boot_time=str(data.get("boot_time", "")))


# ------------------------------------------------------------------------------------------
# notifications, the doctor, abandoned attempts
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyDetail:
    """NOTIFY_* result: one delivery of a notice (``key`` identifies the notice within its run).

    The key is stored as ``notice``: the untyped journal wrote it as ``key``, which :func:`scrub`
    drops as secret-looking, so its records never had it (and their deliveries cannot be matched).
    """

    event: str
    key: str
    sent: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "notice": self.key, "sent": self.sent, "failed": self.failed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            event=str(data.get("event", "")),
            key=str(data.get("notice", "")),
            sent=int(data.get("sent", 0)),
            failed=int(data.get("failed", 0)),
        )


@dataclass(frozen=True)
class DoctorDetail:
    """DOCTOR_* intent and result: the finding fixed (its step and snapshot) and, after, how it went."""

    kind: str
    step: str = ""
    snapshot_id: str = ""
    note: str = ""  # result only

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "step": self.step, "snapshot_id": self.snapshot_id}
        return {**data, "note": self.note} if self.note else data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            kind=str(data.get("kind", "")),
            step=str(data.get("step", "")),
            snapshot_id=str(data.get("snapshot_id", "")),
            note=str(data.get("note", "")),
        )


# ------------------------------------------------------------------------------------------
# backups (orchestrator.backups)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupDetail:
    """BACKUP_* intent and result: the backup (platform id, where, how big, checksum), the restored
    copy, the probes' verdicts; after a failed call, the error's code and whether a retry may help.
    Empty fields are not written."""

    backup_id: str = ""
    target: str = ""
    location: str = ""
    size: int = 0
    checksum: str = ""
    copy_id: str = ""
    how: str = ""  # agent | heartbeat (BACKUP_PROBE)
    boot_s: float = 0.0
    probes: Mapping[str, bool] = field(default_factory=dict)  # probe name -> passed
    code: str = ""
    retryable: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {
            "backup_id": self.backup_id, "target": self.target, "location": self.location, "size": self.size,
            "checksum": self.checksum, "copy_id": self.copy_id, "how": self.how, "boot_s": self.boot_s,
            "probes": dict(self.probes), "code": self.code, "retryable": self.retryable,
        }  # fmt: skip
        return {k: v for k, v in data.items() if v not in ("", 0, 0.0, {}, False)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            **{
                k: str(data.get(k, ""))
                for k in ("backup_id", "target", "location", "checksum", "copy_id", "how", "code")
            },
            size=int(data.get("size", 0)),
            boot_s=float(data.get("boot_s", 0.0)),
            probes={str(k): bool(v) for k, v in dict(data.get("probes") or {}).items()},
            retryable=bool(data.get("retryable", False)),
        )


@dataclass(frozen=True)
class AutoUpdatePauseDetail:
    """AUTOUPDATES_PAUSE / AUTOUPDATES_RESTORE: the guest's automatic updater paused for a run and
    restored after it — the pause state (new | kept | adopted; restored | nothing), the timers stopped
    or started again, the timers that would not start, the run whose pause it was; on a restore, the
    packages the run held from the updater (``holds``: None = left as they were, () = released,
    :mod:`orchestrator.autoupdates.holds`). Empty fields are not written."""

    state: str = ""
    units: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    paused_by: str = ""
    holds: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"state": self.state, "units": list(self.units), "failed": list(self.failed),
                "paused_by": self.paused_by}  # fmt: skip
        found: dict[str, Any] = {k: v for k, v in data.items() if v not in ("", [])}
        if self.holds is not None:
            found["holds"] = list(self.holds)
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            state=str(data.get("state", "")),
            units=tuple(str(u) for u in data.get("units") or ()),
            failed=tuple(str(u) for u in data.get("failed") or ()),
            paused_by=str(data.get("paused_by", "")),
            holds=tuple(str(h) for h in data["holds"]) if data.get("holds") is not None else None,
        )


@dataclass(frozen=True)
class Abandoned:
    """The failed result the doctor appends for an attempt whose run died before it reported back
    (a result of whatever action that attempt was)."""

    def to_json(self) -> dict[str, Any]:
        return {"abandoned": True}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls()


Detail = (
    SnapshotIntent | SnapshotDetail | PatchIntent | PatchDetail | RebootDetail | HealthDetail | ServicesDetail
    | HostPatchIntent | HostPatchDetail | HostAssessDetail | HostRebootDetail
    | NotifyDetail | DoctorDetail | BackupDetail | AutoUpdatePauseDetail | Abandoned
)  # fmt: skip


def package_change(entry: Any) -> PackageChange:
    """A stored package change: ``{name, old, new}`` (version 2) or ``"name old->new"`` (version 1)."""
    if isinstance(entry, Mapping):
        return PackageChange(str(entry.get("name", "")), str(entry.get("old", "")), str(entry.get("new", "")))
    name, _, versions = str(entry).partition(" ")
    old, _, new = versions.partition("->")
    return PackageChange(name, old, new)
