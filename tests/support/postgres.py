"""The PostgreSQL server the tests use for the shared fact store, and a fresh schema per store.

Configured by ``.ci/setup-postgres.sh`` (CI always runs it): ``/etc/patchwave-test/postgres.url``
(the URL, no password) and ``postgres.password`` next to it; or ``$PATCHWAVE_TEST_POSTGRES_URL``
and ``$PATCHWAVE_TEST_POSTGRES_PASSWORD_FILE``. Without either, the PostgreSQL tests skip, saying
so; a configured server that does not answer fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from orchestrator.facts.engines.postgres import PostgresTarget

CONFIG_DIR = Path(os.environ.get("PATCHWAVE_TEST_PG_DIR", "/etc/patchwave-test"))
NOT_CONFIGURED = (
    "no PostgreSQL server configured for the tests: run .ci/setup-postgres.sh (as root) or set "
    "PATCHWAVE_TEST_POSTGRES_URL and PATCHWAVE_TEST_POSTGRES_PASSWORD_FILE"
)


@dataclass(frozen=True)
class TestServer:
    url: str
    password_file: Path

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def in_schema(self, schema: str) -> str:
        """The URL with ``search_path`` set to ``schema`` (libpq ``options``)."""
        parts = urlsplit(self.url)
        query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
        return urlunsplit((*parts[:3], urlencode(query), parts.fragment))


def server() -> TestServer | None:
    url = os.environ.get("PATCHWAVE_TEST_POSTGRES_URL", "")
    password = os.environ.get("PATCHWAVE_TEST_POSTGRES_PASSWORD_FILE", "")
    if not url and (CONFIG_DIR / "postgres.url").is_file():
        url = (CONFIG_DIR / "postgres.url").read_text().strip()
        password = password or str(CONFIG_DIR / "postgres.password")
    return TestServer(url, Path(password)) if url and password else None


def server_or_skip() -> TestServer:
    found = server()
    if found is None:
        pytest.skip(NOT_CONFIGURED)
    return found


@contextmanager
def fresh_schema(test_server: TestServer) -> Iterator[str]:
    """A new, empty schema (dropped with everything in it afterwards); yields its name."""
    import psycopg

    schema = f"pw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(test_server.url, password=test_server.password, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(test_server.url, password=test_server.password, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def fresh_target(pool_size: int = 4) -> Iterator[PostgresTarget]:
    """A :class:`PostgresTarget` on a fresh schema of the test server (skips when none is configured)."""
    test_server = server_or_skip()
    with fresh_schema(test_server) as schema:
        yield PostgresTarget(
            test_server.in_schema(schema), password=test_server.password, pool_size=pool_size
        )


class ModuleSchema:
    """One migrated schema for a test module, emptied (every table but ``schema_version``, ids
    restarted) before each test that takes it: a fresh store per test without re-running the
    migrations each time."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._target: PostgresTarget | None = None

    def target(self) -> PostgresTarget:
        from orchestrator.facts.schema import LATEST_VERSION
        from orchestrator.facts.store import FactStore

        test_server = server_or_skip()
        if self._target is None:
            schema = self._stack.enter_context(fresh_schema(test_server))
            self._target = PostgresTarget(
                test_server.in_schema(schema), password=test_server.password, pool_size=4
            )
            FactStore(self._target).close()  # migrated once
            self._schema = schema
            return self._target
        import psycopg

        with psycopg.connect(test_server.url, password=test_server.password, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name <> 'schema_version'", (self._schema,))]  # fmt: skip
            conn.execute(
                f"TRUNCATE {', '.join(f'{self._schema}.{t}' for t in tables)} RESTART IDENTITY CASCADE"
            )
            conn.execute(f"DELETE FROM {self._schema}.schema_version WHERE version > %s", (LATEST_VERSION,))
        return self._target

    def close(self) -> None:
        self._stack.close()
