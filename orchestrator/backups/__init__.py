"""Backups verified by restore: take, verify, prune and sweep, over a provider's BACKUP and
BACKUP_VERIFY capabilities and the fact store (every destructive call journalled before it happens).

The engine's activities call these functions with a :class:`BackupDeps`; see
:mod:`orchestrator.backups.creation`, :mod:`~orchestrator.backups.verification` and
:mod:`~orchestrator.backups.retention` for what each does and how it stays idempotent.
"""

from __future__ import annotations

from orchestrator.backups.creation import take
from orchestrator.backups.journal import BackupDeps
from orchestrator.backups.retention import prune
from orchestrator.backups.verification import sweep_copies, verify

__all__ = ["BackupDeps", "prune", "sweep_copies", "take", "verify"]
