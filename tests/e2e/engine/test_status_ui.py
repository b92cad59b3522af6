"""``status RUN`` links the run in the Temporal web UI when the embedded server serves it (``--ui``).

A real ``patchwave serve --ui`` (the dev server with its UI on the frontend port + 1000), a real run
attached to it, then ``status``: the link it prints answers over HTTP. Without ``--ui`` no link.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from orchestrator.engine.server import UI_PORT_OFFSET
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import GuestSpec, build

pytestmark = pytest.mark.e2e


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_status_links_the_run_in_the_temporal_ui_of_serve_ui(tmp_path: Path) -> None:
    port = unused_port()
    bed = build(tmp_path / "bed", (GuestSpec("pw-web-1"),), port=port)
    config = str(bed.config)
    serve = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "-c", config, "serve", "--ui"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port + UI_PORT_OFFSET}/")
        done = cli("-c", config, "run", "--run-id", "run-ui-1")
        assert done.returncode == 0, done.stderr[-3000:]
        status = cli("-c", config, "status", "run-ui-1")
        assert status.returncode == 0, status.stderr[-3000:]
        links = [
            line.removeprefix("Temporal UI: ")
            for line in status.stdout.splitlines()
            if line.startswith("Temporal UI: ")
        ]
        assert len(links) == 1, status.stdout
        assert links[0].startswith(
            f"http://127.0.0.1:{port + UI_PORT_OFFSET}/namespaces/default/workflows?query="
        )
        assert "run-ui-1" in urllib.parse.unquote(links[0])
        with urllib.request.urlopen(links[0], timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read(4096).lower()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
    # the UI is gone with serve's server: status (starting a headless server for the question) links nothing
    again = cli("-c", config, "status", "run-ui-1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Temporal UI" not in again.stdout
