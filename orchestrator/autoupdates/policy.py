"""One VM's automatic-update policy: its group's ``[autoupdates]`` settings made concrete (pure).

:func:`resolve_policy` turns the settings, the group's maintenance window and pinned packages and
``now`` into an :class:`AutoUpdatePolicy`, which :func:`orchestrator.autoupdates.plan` turns into
files and commands for the guest's OS family.

Reboots inside a window (``reboot = "window"``) happen at the window's next openings, listed as
absolute UTC times up to ``reboot_horizon`` ahead. They are computed by
:mod:`orchestrator.windows` — the code that admits a run's work — so blackout dates, holidays,
``exdates``, RRULEs and DST behave exactly as for patchwave runs. (A systemd ``OnCalendar``
translation of the window's recurrence could express neither blackout dates nor RRULEs, and
unattended-upgrades' own ``Automatic-Reboot-Time`` is a guest-local time of day for ``shutdown -r``:
it reboots on whatever day the upgrade ran, so it cannot keep a weekly window or the window's time
zone.) ``apply`` renews the list; ``status`` reports drift when it runs short.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrator.autoupdates.errors import AutoUpdateError
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.config.settings import Settings
from orchestrator.model import UpdateMode
from orchestrator.windows import WindowSpec, upcoming

#: At most this many reboot times are listed (an hourly window would otherwise list thousands).
MAX_REBOOT_TIMES = 100
_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class AutoUpdatePolicy:
    """What patchwave wants from one VM's automatic updater."""

    mode: str  # unmanaged | off | security | coexist
    reboot: str = "never"  # never | when-needed | window
    mail: str = ""
    mail_report: str = "on-change"
    syslog: bool = True
    origins: tuple[str, ...] = ()  # extra unattended-upgrades Origins-Pattern entries
    install: bool = True
    pins: tuple[str, ...] = ()  # the group's pinned packages ("pkg=version" / NEVRA): held in coexist
    group: str = ""
    window: str = ""  # the window's name when reboot == "window"
    reboot_times: tuple[str, ...] = ()  # UTC "YYYY-MM-DD HH:MM:SS" openings of the window
    wait_s: int = 900

    @property
    def managed(self) -> bool:
        return self.mode != "unmanaged"

    @property
    def holds_pins(self) -> bool:
        """The updater is told to leave pinned packages alone: the group's pins and the holds of a
        pinned rollout (``coexist``)."""
        return self.mode == "coexist"

    @property
    def enabled(self) -> bool:
        """The updater should run on its own (``security`` and ``coexist``)."""
        return self.mode in ("security", "coexist")


def group_policy(settings: Settings, group: str, *, now: datetime) -> AutoUpdatePolicy:
    """The policy of the VMs of ``group`` (a configured group's name) at ``now``: its ``[autoupdates]``
    settings, its maintenance window, its pinned packages (``updates = "pinned"``)."""
    found = settings.group(group)
    pins = found.policy.pins if found.policy.updates is UpdateMode.PINNED else ()
    window = settings.window(found.window) if found.window else None
    return resolve_policy(
        settings.autoupdates.for_group(group), now=now, group=group, window=window, pins=pins
    )


def resolve_policy(
    settings: AutoUpdateSettings,
    *,
    now: datetime,
    group: str = "",
    window: WindowSpec | None = None,
    pins: tuple[str, ...] = (),
) -> AutoUpdatePolicy:
    """The policy of a VM in ``group`` (its ``window`` and pinned packages ``pins``) at ``now``.

    Raises :class:`AutoUpdateError` ``no_window`` when ``reboot = "window"`` and there is none."""
    reboot_times: tuple[str, ...] = ()
    if settings.reboot == "window" and settings.mode in ("security", "coexist"):
        if window is None:
            raise AutoUpdateError(
                f'reboot = "window" but group {group or "default"!r} has no maintenance window;'
                ' give it one or set its [groups.autoupdates] reboot = "never"',
                code="no_window",
            )
        reboot_times = window_openings(window, now, timedelta(seconds=settings.reboot_horizon_s))
    return AutoUpdatePolicy(
        mode=settings.mode,
        reboot=settings.reboot,
        mail=settings.mail,
        mail_report=settings.mail_report,
        syslog=settings.syslog,
        origins=settings.origins,
        install=settings.install,
        pins=pins if settings.holds_pins else (),
        group=group,
        window=window.name if window is not None and reboot_times else "",
        reboot_times=reboot_times,
        wait_s=settings.wait_s,
    )


def window_openings(window: WindowSpec, now: datetime, horizon: timedelta) -> tuple[str, ...]:
    """The window's openings after ``now`` and within ``horizon``, as UTC times (at most
    :data:`MAX_REBOOT_TIMES`); an occurrence open at ``now`` is not listed (its start is past)."""
    found: list[str] = []
    end = now + horizon
    for start, _ in upcoming(window, now):
        if start > end or len(found) >= MAX_REBOOT_TIMES:
            break
        if start > now:
            found.append(start.astimezone(UTC).strftime(_TIME))
    return tuple(found)


def schedule_runs_short(times: tuple[str, ...], now: datetime) -> bool:
    """Fewer than a quarter of the listed reboot times (and at least two) are still ahead of ``now``:
    time to renew the list with ``apply``."""
    ahead = sum(1 for t in times if _parse(t) > now)
    return ahead < max(2, len(times) // 4)


def _parse(text: str) -> datetime:
    return datetime.strptime(text, _TIME).replace(tzinfo=UTC)
