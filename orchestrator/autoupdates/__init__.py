"""Automatic security updates (unattended-upgrades, dnf-automatic) managed so they never fight the
orchestrator (docs/ARCHITECTURE.md, "Automatic updates").

pyinfra-style: :func:`plan` and the modules it uses only *describe* files and commands, and the
parsers only read output; :mod:`.guest` is the one place that runs them through a
:class:`~orchestrator.guests.channel.GuestChannel`::

    policy = resolve_policy(settings.autoupdates.for_group(group), now=now, group=group,
                            window=window_spec, pins=pins)
    change = plan(os_info, policy)            # AutoUpdateChange: files, units, install
    report = apply(channel, change)           # ApplyReport
    state = status(channel, policy)           # AutoUpdateStatus: installed/enabled, drift, last run
    pause(channel, run_id, step_id)           # PauseResult (idempotent; UpdaterBusy is retryable)
    restore(channel, run_id)                  # RestoreResult (idempotent)
    paused_by(channel)                        # PauseMarker | None (for resume/doctor)
    hold(channel, policy, RunHolds(...))      # HoldReport: a pinned rollout's holds (coexist)
    run_holds(channel)                        # RunHolds | None: what the latest run held
"""

from orchestrator.autoupdates.change import ApplyReport, AutoUpdateChange, GuestFile
from orchestrator.autoupdates.errors import AutoUpdateError, UpdaterBusy
from orchestrator.autoupdates.findings import Drift, LastRun
from orchestrator.autoupdates.guest import apply, hold, pause, paused_by, restore, run_holds, status
from orchestrator.autoupdates.holds import HoldReport, RunHolds
from orchestrator.autoupdates.pause import PauseMarker, PauseResult, RestoreResult
from orchestrator.autoupdates.plans import plan
from orchestrator.autoupdates.policy import AutoUpdatePolicy, resolve_policy
from orchestrator.autoupdates.status import AutoUpdateStatus

__all__ = [
    "ApplyReport",
    "AutoUpdateChange",
    "AutoUpdateError",
    "AutoUpdatePolicy",
    "AutoUpdateStatus",
    "Drift",
    "GuestFile",
    "HoldReport",
    "LastRun",
    "PauseMarker",
    "PauseResult",
    "RestoreResult",
    "RunHolds",
    "UpdaterBusy",
    "apply",
    "hold",
    "pause",
    "paused_by",
    "plan",
    "resolve_policy",
    "restore",
    "run_holds",
    "status",
]
