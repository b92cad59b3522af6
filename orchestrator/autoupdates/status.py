"""``status``: is the updater installed and enabled, does its effective configuration match the
policy (drift), what did its last automatic run do, is it paused by a run (pure: command + parser).

One read-only script in ``### patchwave:`` sections:

* ``installed`` — ``dpkg-query -W`` (Debian) / ``rpm -q --whatprovides dnf-automatic``;
* ``units`` — ``systemctl show`` of the timers, services and patchwave's reboot timer;
* ``config`` — the *effective* configuration: ``apt-config dump`` filtered to
  ``Unattended-Upgrade::`` and ``APT::Periodic::`` (every apt.conf.d file applied, in apt's order);
  dnf: the automatic.conf files dnf reads, in its order (:mod:`.rhel`);
* ``log`` — the tail of unattended-upgrades.log (its last non-dry run); dnf: the journal of the
  updater service (its result comes from systemd: ``ExecMainStatus`` and the timestamps);
* ``marker`` — a run's pause marker; ``reboot-timer`` — patchwave's reboot timer file;
* ``run-holds`` — the holds the latest pinned rollout left (:mod:`.holds`): in ``coexist`` they are
  expected in the effective configuration like the group's pins (drift when an entry is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestrator.autoupdates import debian, rhel
from orchestrator.autoupdates.change import MARKER
from orchestrator.autoupdates.findings import Drift, LastRun, compare
from orchestrator.autoupdates.holds import RECORD as HOLDS_RECORD
from orchestrator.autoupdates.holds import RunHolds, parse_record
from orchestrator.autoupdates.pause import PauseMarker, parse_marker
from orchestrator.autoupdates.plans import held_packages
from orchestrator.autoupdates.policy import AutoUpdatePolicy, schedule_runs_short
from orchestrator.autoupdates.units import (
    DEBIAN,
    REBOOT_TIMER,
    REBOOT_UNIT,
    UnitState,
    Updater,
    parse_show,
    reboot_times_in,
    show_command,
    updater_for,
)
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import section_command, split_sections
from providers.base import ExecResult


@dataclass(frozen=True)
class AutoUpdateStatus:
    family: str
    updater: str
    mode: str  # the policy's mode
    installed: bool
    version: str
    enabled: bool  # every timer the updater needs is enabled (and not masked)
    active: bool  # ... and running (waiting for its next elapse)
    units: tuple[UnitState, ...]
    effective: dict[str, tuple[str, ...]]  # the settings patchwave compares
    drift: tuple[Drift, ...]
    last_run: LastRun
    paused: PauseMarker | None
    reboot_times: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    run_holds: RunHolds | None = None  # what the latest pinned rollout held on the guest

    @property
    def compliant(self) -> bool:
        return not self.drift


def status_command(os_info: OsInfo) -> str:
    updater = updater_for(os_info)
    units = (
        *updater.timers,
        *updater.extra_timers,
        *updater.services,
        REBOOT_TIMER,
        f"{REBOOT_UNIT}.service",
    )
    services = " ".join(f"-u {s}" for s in updater.services)
    log = f"journalctl -q --no-pager -o short-iso -n 40 {services}" if services else "true"
    if updater is DEBIAN:
        installed = "dpkg-query -W -f='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' unattended-upgrades"
        config = "apt-config dump | grep -E '^(Unattended-Upgrade|APT::Periodic)::'"
        log = f"tail -n 400 {debian.LOG_PATH}"
    elif updater.family == "rhel":
        installed = f"rpm -q --qf '%{{NAME}}\\t%{{VERSION}}-%{{RELEASE}}\\n' --whatprovides {updater.package}"
        config = "; ".join(f"echo '## {p}'; cat {p} 2>/dev/null" for p in rhel.DNF5_CONF_PATHS)
    else:  # SUSE, unknown: nothing patchwave configures; its units, a pause, the last run only
        installed = f"rpm -q --qf '%{{NAME}}\\t%{{VERSION}}-%{{RELEASE}}\\n' {updater.name or 'none'}"
        config = "true"
    return "; ".join(
        section_command(name, f"{command} 2>/dev/null; true")
        for name, command in (
            ("installed", installed),
            ("units", show_command(units)),
            ("config", config),
            ("log", log),
            ("marker", f"cat {MARKER}"),
            ("reboot-timer", f"cat /etc/systemd/system/{REBOOT_TIMER}"),
            ("run-holds", f"cat {HOLDS_RECORD}"),
        )
    )


def parse_status(
    result: ExecResult, os_info: OsInfo, policy: AutoUpdatePolicy, *, now: datetime
) -> AutoUpdateStatus:
    updater = updater_for(os_info)
    sections = {name: body for name, (body, _) in split_sections(result.stdout).items()}
    installed, version = _installed(sections.get("installed", ""), updater)
    units = parse_show(sections.get("units", ""))
    run_holds = parse_record(sections.get("run-holds", ""))
    holds = held_packages(os_info, policy)
    if run_holds is not None and policy.holds_pins:
        holds = tuple(dict.fromkeys((*holds, *run_holds.packages)))
    if updater is DEBIAN:
        effective = debian.parse_apt_config(sections.get("config", ""))
        expected = debian.expectations(os_info, policy, holds) if policy.managed else ()
        last_run = _debian_run(debian.parse_log(sections.get("log", "")), units)
    elif updater.family == "rhel":
        effective = rhel.parse_conf(
            _conf_files(sections.get("config", "")), dnf5=updater.name == "dnf5-automatic"
        )
        expected = rhel.expectations(policy, holds) if policy.managed else ()
        last_run = _systemd_run(units, updater, sections.get("log", ""))
    else:
        effective, expected = {}, ()
        last_run = _systemd_run(units, updater, sections.get("log", ""))
    paused = parse_marker(sections.get("marker", ""))
    times = reboot_times_in(sections.get("reboot-timer", ""))
    drift = (
        *(_install_drift(policy, installed) if updater.family in ("debian", "rhel") else ()),
        *_unit_drift(policy, updater, units, paused, times, now),
        *(compare(effective, expected) if installed or not policy.enabled else ()),
    )
    timers = [units.get(t, UnitState(t)) for t in updater.timers]
    return AutoUpdateStatus(
        family=os_info.family,
        updater=updater.name,
        mode=policy.mode,
        installed=installed,
        version=version,
        enabled=bool(timers) and all(t.file_state == "enabled" for t in timers),
        active=bool(timers) and all(t.active == "active" for t in timers),
        units=tuple(units.values()),
        effective=effective,
        drift=drift,
        last_run=last_run,
        paused=paused,
        reboot_times=times,
        notes=_notes(os_info, policy, paused, run_holds),
        run_holds=run_holds,
    )


def _notes(
    os_info: OsInfo, policy: AutoUpdatePolicy, paused: PauseMarker | None, held: RunHolds | None
) -> tuple[str, ...]:
    notes = [f"paused by run {paused.run_id} since {paused.paused_at}"] if paused else []
    if held is not None and held.packages:
        names = ", ".join(held.packages[:10]) + (
            f" (+{len(held.packages) - 10})" if len(held.packages) > 10 else ""
        )
        notes.append(f"holds of run {held.run_id} since {held.held_at}: {names}")
    if policy.managed and os_info.family not in ("debian", "rhel"):
        notes.append(
            f"mode {policy.mode!r} is not supported on {os_info.pretty_name or os_info.id}: use unmanaged"
        )
    return tuple(notes)


def _installed(text: str, updater: Updater) -> tuple[bool, str]:
    for line in text.splitlines():
        parts = line.split("\t")
        if updater is DEBIAN and len(parts) == 3 and parts[2].strip().startswith(("ii", "hi")):
            return True, parts[1]
        if updater is not DEBIAN and len(parts) == 2 and " " not in parts[0]:
            return True, parts[1]
    return False, ""


def _conf_files(text: str) -> list[str]:
    """The ``## <path>``-separated file contents of the dnf ``config`` section (missing files: "")."""
    files: list[str] = []
    for line in text.splitlines():
        if line.startswith("## /"):
            files.append("")
        elif files:
            files[-1] += line + "\n"
    return files


def _install_drift(policy: AutoUpdatePolicy, installed: bool) -> tuple[Drift, ...]:
    if policy.enabled and not installed:
        return (Drift("installed", "yes", "no"),)
    return ()


def _unit_drift(
    policy: AutoUpdatePolicy,
    updater: Updater,
    units: dict[str, UnitState],
    paused: PauseMarker | None,
    times: tuple[str, ...],
    now: datetime,
) -> tuple[Drift, ...]:
    """Timers: enabled and active (security/coexist: a paused timer is stopped, not drift) or
    disabled and stopped (off); the reboot timer and its schedule (reboot = "window")."""
    if not policy.managed:
        return ()
    found = []
    for timer in updater.timers if policy.enabled else (*updater.timers, *updater.extra_timers):
        state = units.get(timer, UnitState(timer))
        if not policy.enabled:
            if state.file_state == "enabled" or state.active == "active":
                found.append(Drift(timer, "disabled, stopped", f"{state.file_state}, {state.active}"))
        elif state.file_state != "enabled":
            found.append(Drift(timer, "enabled", state.file_state or "not found"))
        elif paused is None and state.active != "active":
            found.append(Drift(timer, "active", state.active or "unknown"))
    reboot = units.get(REBOOT_TIMER, UnitState(REBOOT_TIMER))
    if policy.enabled and policy.reboot == "window" and policy.reboot_times:
        if reboot.file_state != "enabled":
            found.append(Drift(REBOOT_TIMER, "enabled", reboot.file_state or "not found"))
        elif schedule_runs_short(times, now):
            found.append(
                Drift("reboot schedule", "window openings ahead", f"{len(times)} listed, running out")
            )
    elif reboot.file_state == "enabled":
        found.append(Drift(REBOOT_TIMER, "absent", "enabled"))
    return tuple(found)


def _debian_run(run: LastRun, units: dict[str, UnitState]) -> LastRun:
    service = units.get("apt-daily-upgrade.service")
    if service is not None and service.running:
        return LastRun(started_at=service.started_at, result="running", source="apt-daily-upgrade.service")
    return run


def _systemd_run(units: dict[str, UnitState], updater: Updater, journal: str) -> LastRun:
    ran = [units[s] for s in updater.services if s in units and units[s].started_at]
    if not ran:
        return LastRun(source="systemd")
    last = max(ran, key=lambda u: u.started_at.split(" ", 1)[-1])  # "Fri 2026-12-04 15:57:48 UTC"
    if last.running:
        result = "running"
    else:
        result = "ok" if last.exit_status in ("0", "") and last.result in ("success", "") else "failed"
    tail = [line for line in journal.splitlines() if line.strip()][-1:] if result == "failed" else []
    return LastRun(
        started_at=last.started_at,
        finished_at=last.exited_at,
        result=result,
        error=tail[0] if tail else "",
        source=last.id,
    )
