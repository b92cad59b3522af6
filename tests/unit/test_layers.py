"""The layers are enforced twice: statically by import-linter (``.importlinter``, also run by .ci/run),
and at run time — what importing the code really loads in a fresh interpreter (``sys.modules``).

import-linter sees every import statement (lazy ones inside functions too); the run-time check catches
what a static graph cannot: a package ``__init__`` that imports more than its docstring promises, or
an SDK pulled in by a third-party module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

SDKS = {"libvirt", "libvirtmod", "libvirt_qemu", "pyVmomi", "pyvmomi", "proxmoxer"}
ADAPTERS = ("providers.libvirt", "providers.vsphere", "providers.proxmox", "patchwave_lab")
#: What the workflow sandbox must never see: the I/O side and its libraries.
IO_MODULES = (
    "sqlite3", "paramiko", "apprise", "orchestrator.facts", "orchestrator.guests", "orchestrator.health",
    "orchestrator.context", "orchestrator.engine.activities", "orchestrator.notify",
)  # fmt: skip


def module_names(package: str) -> list[str]:
    names = []
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # running it is the CLI, not an import
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def loaded_after_importing(names: list[str]) -> list[str]:
    """The modules in sys.modules of a fresh interpreter after importing ``names``."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def under(modules: list[str], prefixes: tuple[str, ...] | set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_the_import_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=REPO, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    assert "0 broken" in done.stdout


def test_importing_every_orchestrator_module_loads_no_sdk_and_no_adapter() -> None:
    names = module_names("orchestrator")
    assert len(names) > 40
    loaded = loaded_after_importing(names)
    assert under(loaded, SDKS) == []
    assert under(loaded, ADAPTERS) == []


def test_importing_the_workflows_loads_no_io() -> None:
    names = module_names("orchestrator/engine/workflows")
    loaded = loaded_after_importing(names)
    assert set(names) <= set(loaded)
    assert under(loaded, IO_MODULES) == []
    assert under(loaded, SDKS) == []
