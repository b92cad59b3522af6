"""Session-wide pytest hooks. Only one: the crash-injection figures, printed at the end of the run."""

from __future__ import annotations

import json
import time

import pytest

_STARTED = time.time()


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
