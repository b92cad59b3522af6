"""Fixtures shared by the end-to-end tests.

``env`` is Temporal's time-skipping test server (``temporal-test-server`` from its wheel: the SDK's
download does not work offline), one per test. A module that needs another environment under the same
name (tests/e2e/test_schedules.py: a real dev server) defines its own ``env``, which takes precedence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.temporal import test_server_binary as find_test_server


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_test_server())
    )
    try:
        yield environment
    finally:
        await environment.shutdown()
