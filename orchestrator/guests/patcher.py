"""GuestPatcher: what the activities call to assess and patch one guest through a channel.

Two ways to apply: :meth:`GuestPatcher.apply` runs the package manager in the channel's own session
(hypervisor hosts), :meth:`GuestPatcher.start_job` + :meth:`GuestPatcher.await_job` +
:meth:`GuestPatcher.verify` run it as a detached job (:mod:`orchestrator.guests.job`) that outlives
the channel, the worker and any timeout — VMs. A patch is done only when the package manager is
done *and* consistent (:meth:`GuestPatcher.settle`): no lock holder, a clean database, the planned
versions installed. Deadlines are wall-clock times (:class:`datetime`), anchored by the caller on the
journaled patch intent, so a retried or resumed attempt never extends them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from orchestrator.guests import job as jobs
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import (
    GuestUnreachable,
    PackageDatabaseInconsistent,
    PackageManagerError,
    PackageManagerLocked,
    PatchTimedOut,
)
from orchestrator.guests.osinfo import OsInfo, detect_os
from orchestrator.guests.packages import package_manager_for
from orchestrator.guests.packages.base import (
    KERNEL,
    InstalledPackage,
    Integrity,
    PackageManager,
    PendingUpdate,
    UpdateSelection,
    dedupe,
    is_kernel_package,
    same_version,
)
from orchestrator.guests.packages.rpm import parse_nevra
from orchestrator.guests.reboot import kernel_state
from orchestrator.model import PackageChange
from providers.base import ExecResult
from providers.timing import SYSTEM_CLOCK, Clock

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
    restart_needed: tuple[str, ...] = ()  # services still running replaced files ("kernel": a newer kernel)
    kernel_pending: bool = False  # a kernel was changed or a newer one is installed: only a reboot helps


class GuestPatcher:
    def __init__(
        self,
        channel: GuestChannel,
        *,
        clock: Clock = SYSTEM_CLOCK,
        lock_timeout: float = 600,
        query_timeout: float = 300,
        package_manager: PackageManager | None = None,
        refresh: bool = True,
        poll_s: float = 3.0,
        job_wait_s: float = 5.0,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.lock_timeout = lock_timeout
        self.query_timeout = query_timeout  # budget for read-only queries on top of the lock wait
        self.refresh = refresh  # False: list updates from the guest's cached metadata (a dry run)
        self.poll_s = poll_s  # between looks at a busy package database (or a job the guest did not wait for)
        self.job_wait_s = job_wait_s  # a look at a running job waits in the guest up to this long for its end
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
            self._pm = package_manager_for(
                self.os_info(), lock_timeout=self.lock_timeout, refresh=self.refresh
            )
        return self._pm

    # -- verbs -------------------------------------------------------------------------------

    def pending_updates(self) -> tuple[PendingUpdate, ...]:
        """What the package manager would update: one query (read-only with ``refresh=False``).

        A busy or half-done package database is not "nothing to do": when the listing shows
        half-configured packages (:class:`PackageDatabaseInconsistent`) while someone holds the
        database, wait for it (at most ``lock_timeout``: :class:`PackageManagerLocked`, retryable)
        and list again; half-done with nobody at work is reported as such."""
        try:
            return self._list_updates()
        except PackageDatabaseInconsistent:
            if not self.integrity().busy:
                raise
        deadline = self.clock.now().timestamp() + self.lock_timeout
        busy = self._wait_idle(lambda: self.clock.now().timestamp() >= deadline).busy
        if busy:
            raise PackageManagerLocked(
                f"{self.package_manager.name}: the package database stayed busy for {self.lock_timeout:.0f}s",
                output="\n".join(busy),
            )
        return self._list_updates()

    def _list_updates(self) -> tuple[PendingUpdate, ...]:
        pm = self.package_manager
        result = self._run(pm.list_updates_command(), timeout=self.lock_timeout + self.query_timeout)
        return tuple(pm.parse_updates(result))

    def assess(self) -> Assessment:
        updates = self.pending_updates()
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
        stale = self.needs_restart()
        result = ApplyResult(
            changed=outcome.changed,
            reboot_required=outcome.reboot_hint or self.reboot_required(),
            nothing_to_do=not outcome.changed,
            restart_needed=stale,
            kernel_pending=self.kernel_pending(outcome.changed, stale),
        )
        log.info(
            "guest_patch_applied",
            mode=selection.mode,
            changed=len(result.changed),
            reboot_required=result.reboot_required,
        )
        return result

    def packages(self) -> tuple[InstalledPackage, ...]:
        """Every installed package with its source package (one read-only query)."""
        pm = self.package_manager
        return tuple(pm.parse_packages(self._run(pm.packages_command(), timeout=self.query_timeout)))

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

    def kernel_pending(self, changed: Sequence[PackageChange] = (), stale: Sequence[str] = ()) -> bool:
        """A kernel package changed, the restart tool reports a newer kernel, or one is installed."""
        if KERNEL in stale or any(is_kernel_package(c.name) for c in changed):
            return True
        return kernel_state(self.channel, timeout=self.query_timeout).update_pending

    def restart_services(self, services: Sequence[str]) -> tuple[str, ...]:
        """Restart the services still running replaced files (needrestart on Debian, ``systemctl restart``
        elsewhere); returns what is still stale afterwards (services the tool keeps running, the kernel)."""
        pm = self.package_manager
        pm.parse_restart_services(
            self._run(pm.restart_services_command(services), timeout=self.lock_timeout + self.query_timeout)
        )
        remaining = self.needs_restart()
        log.info("guest_services_restarted", restarted=len(services), remaining=len(remaining))
        return remaining

    def needs_restart(self) -> tuple[str, ...]:
        """Services/processes still using replaced files, where the guest has a tool for it."""
        pm = self.package_manager
        try:
            return pm.parse_needs_restart(self._run(pm.needs_restart_command(), timeout=self.query_timeout))
        except PackageManagerError:
            return ()  # information only: never fails a patch

    # -- detached jobs (VMs) -----------------------------------------------------------------

    def start_job(self, job: str, selection: UpdateSelection) -> None:
        """Start the apply of ``selection`` as detached job ``job`` (a no-op when it exists)."""
        result = self._run(
            jobs.start_command(job, self.package_manager.apply_command(selection)), timeout=120
        )
        if not result.ok:
            raise GuestUnreachable(
                f"could not start patch job {job} (exit {result.exit_code}): {result.stderr.strip()[-300:]}"
            )
        log.info("guest_patch_job_started", job=job, how=result.stdout.strip())

    def job_status(self, job: str, *, wait_s: float = 0.0) -> jobs.JobStatus:
        """The job's state; with ``wait_s``, once it ended or ``wait_s`` passed (:func:`jobs.wait_command`)."""
        command = jobs.wait_command(job, wait_s) if wait_s > 0 else jobs.status_command(job)
        result = self._run(command, timeout=self.query_timeout + wait_s)
        try:
            return jobs.parse_status(result.stdout)
        except ValueError as exc:
            raise PackageManagerError(f"job {job}: {exc}", code="parse", output=result.stdout) from exc

    def await_job(self, job: str, *, deadline: datetime, timeout_s: float) -> jobs.JobStatus:
        """Poll ``job`` until it finished or was lost; :class:`PatchTimedOut` (the job left running)
        when it still runs at ``deadline``. An absent job is started by the caller, never here."""
        while True:
            look = self.clock.now()
            wait_s = max(0.0, min(self.job_wait_s, (deadline - look).total_seconds()))
            status = self.job_status(job, wait_s=wait_s)
            if status.done or status.state is jobs.JobState.ABSENT:
                return status
            if self.clock.now() >= deadline:
                raise PatchTimedOut(timeout_s, job=job)
            if (self.clock.now() - look).total_seconds() < wait_s:  # the channel answered before the wait
                self.clock.sleep(self.poll_s)

    def job_result(self, job: str, status: jobs.JobStatus) -> ExecResult:
        """The finished job's exit status and output, as if it had run in the channel."""
        out = self._run(jobs.output_command(job, "out"), timeout=self.query_timeout).stdout
        err = self._run(jobs.output_command(job, "err"), timeout=self.query_timeout).stdout
        return ExecResult(exit_code=status.exit_code, stdout=out, stderr=err)

    def integrity(self) -> Integrity:
        pm = self.package_manager
        return pm.parse_integrity(self._run(pm.integrity_command(), timeout=self.query_timeout))

    def settle(self, *, deadline: datetime, timeout_s: float) -> Integrity:
        """Wait until nobody holds the package database (at most until ``deadline``:
        :class:`PatchTimedOut`), then return what the consistency check finds."""
        found = self._wait_idle(lambda: self.clock.now() >= deadline)
        if found.busy:
            log.warning("guest_package_manager_still_busy", holders=list(found.busy))
            raise PatchTimedOut(timeout_s)
        return found

    def verify(self, planned: Mapping[str, str], *, deadline: datetime, timeout_s: float) -> dict[str, str]:
        """The package manager is done and consistent and ``planned`` (name -> version) is what is
        installed: the installed versions. :class:`PackageDatabaseInconsistent` otherwise."""
        found = self.settle(deadline=deadline, timeout_s=timeout_s)
        if found.problems:
            raise PackageDatabaseInconsistent(
                "the package database is inconsistent after patching", problems=found.problems
            )
        installed = self.installed(list(planned)) if planned else {}
        wrong = [
            f"{name} planned {version}, installed {installed.get(name) or 'none'}"
            for name, version in planned.items()
            if not same_version(installed.get(name, ""), version)
        ]
        if wrong:
            raise PackageDatabaseInconsistent(
                "other versions than planned are installed", problems=tuple(wrong)
            )
        log.info("guest_patch_verified", packages=len(installed))
        return installed

    def _wait_idle(self, expired: Callable[[], bool]) -> Integrity:
        while True:
            found = self.integrity()
            if not found.busy or expired():
                return found
            log.info("guest_package_manager_busy", holders=list(found.busy))
            self.clock.sleep(self.poll_s)

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


def changes_between(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[PackageChange, ...]:
    """What changed from ``before`` to ``after`` (name -> version; "" = not installed)."""
    names = list(dict.fromkeys([*before, *after]))
    return dedupe([PackageChange(n, before.get(n, ""), after.get(n, "")) for n in names])
