"""Where things are in the checkout (for tests that run the CLI or read the repository's files)."""

from __future__ import annotations

from pathlib import Path

#: The repository root (the directory holding pyproject.toml).
REPO = Path(__file__).resolve().parents[2]
#: Captured real outputs of package managers and other fixtures.
DATA = REPO / "tests" / "data"
