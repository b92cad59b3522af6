"""Regression (found by crash injection, vsphere/server seed final1 #15): a dev server SIGKILLed during
its very first start left ``temporal.db`` half created. Every later start failed with
"no such table: cluster_metadata_info" (reported as "is the port in use?"), so `patchwave resume`
and every new run of that state directory failed until someone deleted the file by hand.

Now a database without cluster metadata (the server never ran on it, so it holds no workflow) is
set aside as ``temporal.db.incomplete-<time>`` and a fresh one is created; a complete database is
never touched.

Second regression (CI crash campaign seed 8f711647 #97, libvirt/server, killed right after the
server's spawn): the kill landed inside a schema transaction and left a hot journal
(``temporal.db-journal``). The check opened the file read-only, which cannot roll a hot journal back
("attempt to write a readonly database"), took that for "not ours to judge" and left the file; the
next server rolled it back itself, found no ``cluster_metadata_info`` and exited. Measured with
servers SIGKILLed 0-150 ms after spawn: 17 of 150 restarts failed before, 0 after.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.server import DevServer, DevServerSpec
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e


def spec(state: Path) -> DevServerSpec:
    return DevServerSpec(
        binary=temporal_binary(),
        db_file=state / "temporal.db",
        address=f"127.0.0.1:{unused_port()}",
        log_file=state / "temporal.log",
    )


async def assert_starts_and_sets_the_file_aside(state: Path) -> None:
    """A server starts on ``state`` and the database found there was set aside, alone (no second
    ``temporal.db.incomplete-*`` file such as a journal beside it)."""
    server = DevServer(spec(state))
    client = await server.start()
    try:
        assert await client.service_client.check_health()
    finally:
        await server.stop()
    aside = sorted(p.name.split("-", 1)[0] for p in state.glob("temporal.db.incomplete-*"))
    assert aside == ["temporal.db.incomplete"]


async def test_a_half_created_database_is_set_aside_and_the_server_starts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "temporal.db") as db:  # what the killed first start left behind
        db.execute("CREATE TABLE namespaces (partition_id INTEGER, id BLOB)")
    await assert_starts_and_sets_the_file_aside(state)


#: A schema being created when SIGKILL arrives: one committed table, then a transaction whose pages
#: spill to the file (cache_size=1) so the journal is hot, as the killed server left it.
KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")
db.execute("CREATE TABLE namespaces (partition_id INTEGER, id BLOB)")
db.execute("BEGIN")
db.execute("CREATE TABLE cluster_metadata_info (cluster TEXT, data BLOB)")
db.execute("INSERT INTO cluster_metadata_info VALUES ('active', zeroblob(20000))")
for i in range(50):
    db.execute(f"CREATE TABLE t{i} (a INTEGER, b BLOB)")
    db.execute(f"INSERT INTO t{i} VALUES (1, zeroblob(4000))")
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_a_half_created_database_with_a_hot_journal_is_rolled_back_and_set_aside(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db_file = state / "temporal.db"
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLED_WRITER, str(db_file))
    assert await writer.wait() == -signal.SIGKILL
    assert (state / "temporal.db-journal").stat().st_size > 0
    readonly = closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True))
    with readonly as db, pytest.raises(sqlite3.OperationalError, match="readonly"):  # the old check
        db.execute("SELECT * FROM sqlite_master").fetchall()
    await assert_starts_and_sets_the_file_aside(state)  # the rolled-back file; its journal was consumed
    with sqlite3.connect(db_file) as db:
        assert db.execute("SELECT COUNT(*) FROM cluster_metadata_info").fetchone()[0] >= 1


async def test_a_complete_database_is_kept_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for _ in range(2):
        server = DevServer(spec(state))
        await server.start()
        await server.stop()
    assert list(state.glob("temporal.db.incomplete-*")) == []
    with sqlite3.connect(state / "temporal.db") as db:
        assert db.execute("SELECT COUNT(*) FROM cluster_metadata_info").fetchone()[0] >= 1
