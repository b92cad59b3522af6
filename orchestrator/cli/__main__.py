"""``python -m orchestrator.cli``: the ``patchwave`` command."""

from orchestrator.cli import main

main()
