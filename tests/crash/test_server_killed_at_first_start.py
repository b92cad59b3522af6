"""Regression (found by crash injection, vsphere/server seed final1 #15): a dev server SIGKILLed during
its very first start left ``temporal.db`` half created. Every later start failed with
"no such table: cluster_metadata_info" (reported as "is the port in use?"), so `patchwave resume`
and every new run of that state directory failed until someone deleted the file by hand.

Now a database without cluster metadata (the server never ran on it, so it holds no workflow) is
set aside as ``temporal.db.incomplete-<time>`` and a fresh one is created; a complete database is
never touched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.devserver import DevServer, DevServerSpec, temporal_binary
from tests.loopback import unused_port

pytestmark = pytest.mark.e2e


def spec(state: Path) -> DevServerSpec:
    return DevServerSpec(
        binary=temporal_binary(),
        db_file=state / "temporal.db",
        address=f"127.0.0.1:{unused_port()}",
        log_file=state / "temporal.log",
    )


async def test_a_half_created_database_is_set_aside_and_the_server_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "temporal.db") as db:  # what the killed first start left behind
        db.execute("CREATE TABLE namespaces (partition_id INTEGER, id BLOB)")
    server = DevServer(spec(state))
    client = await server.start()
    try:
        assert await client.service_client.check_health()
    finally:
        await server.stop()
    assert [p.name.split("-")[0] for p in state.glob("temporal.db.incomplete-*")] == [
        "temporal.db.incomplete"
    ]


async def test_a_complete_database_is_kept_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for _ in range(2):
        server = DevServer(spec(state))
        await server.start()
        await server.stop()
    assert list(state.glob("temporal.db.incomplete-*")) == []
    with sqlite3.connect(state / "temporal.db") as db:
        assert db.execute("SELECT COUNT(*) FROM cluster_metadata_info").fetchone()[0] >= 1
