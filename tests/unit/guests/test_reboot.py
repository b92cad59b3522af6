"""Reboot detection: boot_id changes, deadlines, and the running kernel being the newest installed.

The guest is a scripted stand-in implementing the GuestChannel Protocol (and the clock is a fake that
only advances when slept on), so no test waits and no real machine reboots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.errors import GuestUnreachable, RebootFailed, RebootTimedOut
from orchestrator.guests.reboot import (
    BOOT_ID_COMMAND,
    KERNELS_COMMAND,
    REBOOT_COMMAND,
    KernelState,
    kernel_flavor,
    kernel_version_key,
    parse_kernels,
    reboot_and_wait,
)
from providers.base import ExecResult, VmRef
from tests.support.clock import FakeClock


@dataclass
class ScriptedGuest:
    """A guest that goes away for ``down_probes`` probes after a reboot and then boots ``next_kernel``."""

    clock: FakeClock
    boot_id: str = "boot-1"
    kernel: str = "6.1.0-28-cloud-amd64"
    installed: tuple[str, ...] = ("6.1.0-28-cloud-amd64", "6.1.0-30-cloud-amd64")
    next_kernel: str = "6.1.0-30-cloud-amd64"
    down_probes: int = 3
    stale_probes: int = 1  # answers with the old boot_id before going down (reboot not yet effective)
    comes_back: bool = True
    name: str = "scripted"
    commands: list[str] = field(default_factory=list)
    _pending: int = -1

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        self.commands.append(command)
        self.clock.advance(0.5)
        if command == REBOOT_COMMAND:
            self.reboot()
            return ExecResult(0)
        if command == BOOT_ID_COMMAND and self._pending >= 0:
            if self.stale_probes > 0:
                self.stale_probes -= 1
                return ExecResult(0, self.boot_id + "\n")
            if self._pending > 0 or not self.comes_back:
                self._pending -= 1
                raise GuestUnreachable("connection refused")
            self._pending = -1
            self.boot_id, self.kernel = "boot-2", self.next_kernel
        if command == BOOT_ID_COMMAND:
            return ExecResult(0, self.boot_id + "\n")
        if command == KERNELS_COMMAND:
            listing = "\n".join(f"/boot/vmlinuz-{k}" for k in self.installed)
            return ExecResult(0, f"{self.kernel}\n---\n{listing}\n")
        raise AssertionError(f"unexpected command {command!r}")

    def reboot(self) -> None:
        self._pending = self.down_probes

    def ping(self, *, timeout: float) -> bool:
        return True

    def close(self) -> None:
        pass


@dataclass
class RecordingPower:
    """Implements providers.capabilities.PowerOps; the platform reboots the scripted guest."""

    guest: ScriptedGuest
    rebooted: list[VmRef] = field(default_factory=list)

    def power_on(self, vm: VmRef) -> None: ...
    def shutdown(self, vm: VmRef, *, timeout: float) -> None: ...
    def power_off(self, vm: VmRef) -> None: ...

    def reboot_guest(self, vm: VmRef) -> None:
        self.rebooted.append(vm)
        self.guest.reboot()


def test_reboot_through_the_channel_waits_for_a_new_boot_id() -> None:
    clock = FakeClock()
    guest = ScriptedGuest(clock)
    outcome = reboot_and_wait(guest, timeout=300, clock=clock, poll_interval=2)
    assert (outcome.boot_id_before, outcome.boot_id_after) == ("boot-1", "boot-2")
    assert (outcome.kernel_before, outcome.kernel_after) == ("6.1.0-28-cloud-amd64", "6.1.0-30-cloud-amd64")
    assert REBOOT_COMMAND in guest.commands
    # the stale answer (old boot_id) did not count as "back"
    assert guest.commands.count(BOOT_ID_COMMAND) >= 1 + 1 + 3 + 1


def test_reboot_through_the_platform_when_given() -> None:
    clock = FakeClock()
    guest = ScriptedGuest(clock)
    power = RecordingPower(guest)
    vm = VmRef("lab", "uuid-1", "pw-lab-1")
    reboot_and_wait(guest, timeout=300, clock=clock, power=power, vm=vm)
    assert power.rebooted == [vm]
    assert REBOOT_COMMAND not in guest.commands


def test_a_guest_that_never_returns_times_out_at_the_deadline() -> None:
    clock = FakeClock()
    guest = ScriptedGuest(clock, comes_back=False)
    with pytest.raises(RebootTimedOut) as info:
        reboot_and_wait(guest, timeout=60, clock=clock, poll_interval=5)
    assert not info.value.retryable and info.value.code == "reboot_timeout"
    assert "no new boot id within 60 s" in str(info.value)
    assert 60 <= clock.monotonic() <= 75


def test_coming_back_on_an_older_kernel_than_installed_is_a_failure() -> None:
    clock = FakeClock()
    guest = ScriptedGuest(clock, next_kernel="6.1.0-28-cloud-amd64")
    with pytest.raises(RebootFailed) as info:
        reboot_and_wait(guest, timeout=300, clock=clock)
    assert info.value.code == "kernel_not_newest" and not info.value.retryable
    outcome = reboot_and_wait(
        ScriptedGuest(clock, next_kernel="6.1.0-28-cloud-amd64"),
        timeout=300,
        clock=clock,
        confirm_kernel=False,
    )
    assert outcome.kernel_after == "6.1.0-28-cloud-amd64"


def test_a_local_channel_is_never_rebooted() -> None:
    with pytest.raises(RebootFailed) as info:
        reboot_and_wait(LocalChannel(), timeout=60, clock=FakeClock())
    assert info.value.code == "local_reboot_refused"


@pytest.mark.parametrize(
    ("release", "flavor"),
    [
        ("6.1.0-28-cloud-amd64", "cloud-amd64"),
        ("6.1.0-28-amd64", "amd64"),
        ("5.15.0-91-generic", "generic"),
        ("5.14.0-427.13.1.el9_4.x86_64", ""),
        ("5.14.0-427.13.1.el9_4.x86_64+debug", "+debug"),
        ("5.14.21-150500.55.39-default", "default"),
    ],
)
def test_kernel_flavors(release: str, flavor: str) -> None:
    assert kernel_flavor(release) == flavor


def test_kernel_versions_compare_numerically() -> None:
    assert kernel_version_key("6.1.0-112-amd64") > kernel_version_key("6.1.0-28-amd64")
    assert kernel_version_key("5.14.0-427.13.1.el9_4.x86_64") > kernel_version_key(
        "5.14.0-362.8.1.el9_3.x86_64"
    )


def test_update_pending_only_counts_newer_kernels_of_the_running_flavor() -> None:
    text = "6.1.0-28-cloud-amd64\n---\n/boot/vmlinuz-6.1.0-28-cloud-amd64\n/boot/vmlinuz-6.1.0-30-amd64\n"
    state = parse_kernels(text)
    assert state.installed == ("6.1.0-28-cloud-amd64", "6.1.0-30-amd64")
    assert not state.update_pending  # the newer one is another flavor
    rhel = parse_kernels(
        "5.14.0-362.8.1.el9_3.x86_64\n---\n/lib/modules/5.14.0-362.8.1.el9_3.x86_64/vmlinuz\n"
        "/lib/modules/5.14.0-427.13.1.el9_4.x86_64/vmlinuz\n"
    )
    assert rhel.update_pending and rhel.newest_same_flavor == "5.14.0-427.13.1.el9_4.x86_64"
    assert not KernelState("6.1.0-28-amd64", ()).update_pending  # nothing visible (container, chroot)
