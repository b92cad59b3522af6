"""Reboot a guest and wait until it is back: a new boot_id, and the newest installed kernel running.

A reboot is real only when ``/proc/sys/kernel/random/boot_id`` changed; a channel that answers again
is not enough (the command may not have taken effect yet, or a snapshot revert may have rewound time).
The reboot goes through the platform (``PowerOps.reboot_guest``, e.g. ACPI or the guest agent) when
one is given, otherwise through the channel itself. Waits have a deadline and raise
:class:`~orchestrator.guests.errors.RebootTimedOut` (permanent: the VM is reverted, not retried).

A request can be lost: the guest agent's ``shutdown -r +0`` and the ACPI power button both go through
logind, which may drop it on a loaded guest. A guest that still answers with its old boot id a quarter
of the way into the wait (:data:`ASK_AGAIN_AT`) never began to shut down — the channel's own daemon
would be gone by then — so the reboot is asked for once more, through the channel, by a command that
reboots only while the boot id is still the old one (:func:`reboot_again_command`): it can never
reboot the guest a second time. A silent guest is not asked again (it may be booting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog

from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import GuestUnreachable, RebootFailed, RebootTimedOut
from providers.base import VmRef
from providers.capabilities import PowerOps
from providers.errors import ProviderTimeout, TransientProviderError
from providers.timing import SYSTEM_CLOCK, Clock

log = structlog.get_logger(__name__)

BOOT_ID_COMMAND = "cat /proc/sys/kernel/random/boot_id"
KERNELS_COMMAND = "uname -r; echo '---'; ls -1d /boot/vmlinuz-* /lib/modules/*/vmlinuz 2>/dev/null; true"
REBOOT_COMMAND = "nohup sh -c 'sleep 2; systemctl reboot || reboot' >/dev/null 2>&1 &"
#: The share of the reboot wait after which a guest still on its old boot id is asked again.
ASK_AGAIN_AT = 0.25
_CHUNK = re.compile(r"([0-9]+)")


@dataclass(frozen=True, slots=True)
class KernelState:
    running: str
    installed: tuple[str, ...]

    @property
    def newest_same_flavor(self) -> str:
        """The newest installed kernel of the running kernel's flavor ("" when none is visible)."""
        flavor = kernel_flavor(self.running)
        same = [k for k in self.installed if kernel_flavor(k) == flavor]
        return max(same, key=kernel_version_key, default="")

    @property
    def update_pending(self) -> bool:
        newest = self.newest_same_flavor
        return (
            bool(newest)
            and newest != self.running
            and kernel_version_key(newest) > kernel_version_key(self.running)
        )


@dataclass(frozen=True, slots=True)
class RebootOutcome:
    boot_id_before: str
    boot_id_after: str
    kernel_before: str
    kernel_after: str


def kernel_version_key(release: str) -> tuple[tuple[int, int, str], ...]:
    """Natural order for kernel releases: numbers compare as numbers ("6.1.0-28" < "6.1.0-112")."""
    return tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in _CHUNK.split(release)
        if part
    )


def kernel_flavor(release: str) -> str:
    """``6.1.0-28-cloud-amd64`` -> ``cloud-amd64``; ``5.14.0-427.el9.x86_64+debug`` -> ``+debug``."""
    base, plus, extra = release.partition("+")
    segments = base.split("-")
    for i, seg in enumerate(segments[1:], start=1):
        if seg[:1].isalpha():
            return "-".join(segments[i:]) + (plus + extra if plus else "")
    return plus + extra if plus else ""


def parse_kernels(text: str) -> KernelState:
    running, _, listing = text.partition("---")
    installed: list[str] = []
    for line in listing.split():
        if line.startswith("/boot/vmlinuz-"):
            installed.append(line[len("/boot/vmlinuz-") :])
        elif line.startswith("/lib/modules/") and line.endswith("/vmlinuz"):
            installed.append(line[len("/lib/modules/") : -len("/vmlinuz")])
    return KernelState(running=running.strip(), installed=tuple(dict.fromkeys(installed)))


def kernel_state(channel: GuestChannel, *, timeout: float = 30.0) -> KernelState:
    return parse_kernels(channel.run(KERNELS_COMMAND, timeout=timeout).stdout)


def read_boot_id(channel: GuestChannel, *, timeout: float = 30.0) -> str:
    result = channel.run(BOOT_ID_COMMAND, timeout=timeout)
    boot_id = result.stdout.strip()
    if not result.ok or not boot_id:
        raise GuestUnreachable(f"cannot read boot_id (exit {result.exit_code})", code="boot_id")
    return boot_id


def reboot_and_wait(
    channel: GuestChannel,
    *,
    timeout: float,
    clock: Clock = SYSTEM_CLOCK,
    power: PowerOps | None = None,
    vm: VmRef | None = None,
    poll_interval: float = 2.0,
    probe_timeout: float = 10.0,
    confirm_kernel: bool = True,
) -> RebootOutcome:
    """Reboot, wait (at most ``timeout`` seconds) for a new boot_id, then check the kernel;
    :class:`RebootTimedOut` when the guest is not back in time."""
    if power is None and channel.name == "local":
        # The "guest" of a local channel is the machine patchwave runs on (or a chroot on it, where a
        # busybox `reboot` would reboot the host). We never reboot ourselves.
        raise RebootFailed(
            "refusing to reboot through a local channel: that is the machine patchwave runs on",
            code="local_reboot_refused",
        )
    deadline = clock.monotonic() + timeout
    before = read_boot_id(channel, timeout=probe_timeout)
    kernel_before = kernel_state(channel, timeout=probe_timeout).running
    request_reboot(channel, power=power, vm=vm, probe_timeout=probe_timeout)
    log.info("guest_reboot_requested", via="platform" if power else channel.name, boot_id=before)
    after = wait_for_new_boot_id(
        channel, before, timeout=max(0.0, deadline - clock.monotonic()), clock=clock,
        poll_interval=poll_interval, probe_timeout=probe_timeout, total=timeout, ask_again=True,
    )  # fmt: skip
    return confirm_reboot(channel, before, after, kernel_before, probe_timeout, confirm_kernel)


def request_reboot(
    channel: GuestChannel, *, power: PowerOps | None, vm: VmRef | None, probe_timeout: float = 10.0
) -> None:
    """Ask for the reboot: through the platform when given, otherwise through the channel."""
    if power is not None and vm is not None:
        power.reboot_guest(vm)
        return
    _run_reboot(channel, REBOOT_COMMAND, probe_timeout)


def _run_reboot(channel: GuestChannel, command: str, probe_timeout: float) -> None:
    try:
        channel.run(command, timeout=probe_timeout)
    except (TransientProviderError, ProviderTimeout):
        pass  # the session may die with the guest; the boot_id tells whether it rebooted


def reboot_again_command(before: str) -> str:
    """:data:`REBOOT_COMMAND`, only while the guest still runs boot ``before`` (checked in the guest,
    at the moment it runs): a guest that rebooted in the meantime is left alone."""
    return f'[ "$({BOOT_ID_COMMAND})" = "{before}" ] || exit 3\n{REBOOT_COMMAND}'


def _ask_again(channel: GuestChannel, before: str, waited: float, probe_timeout: float) -> None:
    log.warning("guest_reboot_not_taken", via=channel.name, boot_id=before, waited_s=round(waited))
    _run_reboot(channel, reboot_again_command(before), probe_timeout)


def wait_for_new_boot_id(
    channel: GuestChannel,
    before: str,
    *,
    timeout: float,
    clock: Clock = SYSTEM_CLOCK,
    poll_interval: float = 2.0,
    probe_timeout: float = 10.0,
    total: float | None = None,
    ask_again: bool = False,
) -> str:
    """The guest's boot id once it differs from ``before``; :class:`RebootTimedOut` after
    ``timeout`` seconds, saying whether the guest was silent or kept its old boot id
    (``total``: the whole reboot budget, for the message; default ``timeout``). ``ask_again``: the
    reboot was just requested; a guest still on ``before`` at :data:`ASK_AGAIN_AT` of the wait is
    asked once more (see the module's docstring)."""
    start = clock.monotonic()
    deadline = start + timeout
    again_at = start + ASK_AGAIN_AT * timeout if ask_again else None
    answered = False
    while True:
        try:
            result = channel.run(BOOT_ID_COMMAND, timeout=min(probe_timeout, max(1.0, timeout)))
        except TransientProviderError:  # GuestUnreachable, ProviderTimeout, ProviderUnavailable
            result = None
        boot_id = result.stdout.strip() if result is not None and result.ok else ""
        if boot_id and boot_id != before:
            return boot_id
        answered = answered or bool(boot_id)
        if again_at is not None and boot_id == before and clock.monotonic() >= again_at:
            _ask_again(channel, before, clock.monotonic() - start, probe_timeout)
            again_at = None
        if clock.monotonic() >= deadline:
            seen = (
                "it still answered with the old boot id"
                if answered
                else f"its {channel.name} channel stayed silent"
            )
            raise RebootTimedOut(
                f"no new boot id within {total if total is not None else timeout:.0f} s of the reboot ({seen})",
            )
        clock.sleep(min(poll_interval, max(0.0, deadline - clock.monotonic())))


def confirm_reboot(
    channel: GuestChannel,
    before: str,
    after: str,
    kernel_before: str,
    probe_timeout: float = 10.0,
    confirm_kernel: bool = True,
) -> RebootOutcome:
    """The rebooted guest runs the newest installed kernel of its flavor (:class:`RebootFailed`)."""
    state = kernel_state(channel, timeout=probe_timeout)
    log.info("guest_rebooted", boot_id=after, kernel=state.running, kernel_before=kernel_before)
    if confirm_kernel and state.update_pending:
        raise RebootFailed(
            f"guest rebooted into kernel {state.running} but {state.newest_same_flavor} is installed;"
            " check the boot loader's default entry",
            code="kernel_not_newest",
        )
    return RebootOutcome(before, after, kernel_before, state.running)
