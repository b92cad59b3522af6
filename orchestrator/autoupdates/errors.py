"""Errors of the autoupdates layer, subclasses of the provider errors so retry logic is uniform.

:class:`UpdaterBusy` is transient: the updater was still running when a pause stopped waiting for
it (the pause itself took effect — timers stopped, marker written — so another attempt only waits
again). Every other :class:`AutoUpdateError` is permanent; ``code`` says which:
"""

from __future__ import annotations

from providers.errors import PermanentProviderError, TransientProviderError

#: Stable ``AutoUpdateError.code`` values.
CODES = frozenset(
    {
        "unsupported_os",  # no automatic updater patchwave can manage there (SUSE, unknown families)
        "no_origins",  # Debian-family distribution without a known security origin and no `origins`
        "no_window",  # reboot = "window" but the VM's group has no maintenance window
        "paused",  # apply refused: a run has paused this VM's updater (restore or `doctor` first)
        "paused_by_other_run",  # restore refused: another run's marker (doctor restores dead runs')
        "apply_failed",
        "hold_failed",  # writing a run's holds (orchestrator.autoupdates.holds) failed
        "parse",  # output we could not make sense of; the error carries a snippet
        "updater_busy",  # the updater kept running past the wait (UpdaterBusy, retryable)
    }
)


class AutoUpdateError(PermanentProviderError):
    def __init__(self, message: str, *, code: str, target: str = "", output: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown AutoUpdateError code {code!r}")
        super().__init__(message, target=target, code=code)
        self.output = output[-600:]


class UpdaterBusy(TransientProviderError, AutoUpdateError):
    """The automatic updater is still running after the pause's bounded wait (never killed)."""

    retryable = True

    def __init__(
        self, message: str, *, busy: tuple[str, ...] = (), target: str = "", output: str = ""
    ) -> None:
        AutoUpdateError.__init__(self, message, code="updater_busy", target=target, output=output)
        self.busy = busy
