"""qemu-guest-agent in a lab guest: wait until it answers, set the clock, run a command.

What the lab needs beyond :mod:`providers.libvirt.agent` (the one qemu-ga implementation, used here
for ping and exec through :class:`~providers.libvirt.agent.DomainSession` on the lab's own
connection): waiting for the agent of a guest that is still booting (and noticing one that stopped),
and setting the guest clock after a restore or revert (pitfall 9).

``guest-exec`` with ``env`` replaces the whole environment (pitfall 7): the libvirt agent always
sends PATH (:data:`providers.guest_environment.GUEST_PATH`) and :func:`agent_exec` adds ``LC_ALL=C``.
Output arrives only when the process exits. Agent errors are the provider's, translated from
``libvirtError`` (e.g. :class:`~providers.errors.GuestAgentUnavailable` ``agent_unresponsive``); a
command that outlives its timeout is killed with its descendants, then
:class:`~providers.errors.ProviderTimeout` is raised. ``setTime`` failures are :class:`LabError`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from patchwave_lab.errors import LabError
from providers.base import ExecResult, VmRef
from providers.errors import ProviderTimeout
from providers.libvirt.agent import DomainSession, GuestAgent
from providers.timing import wait_until

try:
    import libvirt
except ImportError:  # pragma: no cover - domain.connect reports the missing SDK first
    libvirt = None

#: The ``site`` of the refs the lab's agent calls name (errors say ``lab/<guest>``).
LAB_SITE = "lab"
#: Seconds one agent command may take (``qemuAgentCommand``'s own timeout).
AGENT_COMMAND_TIMEOUT_S = 10
#: guest-exec-status polling: the lab's commands are short, and it waits on each.
POLL_INTERVAL_S = 0.05


def guest_agent(dom: Any, *, timeout: float = AGENT_COMMAND_TIMEOUT_S) -> GuestAgent:
    """The libvirt provider's agent client, reaching ``dom`` on the lab's connection."""
    return GuestAgent(
        DomainSession(libvirt, dom, site=LAB_SITE), timeout=timeout, poll_interval=POLL_INTERVAL_S
    )


def agent_ping(dom: Any, *, timeout: int = 2) -> bool:
    """True when the guest agent answers ``guest-ping`` within ``timeout`` seconds."""
    try:
        return guest_agent(dom, timeout=timeout).ping(dom)
    except libvirt.libvirtError:  # the domain went away: no answer
        return False


def wait_agent(dom: Any, *, timeout: float, console_log: Path | None = None) -> None:
    def probe() -> bool:
        if not dom.isActive():
            hint = f"; console log {console_log}" if console_log else ""
            raise LabError(f"{dom.name()} stopped while waiting for its agent{hint}", code="boot")
        return agent_ping(dom)

    try:
        wait_until(
            probe, timeout=timeout, interval=0.2, what=f"guest agent of {dom.name()}", target=dom.name()
        )
    except ProviderTimeout as exc:
        if console_log:
            exc.message += f" (console log: {console_log})"
        raise


def set_time(dom: Any) -> None:
    """Set the guest clock to now (it is in the past after a restore or revert; pitfall 9)."""
    now = time.time()
    try:
        dom.setTime({"seconds": int(now), "nseconds": int((now % 1) * 1e9)}, 0)
    except libvirt.libvirtError as exc:
        raise LabError(f"setTime on {dom.name()} failed: {exc.get_error_message()}", code="agent") from exc


def agent_exec(
    dom: Any,
    argv: Sequence[str],
    *,
    timeout: float,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ExecResult:
    """Run ``argv`` in the guest through qemu-guest-agent and wait for it (bounded by ``timeout``)."""
    vm = VmRef(site=LAB_SITE, id=dom.UUIDString(), name=dom.name())
    environment = {"LC_ALL": "C", **(env or {})}
    return guest_agent(dom).run(vm, argv, timeout=timeout, env=environment, stdin=stdin)
