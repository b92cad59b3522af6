"""Errors raised by the orchestrator. Each one says what failed and what to do about it.

Provider errors (``providers.base.ProviderError``) carry retry meaning; these carry *operator*
meaning: the CLI prints :meth:`OrchestratorError.render` (one line, no traceback) and maps the class
to an exit code (:attr:`OrchestratorError.exit_code`).
"""

from __future__ import annotations

from collections.abc import Sequence


class OrchestratorError(Exception):
    """Base class. ``step`` names the plan step (or phase) that failed, ``fix`` what to do."""

    exit_code: int = 1
    code: str = "orchestrator"

    def __init__(self, message: str, *, step: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.fix = fix

    def __str__(self) -> str:
        where = f"{self.step}: " if self.step else ""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{where}{self.message}{fix}"

    def render(self) -> str:
        """The one line the CLI prints."""
        return f"error: {self}"


class ConfigError(OrchestratorError):
    """The configuration is invalid. Names the file, the dotted field and the fix."""

    exit_code = 2
    code = "config"

    def __init__(self, file: str, field: str, message: str, fix: str) -> None:
        super().__init__(message, step="config", fix=fix)
        self.file = str(file)
        self.field = field

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} (fix: {self.fix})"

    def render(self) -> str:
        return f"config error: {self}"


class SelectionError(OrchestratorError):
    """An explicit selection (CLI ``--vm``/``--host`` names) does not name anything known."""

    exit_code = 2
    code = "selection"

    def __init__(self, name: str, candidates: Sequence[str]) -> None:
        self.name = name
        self.candidates = tuple(candidates)
        hint = f"did you mean {', '.join(repr(c) for c in self.candidates)}?" if self.candidates else ""
        fix = hint or "run `patchwave inventory` to list the names this configuration can see"
        super().__init__(f"no VM or host is named {name!r}", step="select", fix=fix)


class PlanBlocked(OrchestratorError):
    """Nothing in the plan can run (every target is blocked); the blockers say why."""

    code = "blocked"


class BudgetExhausted(OrchestratorError):
    """More VMs FAILED than ``policy.failure_budget`` allows; the run halts before the next wave."""

    code = "budget"

    def __init__(self, failed: int, budget: int, *, step: str = "") -> None:
        super().__init__(
            f"{failed} VM(s) failed, the failure budget is {budget}",
            step=step,
            fix="inspect the failed VMs (`patchwave status RUN`), fix them, then `patchwave resume RUN`",
        )
        self.failed = failed
        self.budget = budget


class WindowClosed(OrchestratorError):
    """The maintenance window closed (or its cutoff passed) before a step could start."""

    code = "window"

    def __init__(self, window: str, *, step: str = "", reopens_at: str = "") -> None:
        when = f"; it reopens at {reopens_at}" if reopens_at else ""
        super().__init__(
            f"maintenance window {window!r} is closed{when}",
            step=step,
            fix="`patchwave resume RUN` in the next window, or widen the window",
        )
        self.window = window
        self.reopens_at = reopens_at


class ConfigChanged(OrchestratorError):
    """A run is resumed with a configuration whose digest differs from the one it was planned with."""

    exit_code = 2
    code = "config_changed"

    def __init__(self, run_id: str, planned: str, current: str) -> None:
        super().__init__(
            f"run {run_id} was planned with config {planned[:12]}, the current config is {current[:12]}",
            step="resume",
            fix="restore the configuration the run was planned with, or start a new run",
        )
        self.run_id = run_id
        self.planned = planned
        self.current = current


class ApprovalRequired(OrchestratorError):
    """A ring with ``approval = true`` finished; promotion waits for ``patchwave approve RUN``."""

    code = "approval"

    def __init__(self, run_id: str, ring: str) -> None:
        super().__init__(
            f"ring {ring!r} of run {run_id} is waiting for approval",
            step=f"ring:{ring}",
            fix=f"`patchwave approve {run_id}` to promote the next ring",
        )
        self.run_id = run_id
        self.ring = ring


class FactStoreError(OrchestratorError):
    """The fact store cannot be opened or is from a newer patchwave (schema too new)."""

    code = "facts"
