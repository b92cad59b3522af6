"""UpdateSelection mode "packages" (``run --cve``): the named installed packages go to their candidate,
nothing else is upgraded or installed; names are quoted; every command is valid POSIX shell."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import UpdateSelection
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.zypper import Zypper

ODD = "libstdc++6;touch${IFS}/tmp/pwned"
SELECTION = UpdateSelection("packages", packages=("demo-app", ODD))


@pytest.mark.parametrize(
    ("pm", "tail"),
    [
        (Apt(), "-y install --only-upgrade demo-app " + shlex.quote(ODD)),
        (Dnf(), "pw_dnf -y upgrade demo-app " + shlex.quote(ODD)),
        (Zypper(), "update --auto-agree-with-licenses demo-app " + shlex.quote(ODD)),
    ],
)
def test_only_the_named_packages_are_upgraded_and_their_names_are_quoted(pm, tail: str) -> None:
    command = pm.apply_command(SELECTION)
    assert command.endswith(tail), command
    check = subprocess.run(["/bin/sh", "-n", "-c", command], check=False, capture_output=True, text=True)
    assert check.returncode == 0, (command, check.stderr)


def test_the_packages_mode_needs_a_package() -> None:
    with pytest.raises(ValueError, match="needs at least one package"):
        UpdateSelection("packages")
    assert UpdateSelection("packages", packages=("demo-app",)).pins == ()
