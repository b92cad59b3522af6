"""The fact store's ``assessments`` table: what each guest had pending (for the compliance report).

Written by the per-VM activities through :meth:`AssessmentTables.record_assessment` (part of
:class:`orchestrator.facts.store.FactStore`) with the :class:`orchestrator.guests.patcher.Assessment`
they got from ``GuestPatcher.assess()`` (duck-typed here: ``os``, ``updates``, ``reboot_required``,
``kernel``, ``restart_needed``), read back as :class:`~orchestrator.facts.records.AssessmentRecord`.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from orchestrator.facts.database import Database
from orchestrator.facts.records import SEVERITIES, AssessmentRecord, assessment_from_row, severity_bucket
from orchestrator.model import SCHEMA_VERSION
from providers.base import VmRef

#: Packages kept per assessment row (the counts always cover every pending update).
MAX_PACKAGES = 500
PHASES = ("before", "after")


def os_name(os_info: Any) -> str:
    pretty = getattr(os_info, "pretty_name", "")
    if pretty:
        return str(pretty)
    return (
        " ".join(str(p) for p in (getattr(os_info, "id", ""), getattr(os_info, "version_id", "")) if p)
        or "unknown"
    )


def summarize(assessment: Any) -> dict[str, Any]:
    """The row values of an Assessment: counts per severity bucket, distinct CVEs, capped package list."""
    updates = tuple(assessment.updates)
    severities = dict.fromkeys(SEVERITIES, 0)
    cves: set[str] = set()
    packages: list[dict[str, Any]] = []
    for u in updates:
        severities[severity_bucket(bool(u.security), str(u.severity or ""))] += 1
        cves.update(u.cves)
        if len(packages) < MAX_PACKAGES:
            packages.append({"name": u.name, "current": u.current, "candidate": u.candidate,
                             "security": bool(u.security), "severity": u.severity, "cves": list(u.cves)})  # fmt: skip
    return {
        "os": os_name(assessment.os),
        "kernel": str(assessment.kernel or ""),
        "pending": len(updates),
        "security": sum(1 for u in updates if u.security),
        "cves": len(cves),
        "severities": json.dumps(severities, sort_keys=True),
        "reboot_required": int(bool(assessment.reboot_required)),
        "packages": json.dumps(packages, sort_keys=True, separators=(",", ":")),
        "restart_needed": json.dumps(list(getattr(assessment, "restart_needed", ()))),
    }


def insert(db: sqlite3.Connection, run_id: str, step_id: str, vm: VmRef, phase: str, taken_at: str,
           values: dict[str, Any], recorded_at: str) -> None:  # fmt: skip
    db.execute(
        "INSERT INTO assessments (run_id, step_id, vm_site, vm_id, vm_name, phase, taken_at, os, kernel, pending,"
        " security, cves, severities, reboot_required, packages, recorded_at, schema_version, restart_needed)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, step_id, vm.site, vm.id, vm.name, phase, taken_at, values["os"], values["kernel"],
         values["pending"], values["security"], values["cves"], values["severities"], values["reboot_required"],
         values["packages"], recorded_at, SCHEMA_VERSION, values["restart_needed"]),
    )  # fmt: skip


def latest(db: sqlite3.Connection) -> list[AssessmentRecord]:
    """The latest assessment of every VM (by site and platform id), ordered by site and name."""
    rows = db.execute(
        "SELECT a.* FROM assessments a WHERE a.id = (SELECT MAX(i.id) FROM assessments i"
        " WHERE i.vm_site = a.vm_site AND i.vm_id = a.vm_id) ORDER BY a.vm_site, a.vm_name, a.vm_id"
    )
    return [assessment_from_row(r) for r in rows]


class AssessmentTables(Database):
    def record_assessment(
        self, run_id: str, step_id: str, vm: VmRef, assessment: Any, *, phase: str = "before",
        taken_at: str | datetime | None = None,
    ) -> None:  # fmt: skip
        """Append what ``GuestPatcher.assess()`` found (``phase``: "before" or "after" patching)."""
        if phase not in PHASES:
            raise ValueError(f"unknown assessment phase {phase!r}; use one of {PHASES}")
        moment = taken_at.astimezone(UTC).isoformat() if isinstance(taken_at, datetime) else taken_at
        values = summarize(assessment)
        with self._tx() as db:
            insert(db, run_id, step_id, vm, phase, moment or self._now(), values, self._now())

    def latest_assessments(self) -> list[AssessmentRecord]:
        """The latest assessment of every VM ever assessed (by site and platform id)."""
        return latest(self._db())
