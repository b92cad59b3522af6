"""Session-wide pytest hooks: the lab tests kept on one worker, and the crash-injection figures
printed at the end of the run.

The README's test command runs two pytest-xdist workers (``-n 2 --dist loadgroup``): every test
marked ``lab`` (the real Debian guest lab: libvirtd + QEMU TCG guests named ``pw-lab-N``, one lab at
a time) joins the xdist group ``lab``, so those run one after the other, in file order, on one worker
— while the other worker takes everything else.
"""

from __future__ import annotations

import json
import time

import pytest

_STARTED = time.time()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.xdist_group("lab"))


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
