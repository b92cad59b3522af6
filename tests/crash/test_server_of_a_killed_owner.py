"""Regression (CI, tests/e2e/test_resume.py): `patchwave run` was SIGKILLed; its dev server got
SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and was still answering while it stopped. The next
command's ``DevServer.start`` probed it, decided to reuse it, and failed a moment later with
"tcp connect error" when the server was gone.

Now the pid file records the owner (``<server pid> <owner pid>``): a server whose owner is dead is
stopping, so the next start waits for it to exit and starts its own; and a reused server that
vanishes between the probe and the first call makes the start look again instead of failing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.server import DevServer, DevServerSpec
from orchestrator.engine.server_files import process_alive, read_pid_file
from tests.support.loopback import unused_port
from tests.support.paths import REPO

pytestmark = pytest.mark.e2e

OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from orchestrator.engine.server import DevServer, DevServerSpec

    async def main():
        spec = DevServerSpec(binary=Path(sys.argv[1]), db_file=Path(sys.argv[2]), address=sys.argv[3])
        await DevServer(spec).start()
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def start_owner(db_file: Path, address: str) -> subprocess.Popen[str]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(temporal_binary()), str(db_file), address],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "ready"
    return owner


async def test_the_server_of_a_killed_owner_is_not_reused_while_it_stops(tmp_path: Path) -> None:
    db_file = tmp_path / "state" / "temporal.db"
    address = f"127.0.0.1:{unused_port()}"
    for round_ in range(3):
        owner = start_owner(db_file, address)
        recorded = read_pid_file(db_file.with_name("temporal.db.pid"))
        assert recorded is not None and recorded[1] == owner.pid, recorded
        old_server = recorded[0]

        owner.send_signal(signal.SIGKILL)  # as crash injection and test_resume do
        owner.wait()
        server = DevServer(DevServerSpec(binary=temporal_binary(), db_file=db_file, address=address))
        client = await server.start()  # before the fix: reused the stopping server, then failed
        try:
            assert server.owned, f"round {round_}: reused the stopping server of a dead owner"
            assert await client.service_client.check_health()
            assert read_pid_file(server.pid_file) == (server._proc.pid, os.getpid())  # type: ignore[union-attr]
            assert not process_alive(old_server), "started beside the old server instead of after it"
        finally:
            await server.stop()


async def test_a_server_whose_owner_lives_is_reused(tmp_path: Path) -> None:
    db_file = tmp_path / "state" / "temporal.db"
    address = f"127.0.0.1:{unused_port()}"
    owner = start_owner(db_file, address)
    try:
        server = DevServer(DevServerSpec(binary=temporal_binary(), db_file=db_file, address=address))
        client = await server.start()
        assert not server.owned
        assert await client.service_client.check_health()
        await server.stop()  # not ours: left running
        assert read_pid_file(db_file.with_name("temporal.db.pid"))[1] == owner.pid  # type: ignore[index]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 20
        recorded = read_pid_file(db_file.with_name("temporal.db.pid"))
        while recorded and process_alive(recorded[0]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the owner's server stops on its SIGTERM (PR_SET_PDEATHSIG)


def test_a_pid_file_of_an_older_version_holds_the_server_pid_only(tmp_path: Path) -> None:
    pid_file = tmp_path / "temporal.db.pid"
    pid_file.write_text("1234\n")
    assert read_pid_file(pid_file) == (1234, None)
    pid_file.write_text("1234 99\n")
    assert read_pid_file(pid_file) == (1234, 99)
    pid_file.write_text("garbage\n")
    assert read_pid_file(pid_file) is None
