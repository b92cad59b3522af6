"""The PostgreSQL engine: a connection pool (psycopg 3, ``psycopg_pool``), one pooled connection per
transaction, SQL translated by :mod:`.dialect`.

Writers are serialized by a transaction-level advisory lock (:data:`WRITE_LOCK`), the equivalent of
SQLite's ``BEGIN IMMEDIATE``: the store's read-then-write transactions (leases, snapshot intents)
keep the meaning they have on SQLite, across every worker of a cluster. Reads outside a
transaction take a pooled connection for the one statement.

The password never enters the URL patchwave shows or logs: it is passed to libpq as a separate
keyword (from ``[facts] password``, a secret reference), and errors name the URL without it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from orchestrator.errors import FactStoreError
from orchestrator.facts.engines.dialect import PRELUDE, inserted_table, to_postgres

#: pg_advisory_xact_lock key of the store's write transactions ("patchwav" in ASCII).
WRITE_LOCK = 0x7061746368776176
#: Rows inserted by one ``executemany`` after which the table is analyzed (see Connection.executemany).
ANALYZE_AFTER = 1000


@dataclass(frozen=True)
class PostgresTarget:
    """Where a shared fact store lives: a ``postgresql://user@host:port/db?sslmode=...`` URL (no
    password in it) and the password, resolved from its reference (repr never shows it)."""

    url: str
    password: str = field(default="", repr=False)
    pool_size: int = 8

    @property
    def shown(self) -> str:
        """The URL as errors and logs show it (no password, no query string)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = (
            (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
        )
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Row:
    """A result row readable by column name and by position, like ``sqlite3.Row``."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key]] if isinstance(key, str) else self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


class Cursor:
    """The rows of one statement (read in full), its ``rowcount`` and ``lastrowid``."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Row]:
        rest, self._at = self._rows[self._at :], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row


def _param(value: object) -> object:
    return int(value) if isinstance(value, bool) else value  # SQLite's booleans are integers


def _params(args: Any) -> Any:
    if args is None:
        return ()
    if isinstance(args, Mapping):
        return {k: _param(v) for k, v in args.items()}
    return tuple(_param(v) for v in args)


class Connection:
    """One pooled connection inside a transaction, with sqlite3.Connection's ``execute``/``executemany``."""

    def __init__(self, conn: Any, identity: frozenset[str]) -> None:
        self._conn = conn
        self._identity = identity

    def execute(self, sql: str, args: Any = None) -> Cursor:
        text = to_postgres(sql)
        returning = inserted_table(sql) in self._identity and "RETURNING" not in sql.upper()
        if returning:
            text += " RETURNING id"
        cur = self._conn.execute(text, _params(args))
        rows = _rows(cur)
        lastrowid = int(rows[0][0]) if returning and rows else None
        return Cursor([] if returning else rows, cur.rowcount, lastrowid)

    def executemany(self, sql: str, args: Iterable[Any]) -> Cursor:
        batch = [_params(a) for a in args]
        if not batch:
            return Cursor([], 0, None)
        with self._conn.cursor() as cur:
            cur.executemany(to_postgres(sql), batch)
            rowcount = cur.rowcount
        table = inserted_table(sql)
        if table and len(batch) >= ANALYZE_AFTER:
            # A bulk insert (50,000 leases, a plan's steps) leaves the planner with no statistics in
            # this transaction: it would then scan a non-selective index for the next statements.
            self._conn.execute(f"ANALYZE {table}")
        return Cursor([], rowcount, None)


def _rows(cur: Any) -> list[Row]:
    if cur.description is None:
        return []
    index = {c.name: i for i, c in enumerate(cur.description)}
    return [Row(values, index) for values in cur.fetchall()]


class PostgresEngine:
    """A pool of connections to one database; :meth:`transaction` and :meth:`statement`."""

    def __init__(self, target: PostgresTarget, identity: frozenset[str]) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool, PoolTimeout
        except ImportError:
            raise FactStoreError(
                "[facts] url names PostgreSQL, but psycopg is not installed",
                step="facts",
                fix="install patchwave[postgres] (psycopg 3 and psycopg_pool)",
            ) from None
        self.target = target
        #: What the driver raises (wrapped by :meth:`error` where the store is opened).
        self.driver_errors: tuple[type[BaseException], ...] = (psycopg.Error, PoolTimeout)
        self._identity = identity
        self._local = threading.local()
        kwargs: dict[str, Any] = {"password": target.password} if target.password else {}
        self._pool = ConnectionPool(
            target.url,
            kwargs=kwargs,
            min_size=1,
            max_size=max(target.pool_size, 1),
            configure=_configure,
            open=False,
            name="patchwave-facts",
        )
        try:
            self._pool.open(wait=True, timeout=30.0)
            with self.transaction() as db:
                for statement in PRELUDE:
                    db.execute(statement)
        except self.driver_errors as exc:
            self._pool.close()
            raise self.error(exc) from None

    def error(self, exc: BaseException) -> FactStoreError:
        """A driver error as a FactStoreError naming the store (never its password)."""
        message = str(exc).replace(self.target.password, "***") if self.target.password else str(exc)
        return FactStoreError(
            f"the fact store {self.target.shown} failed: {message.strip().splitlines()[0] if message else type(exc).__name__}",
            step="facts",
            fix="check [facts] url and password, and that the PostgreSQL server accepts this client",
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (serialized with every other writer of this database)."""
        current = getattr(self._local, "tx", None)
        if current is not None:
            yield current
            return
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            db = Connection(conn, self._identity)
            self._local.tx = db
            try:
                yield db
            finally:
                self._local.tx = None

    def statement(self) -> Connection | _OneShot:
        """The thread's transaction if it is in one, else a connection that pools per statement."""
        current: Connection | None = getattr(self._local, "tx", None)
        return current if current is not None else _OneShot(self)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._pool.connection() as conn:
            yield Connection(conn, self._identity)

    def close(self) -> None:
        self._pool.close()


class _OneShot:
    """``execute``/``executemany`` each on a pooled connection, committed at once."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._engine = engine

    def execute(self, sql: str, args: Any = None) -> Cursor:
        with self._engine.reading() as db:
            return db.execute(sql, args)

    def executemany(self, sql: str, args: Iterable[Any]) -> Cursor:
        with self._engine.transaction() as db:
            return db.executemany(sql, args)


def _configure(conn: Any) -> None:
    """numeric (SUM/AVG of integers) read as int or float, like SQLite's values."""
    from psycopg.adapt import Loader

    class NumberLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    conn.adapters.register_loader("numeric", NumberLoader)
    conn.autocommit = False
