"""One schema on both engines: the numbered migrations run on SQLite and PostgreSQL, fresh and one
step at a time, to the same tables and columns; the SQL dialect is translated in one place; a shared
store names its URL, never its password."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import FactStoreError
from orchestrator.facts.database import IDENTITY_TABLES
from orchestrator.facts.engines.dialect import to_postgres
from orchestrator.facts.engines.postgres import PostgresEngine, PostgresTarget
from orchestrator.facts.schema import LATEST_VERSION, MIGRATIONS, migrate
from orchestrator.facts.store import FactStore
from tests.support.postgres import fresh_target

Where = Path | PostgresTarget


@contextmanager
def transaction(where: Where) -> Iterator[Any]:
    """A bare transaction on ``where`` (no FactStore: it would migrate to the latest version)."""
    if isinstance(where, PostgresTarget):
        engine = PostgresEngine(where, IDENTITY_TABLES)
        try:
            with engine.transaction() as db:
                yield db
        finally:
            engine.close()
        return
    db = sqlite3.connect(where, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("COMMIT")
    finally:
        db.close()


def columns(where: Where) -> set[tuple[str, str]]:
    with transaction(where) as db:
        if isinstance(where, PostgresTarget):
            rows = db.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            ).fetchall()
            return {(r[0], r[1]) for r in rows}
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {(t, c[1]) for t in tables for c in db.execute(f"PRAGMA table_info({t})")}


def versions(where: Where) -> list[int]:
    with transaction(where) as db:
        return [int(r[0]) for r in db.execute("SELECT version FROM schema_version ORDER BY version")]


def test_the_migrations_run_fresh_and_step_by_step_to_the_same_schema(store_at) -> None:
    fresh, stepped = store_at(), store_at()
    FactStore(fresh).close()
    for number, _ in MIGRATIONS:
        with transaction(stepped) as db:
            assert migrate(db, where="stepped", upto=number) == number
        assert versions(stepped)[-1] == number
    assert versions(fresh) == versions(stepped) == [n for n, _ in MIGRATIONS]
    assert columns(fresh) == columns(stepped)
    assert ("leases", "expires_at") in columns(fresh) and ("vuln_assessments", "risk_cvss") in columns(fresh)
    FactStore(stepped).close()  # reopening a migrated store applies nothing
    assert versions(stepped) == [n for n, _ in MIGRATIONS]


def test_a_store_from_a_newer_patchwave_is_refused(store_at) -> None:
    where = store_at()
    FactStore(where).close()
    with transaction(where) as db:
        db.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, 'later')", (LATEST_VERSION + 1,)
        )
    with pytest.raises(FactStoreError, match="upgrade patchwave"):
        FactStore(where)


def test_identity_ids_autoincrement_and_wide_values_round_trip(store_at) -> None:
    store = FactStore(store_at())
    feed = (
        "INSERT INTO vuln_feeds (kind, source, version, loaded_at, record_count, current, recorded_at,"
        " schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    try:
        with store._tx() as db:
            first = db.execute(feed, ("osv", "a", "1", "t", 5 * 2**40, True, "t", 1)).lastrowid
            second = db.execute(feed, ("osv", "b", "1", "t", 0, False, "t", 1)).lastrowid
            db.execute(
                "INSERT INTO outcomes (run_id, step_id, kind, site, target_id, status, duration_s, outcome,"
                " recorded_at) VALUES (?, ?, 'vm', 'a', '1', 'succeeded', ?, '{}', 't')",
                ("r1", "vm:a:1", 0.1),
            )
        assert (first, second) == (1, 2)
        rows = store._db().execute("SELECT record_count, current FROM vuln_feeds ORDER BY id").fetchall()
        assert [(r["record_count"], r[1]) for r in rows] == [(5 * 2**40, 1), (0, 0)]  # booleans stored as 0/1
        assert store.durations("vm:a:1") == [0.1]  # double precision on both engines
    finally:
        store.close()


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("SELECT * FROM t WHERE a = :run LIMIT :limit", "SELECT * FROM t WHERE a = %(run)s LIMIT %(limit)s"),
        ("SELECT 'a?b:c' LIKE 'report only%'", "SELECT 'a?b:c' LIKE 'report only%%'"),
        ("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL)",
         "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, x DOUBLE PRECISION)"),
        ("ALTER TABLE t ADD COLUMN n INTEGER NOT NULL DEFAULT 0", "ALTER TABLE t ADD COLUMN n BIGINT NOT NULL DEFAULT 0"),
        ("INSERT OR IGNORE INTO t (a) VALUES (?)", "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"),
        ("SELECT COALESCE(json_extract(a.severities, '$.critical'), 0)",
         "SELECT COALESCE((a.severities::jsonb ->> 'critical'), 0)"),
        ("SELECT MAX(0.0, d)", "SELECT GREATEST(0.0, d)"),
    ],
)  # fmt: skip
def test_the_dialect_is_translated_in_one_place(sqlite: str, postgres: str) -> None:
    assert to_postgres(sqlite) == postgres


def test_every_migration_statement_translates_and_identity_tables_are_known() -> None:
    for _, statements in MIGRATIONS:
        for statement in statements:
            assert "?" not in to_postgres(statement) and " REAL" not in to_postgres(statement)
    assert {
        "steps",
        "outcomes",
        "run_events",
        "vuln_feeds",
        "backups",
        "autoupdate_records",
    } <= IDENTITY_TABLES
    assert "vuln_rounds" not in IDENTITY_TABLES  # its id is TEXT


def test_a_failed_connection_names_the_url_never_the_password() -> None:
    with fresh_target() as target:
        wrong = replace(target, password="not-the-Secret-42")
        with pytest.raises(FactStoreError) as failed:
            FactStore(wrong)
    message = str(failed.value)
    assert "not-the-Secret-42" not in message and target.password not in message
    assert "postgresql://" in message and "check [facts] url and password" in message
    assert "not-the-Secret-42" not in repr(wrong) and "options" not in wrong.shown
