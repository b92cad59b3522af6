"""The layers are enforced: ``orchestrator`` never imports a hypervisor SDK, adapters never import each other.

Two independent checks: the import statements of every module (AST, so a lazy import inside a
function counts too), and what importing every ``orchestrator`` module really loads (a fresh
interpreter, ``sys.modules``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDKS = {"libvirt", "libvirtmod", "pyVmomi", "pyvmomi", "proxmoxer"}
#: Adapter families inside providers/ (module-name prefixes) and the SDK each may import.
FAMILIES = {
    "libvirt": ("providers.libvirt", {"libvirt", "libvirtmod"}),
    "vsphere": ("providers.vsphere", {"pyVmomi", "pyvmomi"}),
    "proxmox": ("providers.proxmox", {"proxmoxer"}),
    "lab": ("providers.lab", {"libvirt", "libvirtmod"}),
}
#: The lab drives libvirt guests, so it may use the libvirt adapter; nothing else crosses families.
ALLOWED_CROSSING = {("lab", "libvirt")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str | None = None) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, id(node) in top_level))
            found += [(f"{base}.{alias.name}", id(node) in top_level) for alias in node.names]
    return found


def modules_under(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def family_of(module: str) -> str | None:
    for family, (prefix, _sdks) in FAMILIES.items():
        if module == prefix or module.startswith((prefix + ".", prefix + "_")):
            return family
    return None


def test_the_orchestrator_never_imports_an_sdk_or_an_adapter() -> None:
    offences = []
    for path in modules_under("orchestrator"):
        for name, top in imports(path):
            root = name.split(".")[0]
            if root in SDKS:
                offences.append(f"{module_name(path)} imports the SDK {name}")
            family = family_of(name)
            # Only providers / providers.base at module level; the CLI's `lab` commands delegate
            # to providers.lab through a lazy import inside the command.
            if family is not None and (top or family != "lab"):
                offences.append(f"{module_name(path)} imports the adapter module {name}")
    assert offences == [], "\n".join(offences)


def test_adapters_never_import_each_other_nor_a_foreign_sdk() -> None:
    offences = []
    checked = 0
    for path in modules_under("providers"):
        own = family_of(module_name(path))
        if own is None:
            continue
        checked += 1
        for name, _top in imports(path):
            other = family_of(name)
            if other is not None and other != own and (own, other) not in ALLOWED_CROSSING:
                offences.append(f"{module_name(path)} ({own}) imports {name} ({other})")
            root = name.split(".")[0]
            if root in SDKS and root not in FAMILIES[own][1]:
                offences.append(f"{module_name(path)} ({own}) imports the foreign SDK {name}")
    assert checked >= 3, "expected the libvirt, vSphere and Proxmox adapter modules under providers/"
    assert offences == [], "\n".join(offences)


def test_importing_every_orchestrator_module_loads_no_sdk() -> None:
    names = [module_name(p) for p in modules_under("orchestrator")]
    script = (
        "import importlib, json, sys\n"
        f"names = {names!r}\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"sdks = {sorted(SDKS)!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in sdks)\n"
        "adapters = sorted(m for m in sys.modules if m.startswith(('providers.libvirt', 'providers.vsphere',"
        " 'providers.proxmox', 'providers.lab')))\n"
        "print(json.dumps({'count': len(names), 'sdks': loaded, 'adapters': adapters}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["count"] == len(names) > 10
    assert report["sdks"] == [], f"importing orchestrator loaded SDK modules: {report['sdks']}"
    assert report["adapters"] == [], f"importing orchestrator loaded adapter modules: {report['adapters']}"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("import libvirt\n", [("libvirt", True)]),
        (
            "def f():\n    from providers import vsphere\n",
            [("providers", False), ("providers.vsphere", False)],
        ),
        ("from ..providers.base import X\n", [("providers.base", True), ("providers.base.X", True)]),
    ],
)
def test_the_import_scanner_sees_top_level_lazy_and_relative_imports(
    tmp_path: Path, source: str, expected: list
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert imports(probe, module="orchestrator.probe") == expected
