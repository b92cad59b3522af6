"""Reboot detection: boot_id changes, deadlines, and the running kernel being the newest installed.

The guest is a scripted stand-in implementing the GuestChannel Protocol (and the clock is a fake that
only advances when slept on), so no test waits and no real machine reboots.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

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
    reboot_again_command,
    reboot_and_wait,
)
from providers.base import ExecResult, VmRef
from providers.timing import wait_until
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
    ignored_requests: int = 0  # requests lost before one takes (logind dropped them)
    name: str = "scripted"
    commands: list[str] = field(default_factory=list)
    _pending: int = -1

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        self.commands.append(command)
        self.clock.advance(0.5)
        if command == REBOOT_COMMAND:
            self.reboot()
            return ExecResult(0)
        if command.startswith("[ "):  # the guarded request: reboots only from the boot it names
            if command != reboot_again_command(self.boot_id):
                return ExecResult(1)
            self.reboot()
            return ExecResult(0)
        if command == BOOT_ID_COMMAND and self._pending >= 0:
            if self.stale_probes > 0:
                self.stale_probes -= 1
                return ExecResult(0, self.boot_id + "\n")
            if self._pending > 0 or not self.comes_back:
                self._pending = max(0, self._pending - 1)  # one that never comes back stays down
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
        if self.ignored_requests > 0:
            self.ignored_requests -= 1
            self.stale_probes = 10**6  # keeps answering with its old boot id
            return
        self.stale_probes = min(self.stale_probes, 1)
        self._pending = self.down_probes

    def asked_again(self) -> list[str]:
        return [c for c in self.commands if c.startswith("[ ")]

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


def test_a_lost_request_is_asked_again_once_through_the_channel() -> None:
    """The platform's request was dropped: the guest still answers with its old boot id a quarter of
    the way into the wait, so the channel asks again (guarded by that boot id) — once."""
    clock = FakeClock()
    guest = ScriptedGuest(clock, ignored_requests=1)
    power = RecordingPower(guest)
    outcome = reboot_and_wait(
        guest, timeout=300, clock=clock, power=power, vm=VmRef("lab", "uuid-1", "pw-lab-1")
    )
    assert outcome.boot_id_after == "boot-2"
    assert guest.asked_again() == [reboot_again_command("boot-1")]
    assert 75 <= clock.monotonic() <= 100  # asked at a quarter of 300 s, back a few probes later


def test_a_guest_that_ignores_every_request_is_asked_again_only_once() -> None:
    clock = FakeClock()
    guest = ScriptedGuest(clock, ignored_requests=5)
    with pytest.raises(RebootTimedOut) as info:
        reboot_and_wait(guest, timeout=60, clock=clock, poll_interval=5)
    assert "it still answered with the old boot id" in str(info.value)
    assert guest.asked_again() == [reboot_again_command("boot-1")]


def test_a_rebooting_guest_is_not_asked_again() -> None:
    """Silent (going down or booting) or back with a new boot id: no second request."""
    clock = FakeClock()
    quick = ScriptedGuest(clock)
    reboot_and_wait(quick, timeout=300, clock=clock)
    silent = ScriptedGuest(clock, comes_back=False, stale_probes=0)
    with pytest.raises(RebootTimedOut, match="stayed silent"):
        reboot_and_wait(silent, timeout=60, clock=clock, poll_interval=5)
    assert quick.asked_again() == silent.asked_again() == []


def test_the_request_again_reboots_only_the_boot_it_names(tmp_path: Path) -> None:
    """The guard runs in a real shell: ``systemctl`` (a stand-in first on PATH, never this machine's)
    is reached only when the running boot id is the one named."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    called = tmp_path / "called"
    for name in ("systemctl", "reboot"):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho {name} >> {called}\n")
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    current = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    other = subprocess.run(["sh", "-c", reboot_again_command("not-" + current)], env=env, check=False)
    assert other.returncode != 0
    same = subprocess.run(["sh", "-c", reboot_again_command(current)], env=env, check=False)
    assert same.returncode == 0
    wait_until(called.exists, timeout=10, interval=0.1, what="the stand-in systemctl")
    assert called.read_text() == "systemctl\n"  # asked once, for this boot only


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
