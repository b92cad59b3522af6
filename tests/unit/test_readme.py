"""The README's two set-up commands are the contract with users and with CI."""

from __future__ import annotations

import re

from tests.support.paths import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.DOTALL)


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert all(cmd.startswith("bash .ci/install && ") for cmd in commands)
    assert "patchwave demo" in commands[0]


def test_ci_runs_the_readme_test_command() -> None:
    readme_test = _readme_commands()[1].removeprefix("bash .ci/install && ").strip()
    ci_lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "bash .ci/install" in ci_lines
    assert readme_test in ci_lines
    assert ci_lines.index("bash .ci/install") < ci_lines.index(readme_test)
