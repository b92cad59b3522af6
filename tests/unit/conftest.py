"""``module_schema``: a test module's migrated PostgreSQL schema, emptied for each test that takes
it (tests/support/postgres.py); created on first use only, dropped after the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import ModuleSchema


@pytest.fixture(scope="module")
def module_schema() -> Iterator[ModuleSchema]:
    schema = ModuleSchema()
    yield schema
    schema.close()
