"""The fact store's contract tests run on both engines: ``store_at`` gives a fresh location per call,
an SQLite file under ``tmp_path`` or a fresh PostgreSQL schema (tests/support/postgres.py; skipped,
with the reason, only when no server is configured — CI always configures one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from orchestrator.facts.engines.postgres import PostgresTarget
from tests.support.postgres import ModuleSchema, fresh_target

Where = Path | PostgresTarget


@pytest.fixture(params=["sqlite", "postgres"])
def store_at(
    request: pytest.FixtureRequest, tmp_path: Path, module_schema: ModuleSchema
) -> Iterator[Callable[[], Where]]:
    """``store_at()``: where a new, empty fact store goes (call it again for another, separate one).
    PostgreSQL: the module's schema emptied first, a fresh schema for a second store of a test."""
    engine = request.param
    with ExitStack() as stack:
        made = iter(range(1000))

        def where() -> Where:
            n = next(made)
            if engine == "sqlite":
                return tmp_path / f"facts-{n}.db"
            return module_schema.target() if n == 0 else stack.enter_context(fresh_target())

        yield where
