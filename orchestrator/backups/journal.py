"""What the backup library works with, and how it puts every side effect on record.

:class:`BackupDeps` is the context the engine's activities hand in (no ambient globals): the
site's provider, the fact store, the clock and a logger. :class:`Journal` writes the step journal
(``FactStore.record_intent`` before a destructive call, ``record_result`` after) and the backup
tables (:class:`~orchestrator.facts.backups.BackupStore`) through one object.

Journal actions (:class:`~orchestrator.facts.actions.Action`): ``BACKUP_CREATE``, ``BACKUP_DELETE``,
``BACKUP_COPY_RESTORE``, ``BACKUP_COPY_DESTROY`` (intent + result each) and ``BACKUP_PROBE`` (result
only: probing changes nothing), each with a :class:`~orchestrator.facts.details.BackupDetail`
(platform ids, sizes, checksums, probe verdicts; never secrets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from orchestrator.facts.actions import Action
from orchestrator.facts.backups import BackupStore
from orchestrator.facts.details import BackupDetail
from orchestrator.facts.store import FactStore
from providers.base import Provider
from providers.errors import ProviderError
from providers.timing import SYSTEM_CLOCK, Clock, utc_now_iso


@dataclass(frozen=True)
class BackupDeps:
    """The provider of the VM's site, the fact store, the clock and the logger."""

    provider: Provider
    facts: FactStore
    clock: Clock = SYSTEM_CLOCK
    log: Any = field(default_factory=lambda: structlog.get_logger("patchwave.backups"))


class Journal:
    """The step journal of one (run, step) plus the backup tables."""

    def __init__(self, deps: BackupDeps, run_id: str, step_id: str) -> None:
        self.deps, self.run_id, self.step_id = deps, run_id, step_id
        self.store = BackupStore(deps.facts)
        self.log = deps.log.bind(run=run_id, step=step_id, site=deps.provider.site)

    def now(self) -> str:
        return utc_now_iso(self.deps.clock)

    def intent(self, action: Action, subject: str, detail: BackupDetail) -> None:
        """Before the call; ``subject`` (the VM or copy acted on) is the journal row's target."""
        self.deps.facts.record_intent(self.run_id, self.step_id, action, target=subject, detail=detail)

    def result(
        self, action: Action, subject: str, detail: BackupDetail, *, ok: bool, error: str = ""
    ) -> None:
        self.deps.facts.record_result(
            self.run_id, self.step_id, action, ok=ok, target=subject, detail=detail, error=error
        )

    def failed(self, action: Action, subject: str, exc: ProviderError, detail: BackupDetail) -> None:
        """The result record of a call that raised: the error, its code and whether a retry may help."""
        self.result(
            action, subject, replace(detail, code=exc.code, retryable=exc.retryable), ok=False, error=str(exc)
        )
