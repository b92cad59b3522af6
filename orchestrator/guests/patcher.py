"""GuestPatcher: what the activities call to assess and patch one guest through a channel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from providers.base import SYSTEM_CLOCK, Clock, ExecResult

from .channel import GuestChannel
from .errors import PackageManagerError
from .osinfo import OsInfo, detect_os
from .packages import PackageChange, PackageManager, PendingUpdate, UpdateSelection, package_manager_for
from .reboot import kernel_state
from .rpm import parse_nevra

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Assessment:
    os: OsInfo
    updates: tuple[PendingUpdate, ...]
    reboot_required: bool
    kernel: str
    restart_needed: tuple[str, ...] = ()  # services/processes using replaced files (information)

    @property
    def security_updates(self) -> tuple[PendingUpdate, ...]:
        return tuple(u for u in self.updates if u.security)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    changed: tuple[PackageChange, ...]
    reboot_required: bool
    nothing_to_do: bool
    restart_needed: tuple[str, ...] = ()


class GuestPatcher:
    def __init__(
        self,
        channel: GuestChannel,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lock_timeout: float = 600,
        query_timeout: float = 300,
        package_manager: PackageManager | None = None,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.query_timeout = query_timeout  # budget for read-only queries on top of the lock wait
        self._os: OsInfo | None = None
        self._pm = package_manager

    # -- what the guest is -------------------------------------------------------------------

    def os_info(self) -> OsInfo:
        if self._os is None:
            self._os = detect_os(self.channel, timeout=self.query_timeout)
        return self._os

    @property
    def package_manager(self) -> PackageManager:
        if self._pm is None:
            self._pm = package_manager_for(self.os_info(), lock_timeout=self.lock_timeout)
        return self._pm

    # -- verbs -------------------------------------------------------------------------------

    def assess(self) -> Assessment:
        pm = self.package_manager
        result = self._run(pm.list_updates_command(), timeout=self.lock_timeout + self.query_timeout)
        updates = tuple(pm.parse_updates(result))
        assessment = Assessment(
            os=self.os_info(),
            updates=updates,
            reboot_required=self.reboot_required(),
            kernel=self.running_kernel(),
            restart_needed=self.needs_restart(),
        )
        log.info(
            "guest_updates_assessed",
            os=assessment.os.id,
            updates=len(updates),
            security=len(assessment.security_updates),
            reboot_required=assessment.reboot_required,
        )
        return assessment

    def apply(self, selection: UpdateSelection, *, timeout: float) -> ApplyResult:
        pm = self.package_manager
        outcome = pm.parse_apply(self._run(pm.apply_command(selection), timeout=timeout))
        if selection.mode == "pinned":
            self._check_pins(selection.pins)
        result = ApplyResult(
            changed=outcome.changed,
            reboot_required=outcome.reboot_hint or self.reboot_required(),
            nothing_to_do=not outcome.changed,
            restart_needed=self.needs_restart(),
        )
        log.info(
            "guest_patch_applied",
            mode=selection.mode,
            changed=len(result.changed),
            reboot_required=result.reboot_required,
        )
        return result

    def installed(self, names: Sequence[str]) -> dict[str, str]:
        pm = self.package_manager
        return pm.parse_installed(self._run(pm.installed_command(list(names)), timeout=self.query_timeout))

    def running_kernel(self) -> str:
        return self._run("uname -r", timeout=self.query_timeout).stdout.strip()

    def reboot_required(self) -> bool:
        """The package manager's own signal, or a newer kernel of the running flavor installed."""
        pm = self.package_manager
        if pm.parse_reboot_required(self._run(pm.reboot_required_command(), timeout=self.query_timeout)):
            return True
        return kernel_state(self.channel, timeout=self.query_timeout).update_pending

    def needs_restart(self) -> tuple[str, ...]:
        """Services/processes still using replaced files, where the guest has a tool for it."""
        pm = self.package_manager
        try:
            return pm.parse_needs_restart(self._run(pm.needs_restart_command(), timeout=self.query_timeout))
        except PackageManagerError:
            return ()  # information only: never fails a patch

    # -- helpers -----------------------------------------------------------------------------

    def _run(self, command: str, *, timeout: float) -> ExecResult:
        return self.channel.run(command, timeout=timeout)

    def _check_pins(self, pins: Sequence[str]) -> None:
        wanted = dict(pin_target(self.package_manager.name, p) for p in pins)
        have = self.installed(list(wanted))
        missing = {n: v for n, v in wanted.items() if have.get(n) != v}
        if missing:
            pm = self.package_manager.name
            raise PackageManagerError(
                "pinned versions are not installed after applying: "
                + ", ".join(f"{n} wanted {v}, have {have.get(n) or 'none'}" for n, v in missing.items()),
                code=f"{pm}_failed" if pm in ("apt", "dnf", "zypper") else "parse",
            )


def pin_target(manager: str, pin: str) -> tuple[str, str]:
    """The (name, version) a pin asks for, in the form the manager's installed query reports."""
    if manager == "apt":
        name, _, version = pin.partition("=")
        return name.split(":", 1)[0], version
    nevra = parse_nevra(pin)
    if nevra is None:
        raise PackageManagerError(f"pin {pin!r} is not a NEVRA", code="invalid_selection", output=pin)
    return nevra.name, nevra.evr
