"""The verbs that run through a :class:`~orchestrator.guests.channel.GuestChannel`: apply, status,
pause, restore, paused_by. Everything else in this package is pure; this is where commands meet a
guest. Every verb is idempotent, so an activity may call it again after any failure:

* ``pause(channel, run_id, step_id)`` twice for the same run is one pause (the marker is kept);
* ``restore(channel, run_id)`` twice is one restore (the second finds nothing paused);
* ``apply(channel, change)`` writes only files whose content differs and switches only units that
  are not already as wanted;
* ``hold(channel, policy, holds)`` writes a run's holds only where they differ (:mod:`.holds`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from orchestrator.autoupdates import rhel
from orchestrator.autoupdates.change import ApplyReport, AutoUpdateChange, apply_command, parse_apply
from orchestrator.autoupdates.holds import (
    HoldReport,
    RunHolds,
    hold_command,
    hold_files,
    parse_hold,
    parse_record,
    read_record_command,
)
from orchestrator.autoupdates.pause import (
    PauseMarker,
    PauseResult,
    RestoreResult,
    parse_marker,
    parse_pause,
    parse_restore,
    pause_command,
    read_marker_command,
    restore_command,
)
from orchestrator.autoupdates.plans import plan
from orchestrator.autoupdates.policy import AutoUpdatePolicy
from orchestrator.autoupdates.status import AutoUpdateStatus, parse_status, status_command
from orchestrator.autoupdates.units import updater_for
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import GuestUnreachable
from orchestrator.guests.osinfo import OsInfo, detect_os

log = structlog.get_logger(__name__)

#: Seconds on top of a pause's wait for the rest of its script (a daemon-reload is ~3.5 s under TCG).
PAUSE_MARGIN_S = 120.0


def apply(channel: GuestChannel, change: AutoUpdateChange, *, timeout: float = 1800.0) -> ApplyReport:
    """Run ``change`` (from :func:`~orchestrator.autoupdates.plans.plan`) on the guest."""
    if change.empty:
        return ApplyReport(installed=False, changed=(), unchanged=(), removed=(), kept=(), units=())
    result = channel.run(apply_command(change), timeout=timeout)
    report = parse_apply(result, target=channel.name)
    log.info(
        "autoupdates_applied",
        updater=change.updater,
        mode=change.mode,
        installed=report.installed,
        changed=list(report.changed),
        removed=list(report.removed),
        units=list(report.units),
    )
    return report


def status(
    channel: GuestChannel,
    policy: AutoUpdatePolicy,
    *,
    os_info: OsInfo | None = None,
    now: datetime | None = None,
    timeout: float = 120.0,
) -> AutoUpdateStatus:
    """The updater's state on the guest compared with ``policy`` (read-only)."""
    os_info = os_info or detect_os(channel, timeout=timeout)
    result = channel.run(status_command(os_info), timeout=timeout)
    if result.exit_code is None:
        raise GuestUnreachable(f"status command ended by signal {result.signal}", target=channel.name)
    return parse_status(result, os_info, policy, now=now or datetime.now(UTC))


def pause(
    channel: GuestChannel,
    run_id: str,
    step_id: str,
    *,
    os_info: OsInfo | None = None,
    wait_s: int = 900,
) -> PauseResult:
    """Pause the updater for ``run_id`` (see :mod:`orchestrator.autoupdates.pause`); waits at most
    ``wait_s`` for a running update, then raises :class:`~orchestrator.autoupdates.errors.UpdaterBusy`."""
    os_info = os_info or detect_os(channel)
    command = pause_command(updater_for(os_info), run_id, step_id, wait_s=wait_s)
    result = parse_pause(channel.run(command, timeout=wait_s + PAUSE_MARGIN_S), target=channel.name)
    log.info(
        "autoupdates_paused",
        run_id=run_id,
        step_id=step_id,
        state=result.state,
        stopped=list(result.stopped),
        waited_s=result.waited_s,
    )
    return result


def restore(
    channel: GuestChannel, run_id: str, *, any_run: bool = False, timeout: float = 120.0
) -> RestoreResult:
    """Restore what ``run_id``'s pause stopped; ``any_run``: whichever run paused it (``doctor``)."""
    result = parse_restore(
        channel.run(restore_command(run_id, any_run=any_run), timeout=timeout), target=channel.name
    )
    if result.restored:
        log.info(
            "autoupdates_restored", run_id=run_id, started=list(result.started), failed=list(result.failed)
        )
    return result


def paused_by(channel: GuestChannel, *, timeout: float = 30.0) -> PauseMarker | None:
    """The pause marker on the guest, if a run left one (what ``doctor`` looks for)."""
    result = channel.run(read_marker_command(), timeout=timeout)
    return parse_marker(result.stdout) if result.ok else None


def hold(
    channel: GuestChannel,
    policy: AutoUpdatePolicy,
    holds: RunHolds,
    *,
    os_info: OsInfo | None = None,
    timeout: float = 120.0,
) -> HoldReport:
    """Leave the run's held packages to patchwave (see :mod:`orchestrator.autoupdates.holds`): write
    ``holds`` (no packages: release the previous run's). Only in ``coexist`` (``policy.holds_pins``)
    on the Debian and RHEL families; otherwise nothing is written."""
    if not policy.holds_pins:
        return HoldReport()
    os_info = os_info or detect_os(channel, timeout=timeout)
    if os_info.family not in ("debian", "rhel"):
        return HoldReport()  # no updater configuration patchwave manages there (SUSE: see plans.py)
    conf = None
    if os_info.family == "rhel":  # automatic.conf again, with the group's pins + the run's holds
        change = plan(os_info, policy, run_holds=holds.packages)
        conf = next(f for f in change.files if f.path == rhel.CONF_PATH)
    files, remove = hold_files(os_info.family, holds, conf)
    report = parse_hold(channel.run(hold_command(files, remove), timeout=timeout), target=channel.name)
    log.info(
        "autoupdates_held", run_id=holds.run_id, packages=list(holds.packages),
        changed=list(report.changed), removed=list(report.removed),
    )  # fmt: skip
    return report


def run_holds(channel: GuestChannel, *, timeout: float = 30.0) -> RunHolds | None:
    """The holds the latest run left on the guest (None: none)."""
    result = channel.run(read_record_command(), timeout=timeout)
    if result.exit_code is None:
        raise GuestUnreachable(f"reading the run holds ended by signal {result.signal}", target=channel.name)
    return parse_record(result.stdout) if result.ok else None
