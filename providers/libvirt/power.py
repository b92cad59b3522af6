"""Power verbs of libvirt domains (Capability.POWER and GUEST_REBOOT).

All are idempotent where the contract says so: ``power_on`` of a running domain, ``power_off`` and
``shutdown`` of a stopped one do nothing. Graceful verbs go through the guest agent when it answers
(QEMU only), else the ACPI power button (the test driver knows only its default method).
``reboot_guest`` returns once the reboot was requested; the engine waits for the guest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from providers.base import VmRef
from providers.errors import NotFound, OperationRefused, ResourceBusy
from providers.libvirt.connection import LibvirtSession
from providers.timing import wait_until

log = structlog.get_logger("patchwave.providers.libvirt")


class DomainPower:
    """Power verbs over a :class:`LibvirtSession`; ``ping(dom)`` says whether the agent answers."""

    def __init__(self, session: LibvirtSession, *, driver: str, ping: Callable[[Any], bool]) -> None:
        self._session = session
        self._lv = session.libvirt
        self._driver = driver
        self._ping = ping

    def power_on(self, vm: VmRef) -> None:
        """Start a stopped (or managed-saved) domain, resume a paused one; no-op when running."""
        lv = self._lv

        def start(dom: Any) -> str:
            state = dom.state()[0]
            if state in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED):
                return "already_running"
            if state == lv.VIR_DOMAIN_SHUTDOWN:
                raise ResourceBusy(
                    "the domain is shutting down; power it on once it stopped",
                    target=str(vm),
                    code="shutting_down",
                )
            if state == lv.VIR_DOMAIN_PAUSED:
                dom.resume()
                return "resumed"
            if state == lv.VIR_DOMAIN_PMSUSPENDED:
                dom.pMWakeup(0)
                return "woken"
            if dom.isActive():
                raise OperationRefused(
                    f"the domain is active in state {state}; not starting it",
                    target=str(vm),
                    code="invalid_state",
                )
            dom.create()
            return "started"

        outcome = self._session.write_domain("power_on", vm, start)
        log.info("vm_powered_on", site=self._session.site, vm=vm.name, outcome=outcome)

    def shutdown(self, vm: VmRef, *, timeout: float) -> None:
        """Graceful shutdown (agent when it answers, else ACPI), waiting until the domain is off."""
        lv = self._lv

        def request(dom: Any) -> bool:
            if not dom.isActive():
                return False
            agent = self._ping(dom)
            # QEMU: explicit agent / ACPI; other drivers (test) know only their default method (0)
            acpi = lv.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN if self._driver == "QEMU" else 0
            dom.shutdownFlags(lv.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT if agent else acpi)
            log.info(
                "vm_shutdown_requested", site=self._session.site, vm=vm.name, via="agent" if agent else "acpi"
            )
            return True

        if self._session.write_domain("shutdown", vm, request):
            wait_until(
                lambda: self._stopped(vm),
                timeout=timeout,
                interval=1.0,
                what=f"{vm} to shut down",
                clock=self._session.clock,
                target=str(vm),
            )

    def _stopped(self, vm: VmRef) -> bool:
        try:
            return not self._session.read_domain("isActive", vm, lambda dom: dom.isActive())
        except NotFound:  # a transient domain is gone once it stopped
            return True

    def power_off(self, vm: VmRef) -> None:
        """Hard power off (``virDomainDestroy``); no-op when the domain is not running."""

        def destroy(dom: Any) -> bool:
            if not dom.isActive():
                return False
            dom.destroy()
            return True

        if self._session.write_domain("power_off", vm, destroy):
            log.info("vm_powered_off", site=self._session.site, vm=vm.name)

    def reboot_guest(self, vm: VmRef) -> None:
        """Ask the guest to reboot: through the agent when it answers, else the ACPI power button.
        Returns once the request was made; it does not wait for the guest to come back."""
        lv = self._lv

        def reboot(dom: Any) -> str:
            if dom.state()[0] not in (lv.VIR_DOMAIN_RUNNING, lv.VIR_DOMAIN_BLOCKED):
                raise OperationRefused("the domain is not running", target=str(vm), code="invalid_state")
            if self._ping(dom):
                try:
                    dom.reboot(lv.VIR_DOMAIN_REBOOT_GUEST_AGENT)
                    return "agent"
                except lv.libvirtError as exc:  # e.g. no logind in the guest (GUEST-LAB pitfall 4)
                    log.warning(
                        "vm_reboot_agent_failed",
                        site=self._session.site,
                        vm=vm.name,
                        code=exc.get_error_code(),
                    )
            dom.reboot(lv.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN)
            return "acpi"

        via = self._session.write_domain("reboot_guest", vm, reboot)
        log.info("vm_reboot_requested", site=self._session.site, vm=vm.name, via=via)
