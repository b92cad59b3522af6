"""The wheel works outside the checkout: built, installed into a fresh venv, run from a temp directory.

The wheel is built from a copy of what it is made of (pyproject.toml, README.md, LICENSE and the
three packages — the checkout gets no build/ or egg-info), installed with the ``libvirt`` extra from
the package index pip is configured with (the local mirror; pip's cache keeps the compiled
libvirt-python wheel for reruns) into a venv in a temp directory, and run there with a clean
environment (no PYTHONPATH): ``patchwave demo --testdriver`` must run its rollout with the
configuration and the fake guest's tools that ship in the wheel (their executable bits intact), and
``python -m patchwave_lab --help`` must answer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "orchestrator", "providers", "patchwave_lab")
#: Where the installed interpreter finds the packages, the fake guest's tools, the demo's config, the report template.
WHERE = """
import importlib.resources, orchestrator, patchwave_lab.demo, patchwave_lab.fakeguest
print(orchestrator.__file__, patchwave_lab.fakeguest.BIN, patchwave_lab.demo.CONFIG)
print(importlib.resources.files("orchestrator.reporting.templates").joinpath("report.html"))
"""
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900):
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (outside the checkout) with the wheel of this checkout installed, libvirt extra included."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)], cwd=work)
    [wheel] = (work / "dist").glob("patchwave-*.whl")
    venv.create(work / "venv", with_pip=True)
    run([str(work / "venv/bin/pip"), "install", "-q", f"{wheel}[libvirt]"], cwd=work)
    return work / "venv"


def test_the_installed_package_is_the_wheels_with_its_data_and_executable_tools(installed: Path) -> None:
    where = run(
        [str(installed / "bin/python"), "-c", WHERE], cwd=installed.parent, env=CLEAN_ENV
    ).stdout.split()
    site = installed / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where  # not the checkout
    tools = sorted(Path(where[1]).iterdir())
    assert {t.name for t in tools} >= {"apt-get", "dpkg-query", "demo-health", "reboot", "systemctl"}
    assert all(t.stat().st_mode & 0o111 == 0o111 for t in tools), [oct(t.stat().st_mode) for t in tools]
    assert Path(where[2]).is_file() and Path(where[3]).is_file()  # the demo's config, the report template
    version = run([str(installed / "bin/patchwave"), "--version"], cwd=installed.parent, env=CLEAN_ENV)
    assert version.stdout.strip() == "patchwave 0.1.0"


def test_patchwave_demo_testdriver_runs_from_the_wheel(installed: Path) -> None:
    home = installed.parent / "home"
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [str(installed / "bin/patchwave"), "demo", "--testdriver"],
        cwd=installed.parent,
        env={**CLEAN_ENV, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ": succeeded" in done.stdout and "test/test" in done.stdout
    assert "(removed)" in done.stderr and "Traceback" not in done.stderr


def test_python_m_patchwave_lab_answers_from_the_wheel(installed: Path) -> None:
    done = run(
        [str(installed / "bin/python"), "-m", "patchwave_lab", "--help"], cwd=installed.parent, env=CLEAN_ENV
    )
    assert "usage: python -m patchwave_lab" in done.stdout
    for command in ("up", "down", "status", "publish"):
        assert command in done.stdout
