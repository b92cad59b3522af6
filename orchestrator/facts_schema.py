"""The fact store's schema: an ordered list of migrations and the code that applies them.

Portable SQL (SQLite now, Postgres later): no SQLite-only column types, ``INTEGER PRIMARY KEY``
ids, timestamps as ISO-8601 UTC text, details as JSON text. A migration is appended, never edited.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.errors import FactStoreError

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, plan_json TEXT NOT NULL,
                config_digest TEXT NOT NULL, requested_by TEXT NOT NULL, status TEXT NOT NULL,
                reason TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            """CREATE TABLE run_events (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), status TEXT NOT NULL,
                reason TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            """CREATE TABLE steps (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, action TEXT NOT NULL,
                phase TEXT NOT NULL, target TEXT NOT NULL, ok INTEGER, detail TEXT NOT NULL,
                error TEXT NOT NULL, recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX steps_by_step ON steps (run_id, step_id)",
            """CREATE TABLE outcomes (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, kind TEXT NOT NULL,
                site TEXT NOT NULL, target_id TEXT NOT NULL, status TEXT NOT NULL, duration_s REAL,
                outcome TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            "CREATE INDEX outcomes_by_step ON outcomes (run_id, step_id)",
            "CREATE INDEX outcomes_by_target ON outcomes (step_id, status)",
            """CREATE TABLE snapshots (
                run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL, vm_id TEXT NOT NULL,
                vm_name TEXT NOT NULL, name TEXT NOT NULL, snapshot_id TEXT NOT NULL, state TEXT NOT NULL,
                created_at TEXT NOT NULL, expires_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                PRIMARY KEY (run_id, step_id))""",
            """CREATE TABLE maintenance (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, host_site TEXT NOT NULL, host_id TEXT NOT NULL,
                host_name TEXT NOT NULL, state TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            "CREATE INDEX maintenance_by_host ON maintenance (host_site, host_id)",
        ),
    ),
    (
        2,
        (
            # What a guest had pending when it was assessed (before and after patching): the
            # compliance report's source. severities/packages are JSON text.
            """CREATE TABLE assessments (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, phase TEXT NOT NULL, taken_at TEXT NOT NULL,
                os TEXT NOT NULL, kernel TEXT NOT NULL, pending INTEGER NOT NULL, security INTEGER NOT NULL,
                cves INTEGER NOT NULL, severities TEXT NOT NULL, reboot_required INTEGER NOT NULL,
                packages TEXT NOT NULL, recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX assessments_by_vm ON assessments (vm_site, vm_id)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(db: sqlite3.Connection) -> int:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite3.Connection, *, path: Path) -> int:
    """Apply the migrations newer than the database's version (inside the caller's transaction)."""
    version = current_version(db)
    if version > LATEST_VERSION:
        raise FactStoreError(
            f"{path} has schema version {version}; this patchwave knows up to {LATEST_VERSION}",
            step="facts",
            fix="upgrade patchwave, or point [state] dir elsewhere",
        )
    for number, statements in MIGRATIONS:
        if number <= version:
            continue
        for statement in statements:
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)", (number,)
        )
        version = number
    return version
