"""The embedded server's ownership: the state directory's lock and how an owner is described."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.engine.ownership import ServerOwner, StateLock, _without_options, command_of


async def test_the_state_lock_is_one_holder_at_a_time_and_names_it(tmp_path: Path) -> None:
    first, second = StateLock(tmp_path / "temporal.db.lock"), StateLock(tmp_path / "temporal.db.lock")
    told: list[str] = []
    assert await first.acquire()
    assert not await second.acquire(timeout_s=1.5, notice=told.append)  # its own open file: excluded
    assert told and told[0].startswith(f"waiting for pid {os.getpid()}")
    first.release()
    assert await second.acquire(timeout_s=1.0) and second.held
    second.release()


def test_an_owner_is_named_by_pid_and_command() -> None:
    assert _without_options(["-c", "/etc/p.toml", "--log-format", "json", "run", "--run-id", "r1"]) == [
        "run", "--run-id", "r1",
    ]  # fmt: skip
    assert command_of(os.getpid())  # this test process: its command line
    assert str(ServerOwner(42, 43, "patchwave run --run-id r1")) == "pid 42 (patchwave run --run-id r1)"
    assert not ServerOwner(2**22 + 1).alive()
