"""``patchwave autoupdates plan|apply|status`` on libvirt's test driver (no VMs, no lab).

The test-driver guests are fake Debian chroots reached with the real ``local`` channel
(patchwave_lab/fakeguest): they have an os-release but no systemd and no unattended-upgrades, and
their apt-get only knows ``update`` and ``upgrade``. So this is where the command line's contract
is checked without a lab: planning works, an apply that fails on a guest is that guest's row
(journaled: intent, then failed; exit 1, never a traceback), status reports what is missing as
drift (exit 1), an unknown ``--vm`` is bad input (exit 2). The real lab test
(tests/e2e/lab/test_autoupdates.py) covers the successful paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from orchestrator.cli import main as cli_main
from orchestrator.config.loader import load_settings
from orchestrator.facts.autoupdates import AutoUpdateJournal
from orchestrator.facts.store import FactStore
from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def fresh_logging() -> Iterator[None]:
    """The in-process CLI configures structlog onto pytest's captured stream; undo that afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    made = build(tmp_path / "bed", (GuestSpec("vm-1"),), port=unused_port())
    with made.config.open("a") as config:
        config.write('\n[autoupdates]\nmode = "coexist"\nmail = "root"\n')
    return made


def cli(bed: DriverBed, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["-c", str(bed.config), "--log-format", "json", "autoupdates", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_apply_and_status_through_the_command_line(
    bed: DriverBed, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(bed, capsys, "plan", "--output", "json")
    assert code == 0
    [row] = json.loads(out)
    assert (row["vm"]["name"], row["mode"], row["os"]) == (
        "vm-1",
        "coexist",
        "Debian GNU/Linux 12 (bookworm)",
    )
    assert "/etc/apt/apt.conf.d/90patchwave-unattended-upgrades" in [
        f["path"] for f in row["change"]["files"]
    ]

    code, out, err = cli(bed, capsys, "apply", "--output", "json")
    assert code == 1 and "Traceback" not in err
    [row] = json.loads(out)
    assert (
        row["error_code"] == "apply_failed" and "install" in row["error"]
    )  # the fake apt-get cannot install
    assert "vm-1" in err

    code, out, _ = cli(bed, capsys, "status", "--output", "json")
    assert code == 1
    [row] = json.loads(out)
    assert row["status"]["installed"] is False
    assert {"item": "installed", "expected": "yes", "actual": "no"} in row["status"]["drift"]

    settings = load_settings(bed.config)
    facts = FactStore(settings.state.facts_path)
    try:
        journal = AutoUpdateJournal(facts)
        actions = [r.action for r in reversed(journal.of_vm(journal.latest("status")[0].vm))]
        assert actions == ["intent", "failed", "status"]
    finally:
        facts.close()


def test_an_unknown_vm_is_bad_input(bed: DriverBed, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(bed, capsys, "status", "--vm", "vm-2")
    assert code == 2 and "vm-2" in err
