"""The fact store's database: SQLite (a file, one connection per thread) or PostgreSQL (a pool),
short transactions either way.

:class:`Database` is the base of the store's table groups (:mod:`.runs`, :mod:`.journal`,
:mod:`.registry`, :mod:`.assessments`, ...), which :class:`orchestrator.facts.store.FactStore`
combines. It is opened on a path (SQLite: the file is created 0600 in a 0700 directory; WAL
journal) or on a :class:`~orchestrator.facts.engines.postgres.PostgresTarget` (a database shared
by a cluster's workers). The same numbered migrations are applied when it is opened; the SQL
dialect is translated in :mod:`orchestrator.facts.engines.dialect`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

from orchestrator.errors import FactStoreError
from orchestrator.facts.engines.dialect import identity_tables
from orchestrator.facts.engines.postgres import PostgresEngine, PostgresTarget
from orchestrator.facts.schema import LATEST_VERSION, MIGRATIONS, migrate
from providers.timing import SYSTEM_CLOCK, Clock

IDENTITY_TABLES = identity_tables(tuple(s for _, statements in MIGRATIONS for s in statements))


def _secure_file(path: Path) -> None:
    """Create ``path``'s directory (0700) and the file itself (0600) before SQLite opens it.

    An existing file is never opened here: closing a descriptor of a database file releases every
    POSIX lock this process holds on it, SQLite's too (a second store in a process that has one
    open would let another process write under its feet: "database disk image is malformed")."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    if not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


class Database:
    """Thread-safe: SQLite gives each thread its own connection, PostgreSQL a pooled one per
    transaction; writes are short transactions."""

    def __init__(self, where: Path | PostgresTarget, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pg: PostgresEngine | None = None
        if isinstance(where, PostgresTarget):
            self.path = Path(where.shown)  # shown in messages: the URL without its password
            self.location = where.shown
            self._pg = PostgresEngine(where, IDENTITY_TABLES)
            try:
                with self._tx() as db:
                    migrate(db, where=self.location)
            except FactStoreError:
                self._pg.close()
                raise
            except self._pg.driver_errors as exc:
                self._pg.close()
                raise self._pg.error(exc) from None
            return
        self.path = Path(where).expanduser()
        self.location = str(self.path)
        try:
            _secure_file(self.path)
        except OSError as exc:
            raise FactStoreError(
                f"cannot create the fact store {self.path} ({exc.strerror or exc})",
                step="facts",
                fix="point [state] dir at a writable directory",
            ) from None
        with self._tx() as db:
            migrate(db, where=self.location)

    @property
    def engine(self) -> str:
        return "postgresql" if self._pg is not None else "sqlite"

    def _db(self) -> Any:
        """A connection for the caller's statements (the thread's transaction, if it is in one)."""
        if self._pg is not None:
            return self._pg.statement()
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        if self._pg is not None:
            with self._pg.transaction() as tx:
                yield tx
            return
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _now(self) -> str:
        return self._clock.now().astimezone(UTC).isoformat(timespec="microseconds")

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            return
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    @property
    def schema_version(self) -> int:
        return LATEST_VERSION
