"""The ``[autoupdates]`` table: how patchwave manages the guests' own automatic updaters.

```toml
[autoupdates]
mode = "coexist"            # unmanaged (default) | off | security | coexist
reboot = "never"            # never | when-needed | window
mail = "ops@example.com"    # "" = no mail (the updater's own default)
mail_report = "on-change"   # unattended-upgrades: always | on-change | only-on-error
syslog = true               # unattended-upgrades logs to syslog too (dnf-automatic: the journal)
origins = []                # extra unattended-upgrades Origins-Pattern entries (internal mirrors)
install = true              # install the updater package when it is missing
wait = "15m"                # how long a run's pause waits for a running updater to finish
reboot_horizon = "60d"      # reboot = "window": how far ahead the reboot times are listed

[[groups]]
name = "web"
window = "weekend"
[groups.autoupdates]        # this group's overrides (same keys)
reboot = "window"
```

The modes (the same words in ``patchwave autoupdates plan|apply|status``):

* ``unmanaged`` — patchwave leaves the updater's configuration alone (``apply`` changes nothing).
  A patchwave run still pauses an updater it finds on a VM while it patches that VM and restores
  it afterwards: the pause changes nothing permanent.
* ``off`` — patchwave disables the updater (its timers, and the periodic switch) and patches
  everything itself. Runs pause it anyway (a re-enabled updater cannot interfere).
* ``security`` — patchwave configures the updater for security updates only (the distribution's
  security archive and ``origins``) with the reboot policy below, and lets it run on its own
  schedule, also during patchwave runs: for groups patchwave does not roll out to.
* ``coexist`` — ``security``, plus: during a patchwave run on a VM its updater is paused (timers
  stopped, a running update waited for, never killed; restored afterwards, also after a crash by
  ``resume``/``doctor``), and the group's pinned packages (``[groups.policy] pins``, the versions a
  canary validated) are held: the updater never upgrades them past what the rollout promoted.

``reboot``: ``never`` (the updater never reboots; patchwave runs reboot as their policy says),
``when-needed`` (the updater reboots right after an update that needs it), ``window`` (a
patchwave timer reboots the VM, when an update needs it, at the openings of its group's
maintenance window — so the group needs one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from providers.settings import SettingsReader

MODES = ("unmanaged", "off", "security", "coexist")
REBOOTS = ("never", "when-needed", "window")
MAIL_REPORTS = ("always", "on-change", "only-on-error")
KEYS = ("mode", "reboot", "mail", "mail_report", "syslog", "origins", "install", "wait", "reboot_horizon")
#: unattended-upgrades' Origins-Pattern keywords (``origin=Debian,codename=...``).
ORIGIN_KEYS = frozenset(
    {"a", "archive", "c", "component", "l", "label", "n", "codename", "o", "origin", "site"}
)
_ORIGIN_ITEM = re.compile(r"^(?P<key>[a-z]+)=(?P<value>[^,\"\\;]*)$")
_MAIL = re.compile(r"^[^\s\"\\;{}]+$")


@dataclass(frozen=True)
class AutoUpdateSettings:
    """One group's (or the default) ``[autoupdates]`` settings."""

    mode: str = "unmanaged"
    reboot: str = "never"
    mail: str = ""
    mail_report: str = "on-change"
    syslog: bool = True
    origins: tuple[str, ...] = ()
    install: bool = True
    wait_s: int = 900
    reboot_horizon_s: int = 60 * 86400

    @property
    def managed(self) -> bool:
        """patchwave writes the updater's configuration (every mode but ``unmanaged``)."""
        return self.mode != "unmanaged"

    @property
    def pauses_during_runs(self) -> bool:
        """A patchwave run pauses the updater on the VM it patches: the modes in which patchwave manages
        the updater and rollouts come first (``coexist``; ``off``: a timer enabled again by hand is
        stopped too). ``security`` lets it run during rollouts; ``unmanaged`` leaves the guest's
        updater alone entirely (set ``coexist`` to have runs pause it)."""
        return self.mode in ("coexist", "off")

    @property
    def holds_pins(self) -> bool:
        """The updater is told to leave the group's pinned packages alone (``coexist``)."""
        return self.mode == "coexist"


@dataclass(frozen=True)
class AutoUpdateConfig:
    """``[autoupdates]`` and each group's ``[groups.autoupdates]`` (already merged over it)."""

    default: AutoUpdateSettings = AutoUpdateSettings()
    groups: tuple[tuple[str, AutoUpdateSettings], ...] = ()

    def for_group(self, group: str) -> AutoUpdateSettings:
        for name, settings in self.groups:
            if name == group:
                return settings
        return self.default


def autoupdates_table(top: SettingsReader, windows: Mapping[str, str]) -> AutoUpdateConfig:
    """Validate ``[autoupdates]`` and the ``autoupdates`` table of each ``[[groups]]``.

    A configured group whose effective ``reboot`` is ``"window"`` must have a window (a VM of the
    implicit default group is refused when planned instead: that group may well be empty).
    ``windows``: group name -> its window name ("" for none), from the validated groups."""
    table = top.table("autoupdates", KEYS)
    default = _settings(table, AutoUpdateSettings())
    overrides: list[tuple[str, AutoUpdateSettings]] = []
    for raw in top.tables("groups"):
        name = raw.raw.get("name")
        if not isinstance(name, str):
            continue  # groups_table has refused it already
        if raw.has("autoupdates"):
            t = raw.table("autoupdates", KEYS)
            overrides.append((name, _settings(t, default)))
            _check_window(t, name, overrides[-1][1], windows.get(name, ""))
        else:
            _check_window(table, name, default, windows.get(name, ""))
    return AutoUpdateConfig(default=default, groups=tuple(overrides))


def _settings(t: SettingsReader, base: AutoUpdateSettings) -> AutoUpdateSettings:
    mail = t.text("mail", base.mail)
    if mail and not _MAIL.match(mail):
        raise t.error("mail", f"{mail!r} is not a mail address", 'write mail = "ops@example.com" (or "root")')
    return AutoUpdateSettings(
        mode=t.text("mode", base.mode, choices=MODES),
        reboot=t.text("reboot", base.reboot, choices=REBOOTS),
        mail=mail,
        mail_report=t.text("mail_report", base.mail_report, choices=MAIL_REPORTS),
        syslog=t.boolean("syslog", base.syslog),
        origins=_origins(t, base.origins),
        install=t.boolean("install", base.install),
        wait_s=t.seconds("wait", base.wait_s, minimum=1, maximum=6 * 3600),
        reboot_horizon_s=t.seconds(
            "reboot_horizon", base.reboot_horizon_s, minimum=86400, maximum=366 * 86400
        ),
    )


def _origins(t: SettingsReader, base: tuple[str, ...]) -> tuple[str, ...]:
    origins = t.strings("origins", base)
    for pattern in origins:
        items = pattern.split(",")
        for item in items:
            match = _ORIGIN_ITEM.match(item.strip())
            if match is None or match["key"] not in ORIGIN_KEYS:
                raise t.error(
                    "origins",
                    f"{pattern!r} is not an unattended-upgrades origin pattern",
                    'write e.g. "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"'
                    f" (keys: {', '.join(sorted(ORIGIN_KEYS))}; no quotes, backslashes or ';')",
                )
    return origins


def _check_window(t: SettingsReader, group: str, settings: AutoUpdateSettings, window: str) -> None:
    if settings.managed and settings.mode != "off" and settings.reboot == "window" and not window:
        raise t.error(
            "reboot",
            f'"window" reboots inside the group\'s maintenance window, but group {group!r} has none',
            f'give group {group!r} a window, or set its [groups.autoupdates] reboot = "never"',
        )
