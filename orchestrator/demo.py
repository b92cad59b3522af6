"""`patchwave demo`: a complete rollout on the embedded default, against libvirt's test driver.

``config/testdriver.toml`` in a temporary state directory: the embedded Temporal dev server (on a
free loopback port, so a server someone else runs on 7233 is never shared), the in-process
workers, and the test driver's domain ``test`` whose guest is a fake Debian root file system
(``tests/fakeguest``) reached through the real ``local`` channel (chroot). The run discovers,
plans, snapshots, patches (apt-like), checks health and keeps the snapshot until its TTL. Needs the source checkout (config/ and tests/).
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from orchestrator.cli_settings import load
from orchestrator.errors import OrchestratorError
from orchestrator.model import RunRequest, RunSummary
from orchestrator.operations import ProgressFn, run
from orchestrator.runs import new_run_id

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "testdriver.toml"
#: The fake guest of the domain "test": what is installed, and what the fake repository offers.
INSTALLED = {"demo-app": "1.0.0", "openssl": "3.0.11-1~deb12u2", "tzdata": "2024a-0+deb12u1"}
AVAILABLE = {"demo-app": "1.0.1", "openssl": "3.0.15-1~deb12u1", "tzdata": "2025b-0+deb12u1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_guest(state: Path) -> Path:
    """Create the fake guest the test-driver config expects at ``<state>/guests/test``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from tests.fakeguest import FakeGuest
    except ImportError as exc:
        raise OrchestratorError(
            f"the demo needs the source checkout ({exc})",
            step="demo",
            fix="run `patchwave demo` from a git checkout of patchwave",
        ) from None
    root = state / "guests" / "test"
    FakeGuest.create(root, installed=INSTALLED, repo=AVAILABLE)
    return root


async def run_demo(*, keep: bool, on_progress: ProgressFn, log_format: str = "") -> tuple[RunSummary, Path]:
    if not CONFIG.is_file():
        raise OrchestratorError(
            f"{CONFIG} is missing", step="demo", fix="run the demo from a source checkout"
        )
    state = Path(tempfile.mkdtemp(prefix="patchwave-demo-"))
    try:
        settings = load(CONFIG, state_dir=state, log_format=log_format)
        settings = replace(settings, temporal=replace(settings.temporal, address=f"127.0.0.1:{free_port()}"))
        prepare_guest(state)
        request = RunRequest(run_id=new_run_id(), config_digest=settings.digest, requested_by="demo")
        summary = await run(settings, request, on_progress=on_progress)
    finally:
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
    return summary, state
