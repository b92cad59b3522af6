"""Temporal workflows (deterministic: no I/O; import-linter keeps them away from the activities and I/O)."""
