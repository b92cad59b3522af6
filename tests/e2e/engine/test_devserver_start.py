"""A dev server that exits during startup is reported with its own reason (the last ``Error:`` line
of its log), not a guess: the hot-journal failure of CI seed 8f711647 was reported as "is the port
in use?" although the port was free."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.server import DevServer, DevServerSpec, EngineError
from orchestrator.engine.server_files import startup_error

pytestmark = pytest.mark.e2e


async def test_a_port_in_use_is_named_with_the_servers_reason_and_the_port_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = DevServerSpec(
            binary=temporal_binary(),
            db_file=tmp_path / "temporal.db",
            address=f"127.0.0.1:{port}",
            log_file=tmp_path / "temporal.log",
        )
        spec.log_file.write_text("Error: an earlier start's reason\n")  # the log is appended to
        with pytest.raises(EngineError) as caught:
            await DevServer(spec).start()
    message = str(caught.value)
    assert f"127.0.0.1:{port}: bind: address already in use" in message
    assert str(spec.log_file) in message
    assert "earlier start" not in message
    assert caught.value.fix == "free the port or set [temporal] address to another port"


def test_the_reason_is_the_last_error_line_of_the_log_shortened(tmp_path: Path) -> None:
    log = tmp_path / "temporal.log"
    assert startup_error(log) is None  # no log yet
    log.write_text("time=… level=ERROR msg=noise\nError: first\nwarning\nError: " + "x" * 1000 + "\n")
    reason = startup_error(log, limit=50)
    assert reason == "x" * 49 + "…"
    log.write_text("time=… level=ERROR msg=no Error line\n")
    assert startup_error(log) is None
    earlier = "Error: an earlier start's reason\n"
    log.write_text(earlier + "killed by a signal: no Error line\n")
    assert startup_error(log, len(earlier)) is None  # only what this start wrote
    assert startup_error(None) is None
