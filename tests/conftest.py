"""Session-wide pytest hooks: the lab tests kept on one worker, and the crash-injection figures
printed at the end of the run.

The README's test command runs two pytest-xdist workers (``-n 2``) with the scheduler below: every
test file is one unit (its tests run in file order on one worker: module fixtures and tests that
build on each other stay together), and all the files of the real Debian guest lab (libvirtd + QEMU
TCG guests named ``pw-lab-N``: one lab at a time on this machine) form a single unit, so they run
one after the other on one worker while the other worker takes everything else.

(xdist's own ``--dist loadgroup`` does not group under pytest 9: the ``@group`` suffix it writes
into ``item._nodeid`` no longer reaches the scheduler, so the grouping is done here, by path.)
"""

from __future__ import annotations

import json
import time

import pytest

_STARTED = time.time()


#: Where the tests marked ``lab`` live (checked at collection: a lab test elsewhere is refused).
LAB_PATHS = ("tests/e2e/lab/", "tests/crash/test_lab_injection.py")


def lab_scope(nodeid: str) -> str:
    """The unit of work of a test for the xdist scheduler: "lab" for the lab's files, else its file."""
    path = nodeid.split("::", 1)[0]
    return "lab" if path.startswith(LAB_PATHS) else path


@pytest.hookimpl(optionalhook=True)  # only with pytest-xdist (the test extra installs it)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class LabOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lab_scope(nodeid)

    return LabOnOneWorker(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stray = [
        i.nodeid for i in items if i.get_closest_marker("lab") is not None and lab_scope(i.nodeid) != "lab"
    ]
    if stray:
        raise pytest.UsageError(
            f"{stray[0]} is marked lab but is not under {' or '.join(LAB_PATHS)}: move it there"
            " (tests/conftest.py LAB_PATHS), so that it never runs beside another lab test"
        )


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the headline of tests/crash's JSON summary if this session wrote one."""
    from tests.crash.harness import headline, summary_path

    path = summary_path()
    if not path.exists() or path.stat().st_mtime < _STARTED:
        return
    try:
        data = json.loads(path.read_text())
        line = headline(data)
    except (OSError, ValueError, KeyError) as exc:
        terminalreporter.write_line(f"crash injection: unreadable summary {path}: {exc}")
        return
    terminalreporter.write_sep("-", "crash injection")
    for result in data.get("results", []):
        if not result.get("clean", True):
            terminalreporter.write_line(f"DIRTY {result['replay']}")
    terminalreporter.write_line(line)
