"""Errors raised by the orchestrator. Each one says what failed and what to do about it.

Provider errors (``providers.errors.ProviderError``) carry retry meaning; these carry *operator*
meaning: the CLI prints :meth:`OrchestratorError.render` (one line, no traceback) and maps the class
to an exit code (:attr:`OrchestratorError.exit_code`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

#: Error class names (``ApplicationError.type`` once raised in an activity) that mean bad input (exit 2).
BAD_INPUT_TYPES = frozenset(
    {
        "ConfigError",
        "ConfigChanged",
        "SelectionError",
        "SettingsError",
        "RunNotFound",
        "EndpointInvalid",
        "LeaseHeld",
        "CveSelectionError",
    }
)


class OrchestratorError(Exception):
    """Base class. ``step`` names the plan step (or phase) that failed, ``fix`` what to do."""

    exit_code: int = 1
    code: str = "orchestrator"
    #: Operator errors (bad configuration, an unknown name, a changed config): another attempt of
    #: the same activity cannot succeed, so Temporal never retries them (``engine.retry``).
    retryable: bool = False

    def __init__(self, message: str, *, step: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.fix = fix

    @property
    def details(self) -> dict[str, object]:
        """Plain values that rebuild the error on the other side of Temporal (see :class:`LeaseHeld`)."""
        return {}

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


class CveSelectionError(OrchestratorError):
    """``run --cve``: a CVE id that is not one, or a combination the run cannot honour."""

    exit_code = 2
    code = "cve_selection"


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


class RunFailed(OrchestratorError):
    """The PatchRun workflow itself failed (discovery, planning, a bug) — not a VM outcome.

    ``fix`` is the fix the failing activity's error named (``""``: none); ``planned`` says whether
    the run got as far as its plan (a run that failed before planning changed nothing, and only the
    engine knows it). The advice points at what can help: the cause's own fix for bad input, else
    fixing the cause and ``patchwave resume RUN``.
    """

    def __init__(
        self, run_id: str, message: str, *, bad_input: bool = False, planned: bool = True, fix: str = ""
    ) -> None:
        self.run_id, self.bad_input, self.planned, self.cause_fix = run_id, bad_input, planned, fix
        first = fix or "fix the cause named here"
        if not planned:
            message = f"failed before planning, nothing was changed: {message}"
            advice = f"{first}, then `patchwave resume {run_id}` retries the run"
        elif bad_input and fix:
            advice = fix
        else:
            advice = f"{first}, then `patchwave resume {run_id}` continues the run"
        super().__init__(message, step=run_id, fix=advice)
        self.exit_code = 2 if bad_input else 1

    def before_planning(self) -> RunFailed:
        """This failure, of a run that never got its plan."""
        return RunFailed(
            self.run_id, self.message, bad_input=self.bad_input, planned=False, fix=self.cause_fix
        )


class FactStoreError(OrchestratorError):
    """The fact store cannot be opened or is from a newer patchwave (schema too new)."""

    code = "facts"


class RunNotFound(OrchestratorError):
    exit_code = 2
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run {run_id!r} is known",
            step="run",
            fix="`patchwave status` lists the runs of this state directory",
        )


class LeaseHeld(OrchestratorError):
    """Another run or operation holds the lease of some of these VMs/hosts: it works on them now.

    Raised before any side effect (the lease is taken first); a bad-input refusal, never retried.
    ``holder`` is the run id or operation id holding the leases, ``targets`` the names it holds
    among the ones asked for. ``expired``: the holder stopped renewing (its process died).
    """

    exit_code = 2
    code = "lease_held"
    SHOWN = 10  # target names listed; the rest is counted

    def __init__(
        self,
        holder: str,
        operation: str,
        targets: Sequence[str],
        *,
        since: str = "",
        expires_at: str = "",
        expired: bool = False,
        others: int = 0,
    ) -> None:
        self.holder, self.operation, self.targets = holder, operation, tuple(targets)
        self.since, self.expires_at, self.expired, self.others = since, expires_at, expired, others
        super().__init__(self._message(), step="lease", fix=self._fix())

    def _message(self) -> str:
        kind = "run" if self.operation in ("run", "schedule") else self.operation
        names = ", ".join(self.targets[: self.SHOWN])
        if len(self.targets) > self.SHOWN:
            names += f" and {len(self.targets) - self.SHOWN} more"
        held = f"held since {self.since}" if self.since else "held"
        if self.expired:
            held += f"; not renewed, expired at {self.expires_at}: the process that ran it died"
        more = f"; {self.others} other holder(s) too" if self.others else ""
        return f"{kind} {self.holder} is active on these targets: {names} ({held}){more}"

    def _fix(self) -> str:
        if self.operation in ("run", "schedule"):
            if self.expired:
                return (
                    f"`patchwave resume {self.holder}` continues it; once its workflow no longer runs, "
                    "`patchwave doctor --fix` releases its leases"
                )
            return f"wait for it (--wait), or see `patchwave status {self.holder}`"
        if self.expired:
            return "`patchwave doctor --fix` releases leases whose holder is gone"
        return f"wait for the {self.operation} to finish (--wait)"

    @property
    def details(self) -> dict[str, object]:
        return {
            "holder": self.holder, "operation": self.operation, "targets": list(self.targets),
            "since": self.since, "expires_at": self.expires_at, "expired": self.expired, "others": self.others,
        }  # fmt: skip

    @classmethod
    def from_details(cls, data: Mapping[str, object]) -> LeaseHeld:
        """The error an activity raised, rebuilt from its ``ApplicationError`` details."""
        targets = data.get("targets")
        return cls(
            str(data.get("holder", "")),
            str(data.get("operation", "")),
            [str(t) for t in targets] if isinstance(targets, list | tuple) else [],
            since=str(data.get("since", "")),
            expires_at=str(data.get("expires_at", "")),
            expired=bool(data.get("expired", False)),
            others=int(str(data.get("others", 0) or 0)),
        )


class SnapshotsInUse(OrchestratorError):
    """``snapshots cleanup --run RUN`` while RUN is not finished: its snapshots are its rollback points."""

    exit_code = 2
    code = "snapshots_in_use"

    def __init__(self, run_id: str, status: str, count: int) -> None:
        super().__init__(
            f"run {run_id} is {status}: its {count} snapshot(s) are its rollback points and are kept "
            "until it finishes",
            step="cleanup",
            fix=f"wait for it to finish (`patchwave status {run_id}`), then clean up",
        )
        self.run_id = run_id


class RunExists(OrchestratorError):
    """``run --run-id ID`` names a run this installation already has: a run id is used once."""

    exit_code = 2
    code = "run_exists"

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run {run_id} already exists ({status})",
            step="run",
            fix=f"leave out --run-id (a new id is generated) or pick a new one; `patchwave status {run_id}` "
            f"shows that run and `patchwave resume {run_id}` continues it if it did not finish",
        )
        self.run_id = run_id


class RunNotRunning(OrchestratorError):
    """``approve RUN`` for a run that is not running (finished, failed or never started)."""

    exit_code = 2
    code = "run_not_running"

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(
            f"run {run_id} is not running ({state}); only a running run waits for an approval",
            step="approve",
            fix=f"`patchwave status {run_id}` shows the run; `patchwave resume {run_id}` continues a halted one",
        )


class ApprovalRefused(OrchestratorError):
    """``approve RUN`` refused: no gate of that ring is open (an approval is never taken ahead of its
    gate), the ring no longer passes its gate, or ``--force`` names a ring whose gate did not refuse."""

    exit_code = 2
    code = "approval_refused"

    def __init__(self, run_id: str, reason: str, fix: str = "") -> None:
        super().__init__(
            f"approval of run {run_id} refused: {reason}",
            step="approve",
            fix=fix
            or f"`patchwave status {run_id}` shows which ring's gate is open (phase approval); "
            "approve it then",
        )
        self.run_id = run_id
        self.reason = reason


class NothingToRollBack(OrchestratorError):
    """``rollback RUN [--vm NAME]`` names VMs for which the run recorded no snapshot that can be reverted."""

    exit_code = 2
    code = "nothing_to_roll_back"

    def __init__(self, run_id: str, names: Sequence[str], why: str) -> None:
        what = ", ".join(repr(n) for n in names) if names else "any VM"
        super().__init__(
            f"run {run_id} has no snapshot to revert for {what} ({why})",
            step="rollback",
            fix=f"`patchwave snapshots list --run {run_id}` lists what the run recorded; "
            "name only VMs the run snapshotted",
        )


class StateDiskFull(OrchestratorError):
    """The disk holding the state directory (fact store, Temporal's database) is full.

    Nothing is lost: SQLite rolls back the write that did not fit, and a run stops where its last
    record stands. Another attempt can succeed once there is space again (``retryable``).
    ``then`` is what to do once there is space (e.g. "`patchwave resume RUN` continues the run"; "" when
    the caller's own advice follows, as for an activity's error inside a failed run)."""

    code = "state_disk_full"
    retryable = True

    def __init__(
        self,
        path: Path | str | None,
        *,
        then: str = "run the command again",
        step: str = "state",
        detail: str = "",
    ) -> None:
        where = f" {path}" if path else ""
        super().__init__(
            f"the disk of the state directory{where} is full{' (' + detail + ')' if detail else ''}",
            step=step,
            fix=f"free space on that disk, then {then}" if then else "free space on that disk",
        )
        self.path = str(path) if path else ""


class InvalidRunId(OrchestratorError):
    """A run id that does not follow the grammar of :mod:`orchestrator.run_ids` (bad input)."""

    exit_code = 2
    code = "invalid_run_id"

    def __init__(self, run_id: object, why: str) -> None:
        text = repr(run_id)
        shown = text if len(text) <= 40 else text[:37] + "..."
        super().__init__(
            f"run id {shown} {why}",
            step="run",
            fix="a run id is 1-200 letters, digits, '.', '_', '-' or ':' starting with a letter or digit "
            "(e.g. run-20261204-143210-ab12); `patchwave status` lists the runs",
        )
