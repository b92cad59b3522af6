"""``run --cve`` / ``--now`` bad input: exit 2, one line naming the option and the fix, nothing started
(no temporal.db). Real CLI processes on the test-driver bed, like tests/unit/cli/test_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build
from tests.unit.cli.test_bad_input import one_error, patchwave


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    return build(tmp_path / "bed", (GuestSpec("pw-web-1"),), port=unused_port())


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--cve", "CVE-24-1"), ("--cve: 'CVE-24-1' is not a CVE id", "CVE-YYYY-NNNN")),
        (("--now",), ("--now: --now overrides maintenance windows for a CVE run only",)),
        (("--cve", "CVE-2099-0001", "--dry-run"), ("--dry-run does not plan CVE runs", "assess --view cve")),
    ],
)
def test_run_cve_refuses_bad_input_before_starting_anything(bed: DriverBed, args, fragments) -> None:
    done = patchwave("-c", str(bed.config), "run", *args, cwd=bed.root)
    one_error(done, 2, *fragments)
    assert not (bed.state / "temporal.db").exists()
