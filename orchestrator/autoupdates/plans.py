"""``plan(os_info, policy)``: the :class:`AutoUpdateChange` that brings one guest to its policy (pure).

Per mode (see :mod:`orchestrator.config.autoupdates`):

* ``unmanaged`` — nothing.
* ``security`` / ``coexist`` — install the updater when missing (``install = true``), write its
  configuration (:mod:`.debian`, :mod:`.rhel`), the pause guards (:mod:`.units`), the reboot timer
  for ``reboot = "window"`` (else remove it), unmask the updater's timers and services (the lab
  image, like many hardened images, masks them) and enable + start its timers.
* ``off`` — disable and stop the updater's timers and patchwave's reboot timer; Debian also gets
  the package's own "disabled" ``20auto-upgrades`` and loses patchwave's ``90patchwave-...`` file.
  The package stays installed. The pause guards stay (a run still pauses).

SUSE is refused (:data:`SUSE_REASON`); ``unmanaged`` is accepted there (it changes nothing).
"""

from __future__ import annotations

from orchestrator.autoupdates import debian, rhel
from orchestrator.autoupdates.change import AutoUpdateChange, GuestFile
from orchestrator.autoupdates.errors import AutoUpdateError
from orchestrator.autoupdates.policy import AutoUpdatePolicy
from orchestrator.autoupdates.units import (
    DEBIAN,
    REBOOT_PATHS,
    REBOOT_TIMER,
    Updater,
    guard_files,
    reboot_files,
    updater_for,
)
from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.patcher import pin_target

SUSE_REASON = (
    "SUSE has no security-only updater patchwave can manage like unattended-upgrades or dnf-automatic:"
    " SLES/Leap's YaST 'Automatic Online Update' (yast2-online-update-configuration: a cron job that"
    " runs `zypper patch`, configured in /etc/sysconfig/automatic_online_update) and MicroOS/SLE"
    " Micro's transactional-update.timer are configured by YaST/transactional-update themselves;"
    " patchwave patches SUSE guests itself (`zypper patch`, security categories) — use mode"
    ' "unmanaged" for SUSE groups (runs still pause transactional-update.timer)'
)


def plan(
    os_info: OsInfo, policy: AutoUpdatePolicy, *, run_holds: tuple[str, ...] = (), lock_timeout: float = 600
) -> AutoUpdateChange:
    """What ``apply`` must do on a guest running ``os_info`` to match ``policy``. ``run_holds``: the
    packages the latest run held on the guest (:mod:`.holds`; the RHEL family's automatic.conf keeps
    them; Debian's are in a file of their own that ``apply`` leaves alone).

    Raises :class:`AutoUpdateError` (``unsupported_os``, ``no_origins``) when it cannot be done."""
    updater = updater_for(os_info)
    if not policy.managed:
        return AutoUpdateChange(
            os_info.family,
            updater.name,
            policy.mode,
            notes=("unmanaged: patchwave leaves the updater alone",),
        )
    if os_info.family == "suse":
        raise AutoUpdateError(SUSE_REASON, code="unsupported_os")
    if os_info.family not in ("debian", "rhel"):
        raise AutoUpdateError(
            f"no automatic updater is known for {os_info.pretty_name or os_info.id!r}"
            f' (family {os_info.family!r}); use mode "unmanaged"',
            code="unsupported_os",
        )
    holds = held_packages(os_info, policy)
    if os_info.family == "rhel" and policy.holds_pins:
        holds = tuple(dict.fromkeys((*holds, *run_holds)))
    if policy.mode == "off":
        return _off(os_info, updater, policy)
    return _on(os_info, updater, policy, holds, lock_timeout)


def held_packages(os_info: OsInfo, policy: AutoUpdatePolicy) -> tuple[str, ...]:
    """The package names of the policy's pins (``coexist``; an unreadable pin is skipped)."""
    manager = "apt" if os_info.family == "debian" else "dnf"
    names = []
    for pin in policy.pins:
        try:
            names.append(pin_target(manager, pin)[0])
        except PackageManagerError:
            continue  # the run refuses it (invalid_selection); nothing to hold
    return tuple(dict.fromkeys(n for n in names if n))


def _on(
    os_info: OsInfo, updater: Updater, policy: AutoUpdatePolicy, holds: tuple[str, ...], lock_timeout: float
) -> AutoUpdateChange:
    files: list[GuestFile]
    if updater is DEBIAN:
        files = [
            GuestFile(debian.PERIODIC_PATH, debian.periodic_text(True), keep_original=True),
            GuestFile(debian.CONF_PATH, debian.conf_text(os_info, policy, holds)),
        ]
        install = Apt(lock_timeout=lock_timeout).install_command([updater.package])
        check = f"dpkg-query -W -f='${{db:Status-Abbrev}}' {updater.package} 2>/dev/null | grep -q '^ii'"
    else:
        files = [GuestFile(rhel.CONF_PATH, rhel.conf_text(policy, holds), keep_original=True)]
        install = Dnf(lock_timeout=lock_timeout).install_command([updater.package])
        check = f"rpm -q --whatprovides {updater.package} >/dev/null 2>&1"
    files += guard_files(updater)
    window = policy.reboot == "window" and bool(policy.reboot_times)
    if window:
        files += reboot_files(updater, policy.window, policy.reboot_times)
    return AutoUpdateChange(
        family=os_info.family,
        updater=updater.name,
        mode=policy.mode,
        install=install if policy.install else "",
        installed_check=check,
        files=tuple(files),
        remove=() if window else REBOOT_PATHS,
        unmask=(*updater.timers, *updater.services),
        enable=(*updater.timers, *((REBOOT_TIMER,) if window else ())),
        disable=() if window else (REBOOT_TIMER,),
        holds=holds,
        notes=_notes(policy),
    )


def _off(os_info: OsInfo, updater: Updater, policy: AutoUpdatePolicy) -> AutoUpdateChange:
    files = list(guard_files(updater))
    remove = list(REBOOT_PATHS)
    if updater is DEBIAN:
        files.insert(0, GuestFile(debian.PERIODIC_PATH, debian.periodic_text(False), keep_original=True))
        remove.insert(0, debian.CONF_PATH)
    return AutoUpdateChange(
        family=os_info.family,
        updater=updater.name,
        mode=policy.mode,
        files=tuple(files),
        remove=tuple(remove),
        disable=(*updater.timers, *updater.extra_timers, REBOOT_TIMER),
        notes=("off: the updater's timers are disabled; patchwave patches this VM itself",),
    )


def _notes(policy: AutoUpdatePolicy) -> tuple[str, ...]:
    notes = []
    if policy.mail:
        notes.append(
            "mail needs a working local mail transport (mail/sendmail, or SMTP on localhost for dnf)"
        )
    if policy.reboot == "window" and policy.reboot_times:
        notes.append(
            f"reboots at {len(policy.reboot_times)} openings of window {policy.window!r},"
            f" {policy.reboot_times[0]} to {policy.reboot_times[-1]} UTC (apply again to renew)"
        )
    elif policy.reboot == "window":
        notes.append(
            f"window {policy.window or '?'!r} does not open within the reboot horizon: no reboot timer"
        )
    return tuple(notes)
