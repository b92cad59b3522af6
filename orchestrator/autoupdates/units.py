"""The systemd side of automatic updaters: which units they are, patchwave's own units, unit state.

* :class:`Updater` — per OS family: the updater's package, the timers patchwave switches, the
  services that do the work (guarded, and waited for by a pause) and what a manual run looks like.
* The pause guard: a drop-in for each updater service,
  ``/etc/systemd/system/<service>.d/50-patchwave-pause.conf`` with
  ``ConditionPathExists=!/var/lib/patchwave/autoupdates.paused``. While a run's pause marker exists
  the updater does not start — even when its timer fires after a reboot (patchwave reboots guests
  mid-run, and a ``Persistent=true`` timer catches up right after boot). Without the marker the
  drop-in does nothing.
* The reboot timer for ``reboot = "window"``: ``patchwave-autoupdates-reboot.{timer,service}`` and
  ``/usr/local/sbin/patchwave-autoupdates-reboot``, which reboots only when an update needs it, not
  while a run has the updater paused, and waits (bounded) for a running update first.
* :func:`parse_show` — ``systemctl show -p ... unit...`` blocks as :class:`UnitState`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.autoupdates.change import MARKER, GuestFile
from orchestrator.guests.osinfo import OsInfo

GUARD = "50-patchwave-pause.conf"
REBOOT_UNIT = "patchwave-autoupdates-reboot"
REBOOT_TIMER = f"{REBOOT_UNIT}.timer"
REBOOT_SCRIPT = f"/usr/local/sbin/{REBOOT_UNIT}"
SHOW_PROPERTIES = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "Result", "ExecMainStatus",
                   "ExecMainStartTimestamp", "ExecMainExitTimestamp", "LastTriggerUSec", "NextElapseUSecRealtime")  # fmt: skip
#: ``reboot_command`` dnf-automatic documents as its default (``reboot = when-needed``).
DNF_REBOOT_COMMAND = "shutdown -r +5 'Rebooting after applying package updates'"


@dataclass(frozen=True)
class Updater:
    family: str
    name: str  # unattended-upgrades | dnf-automatic | transactional-update
    package: str  # what `install` installs ("" = patchwave does not install it)
    timers: tuple[str, ...]  # enabled in security/coexist, disabled in off
    services: tuple[str, ...]  # the work: guarded, and waited for by a pause
    extra_timers: tuple[str, ...] = ()  # other timers of the same updater: disabled in off, paused
    processes: tuple[str, ...] = ()  # `grep -z -x` patterns of a manual run's argv element
    reboot_check: str = "false"  # exits 0 when an update needs a reboot

    @property
    def pausable(self) -> tuple[str, ...]:
        """The timers a pause stops (and a restore starts again when they were active)."""
        return (*self.timers, *self.extra_timers, REBOOT_TIMER)

    @property
    def guarded(self) -> tuple[str, ...]:
        return (*self.services, f"{REBOOT_UNIT}.service")


DEBIAN = Updater(
    family="debian",
    name="unattended-upgrades",
    package="unattended-upgrades",
    timers=("apt-daily.timer", "apt-daily-upgrade.timer"),
    services=("apt-daily.service", "apt-daily-upgrade.service"),
    processes=(".*/unattended-upgr[a]de",),  # the bracket keeps grep's own argv from matching
    reboot_check="[ -e /var/run/reboot-required ]",
)
_DNF_REBOOT_CHECK = (
    "{ if command -v needs-restarting >/dev/null 2>&1; then needs-restarting -r; "
    "else dnf -q needs-restarting -r; fi; } >/dev/null 2>&1; [ $? -eq 1 ]"
)
DNF4 = Updater(
    family="rhel",
    name="dnf-automatic",
    package="dnf-automatic",
    timers=("dnf-automatic.timer",),
    services=("dnf-automatic.service", "dnf-automatic-install.service"),
    extra_timers=("dnf-automatic-install.timer",),
    processes=(".*/dnf-automati[c]",),
    reboot_check=_DNF_REBOOT_CHECK,
)
#: Fedora 41+: dnf5's automatic plugin (``dnf5 automatic``; ``dnf-automatic.timer`` is an alias there,
#: and systemd refuses to enable a unit by an alias name).
DNF5 = Updater(
    family="rhel",
    name="dnf5-automatic",
    package="dnf-automatic",  # dnf5-plugin-automatic provides it
    timers=("dnf5-automatic.timer",),
    services=("dnf5-automatic.service",),
    reboot_check=_DNF_REBOOT_CHECK,
)
SUSE = Updater(
    family="suse",
    name="transactional-update",
    package="",
    timers=(),
    services=("transactional-update.service",),
    extra_timers=("transactional-update.timer",),
)
NONE = Updater(family="unknown", name="", package="", timers=(), services=())


def updater_for(os_info: OsInfo) -> Updater:
    if os_info.family == "debian":
        return DEBIAN
    if os_info.family == "rhel":
        return DNF5 if _dnf5(os_info) else DNF4
    if os_info.family == "suse":
        return SUSE
    return NONE


def _dnf5(os_info: OsInfo) -> bool:
    """dnf5 is the system dnf on Fedora 41 and later; RHEL 8-10 and their rebuilds use dnf 4."""
    major = os_info.version_id.split(".", 1)[0]
    return os_info.id == "fedora" and (not major.isdigit() or int(major) >= 41)


# ------------------------------------------------------------------------------ patchwave's units
def guard_files(updater: Updater) -> tuple[GuestFile, ...]:
    text = (
        "# Managed by patchwave: while a patchwave run has paused this machine's automatic updates\n"
        f"# ({MARKER} exists; `patchwave doctor` restores a dead run's pause), this unit does not start.\n"
        f"[Unit]\nConditionPathExists=!{MARKER}\n"
    )
    return tuple(GuestFile(f"/etc/systemd/system/{svc}.d/{GUARD}", text) for svc in updater.services)


def reboot_files(updater: Updater, window: str, times: Sequence[str]) -> tuple[GuestFile, ...]:
    """The reboot timer at ``times`` (UTC openings of ``window``), its service and script."""
    calendar = "".join(f"OnCalendar={t} UTC\n" for t in times)
    timer = (
        f"# Managed by patchwave: reboot for automatic updates at the openings of maintenance window\n"
        f"# {window!r}, computed by patchwave (which knows the window's time zone, blackout dates and\n"
        "# holidays); `patchwave autoupdates apply` renews the list.\n"
        f"[Unit]\nDescription=patchwave: reboot for automatic updates (window {window})\n\n"
        f"[Timer]\n{calendar}AccuracySec=1min\nPersistent=false\n\n[Install]\nWantedBy=timers.target\n"
    )
    service = (
        "# Managed by patchwave (see the timer). Not while a patchwave run has the updater paused.\n"
        f"[Unit]\nDescription=patchwave: reboot if automatic updates need it (window {window})\n"
        f"ConditionPathExists=!{MARKER}\n\n[Service]\nType=oneshot\nExecStart={REBOOT_SCRIPT}\n"
    )
    script = (
        "#!/bin/sh\n"
        f"# Managed by patchwave: reboot when an automatic update needs it (window {window}).\n"
        "# Waits up to 20 minutes for a running update to finish; never interrupts one.\n"
        f"{busy_function(updater.services)}\n"
        "i=0\n"
        "while [ $i -lt 240 ] && pw_busy >/dev/null; do sleep 5; i=$((i + 1)); done\n"
        "if pw_busy; then\n"
        "    logger -t patchwave 'automatic update still running: no reboot in this window opening'\n"
        "    exit 0\nfi\n"
        f"if {updater.reboot_check}; then\n"
        f"    logger -t patchwave 'automatic updates need a reboot: rebooting (window {window})'\n"
        "    exec systemctl reboot\nfi\n"
    )
    return (
        GuestFile(f"/etc/systemd/system/{REBOOT_UNIT}.timer", timer),
        GuestFile(f"/etc/systemd/system/{REBOOT_UNIT}.service", service),
        GuestFile(REBOOT_SCRIPT, script, mode=0o755),
    )


def busy_function(services: Sequence[str], processes: Sequence[str] = ()) -> str:
    """Shell function ``pw_busy``: prints and succeeds when one of ``services`` is running (a oneshot
    service is ``activating`` while it works) or a process has an argv element matching one of
    ``processes`` (``grep -z -x`` over ``/proc/*/cmdline``)."""
    names = " ".join(shlex.quote(s) for s in services) or "''"
    checks = "".join(
        f'grep -q -a -s -z -x -e {shlex.quote(pattern)} /proc/[0-9]*/cmdline && pw_b="$pw_b process"; '
        for pattern in processes
    )
    return (
        'pw_busy() { pw_b=""; for s in ' + names + '; do case "$(systemctl is-active "$s" 2>/dev/null)" in '
        'active|activating|deactivating|reloading) pw_b="$pw_b $s";; esac; done; '
        + checks
        + '[ -n "$pw_b" ] && echo "busy$pw_b"; }'
    )


REBOOT_PATHS = (f"/etc/systemd/system/{REBOOT_UNIT}.timer", f"/etc/systemd/system/{REBOOT_UNIT}.service",
                REBOOT_SCRIPT)  # fmt: skip


def reboot_times_in(timer_text: str) -> tuple[str, ...]:
    """The ``OnCalendar=YYYY-MM-DD HH:MM:SS UTC`` times of patchwave's reboot timer file."""
    found = []
    for line in timer_text.splitlines():
        if line.startswith("OnCalendar=") and line.endswith(" UTC"):
            found.append(line[len("OnCalendar=") : -len(" UTC")].strip())
    return tuple(found)


# ------------------------------------------------------------------------------ unit state
@dataclass(frozen=True)
class UnitState:
    id: str
    load: str = ""  # loaded | not-found | masked
    file_state: str = ""  # enabled | disabled | masked | static | "" (not found)
    active: str = ""  # active | inactive | activating | failed
    result: str = ""
    exit_status: str = ""
    started_at: str = ""  # ExecMainStartTimestamp (services)
    exited_at: str = ""  # ExecMainExitTimestamp (services)
    last_trigger: str = ""  # LastTriggerUSec (timers)
    next_elapse: str = ""  # NextElapseUSecRealtime (timers)

    @property
    def exists(self) -> bool:
        return self.load not in ("", "not-found")

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating", "deactivating", "reloading") and self.id.endswith(
            ".service"
        )


def show_command(units: Sequence[str]) -> str:
    return f"systemctl show -p {','.join(SHOW_PROPERTIES)} " + " ".join(shlex.quote(u) for u in units)


_FIELDS = {"LoadState": "load", "UnitFileState": "file_state", "ActiveState": "active", "Result": "result",
           "ExecMainStatus": "exit_status", "ExecMainStartTimestamp": "started_at",
           "ExecMainExitTimestamp": "exited_at", "LastTriggerUSec": "last_trigger",
           "NextElapseUSecRealtime": "next_elapse"}  # fmt: skip


def parse_show(text: str) -> dict[str, UnitState]:
    """``systemctl show`` output (blocks separated by blank lines) -> {unit id: state}."""
    states: dict[str, UnitState] = {}
    for block in text.strip().split("\n\n"):
        values: dict[str, str] = {}
        unit = ""
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "Id":
                unit = value.strip()
            elif key in _FIELDS:
                values[_FIELDS[key]] = "" if value.strip() == "n/a" else value.strip()
        if unit:
            states[unit] = UnitState(id=unit, **values)
    return states
