"""qemu-ga through libvirt: ping, guest IP addresses, and ``guest-exec`` with a bounded wait.

* Commands go through ``libvirt_qemu.qemuAgentCommand`` with ``agent_timeout`` (at least 1 s).
  An agent that is not connected or does not answer is ``VIR_ERR_AGENT_UNRESPONSIVE``, translated
  at the provider's boundary into :class:`~providers.errors.GuestAgentUnavailable`
  (``agent_unresponsive``); qemu-ga answering with an error (``VIR_ERR_INTERNAL_ERROR``, e.g. no
  such program) is :class:`~providers.base.OperationRefused` (``agent_command_failed``).
* ``guest-exec``'s ``env`` *replaces* the guest environment, so PATH is always sent (the caller's
  env wins). ``guest-exec-status`` is polled every 0.2 s and never retried: qemu-ga forgets a
  process once it reported its exit.
* qemu-ga has no kill command: at the deadline the process tree is SIGKILLed by a shell in the
  guest (:data:`KILL_TREE`), then :class:`~providers.errors.ProviderTimeout` is raised.

Exec calls go through :meth:`~providers.libvirt.connection.LibvirtSession.write_domain` (a live
connection, libvirt errors translated, state-changing: not retried). This is the one qemu-ga exec
implementation: the lab (``patchwave_lab.guest_clock``), which holds its own connection and domains,
reaches it through :class:`DomainSession` (one ``virDomain``, errors translated the same way).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog

from providers.base import ExecResult, VmRef
from providers.errors import OperationRefused, ProviderError, ProviderTimeout
from providers.guest_environment import GUEST_PATH  # guest-exec's env replaces the environment
from providers.libvirt.connection import translate_error
from providers.timing import SYSTEM_CLOCK, Clock, wait_until

log = structlog.get_logger("patchwave.providers.libvirt")

T = TypeVar("T")

#: How often ``guest-exec-status`` is asked whether the process has exited.
POLL_INTERVAL_S = 0.2

#: Stop a process, kill its descendants (parents from /proc/*/status, read with builtins only: a
#: fork per process takes seconds under TCG), then kill it. POSIX sh (dash, busybox, bash).
KILL_TREE = """
kill_tree() {
  local d key value parent
  kill -STOP "$1" 2>/dev/null
  for d in /proc/[0-9]*; do
    parent=
    [ -r "$d/status" ] || continue
    while read -r key value; do
      if [ "$key" = "PPid:" ]; then parent=$value; break; fi
    done < "$d/status"
    if [ "$parent" = "$1" ]; then kill_tree "${d#/proc/}"; fi
  done
  kill -KILL "$1" 2>/dev/null
}
kill_tree "$1"
"""


class AgentSession(Protocol):
    """What :class:`GuestAgent` needs of a libvirt session (:class:`LibvirtSession` has it)."""

    libvirt: Any
    site: str
    clock: Clock

    def write_domain(self, what: str, vm: VmRef, fn: Callable[[Any], T]) -> T: ...


class DomainSession:
    """An :class:`AgentSession` over one ``virDomain`` the caller already holds (the lab's guests):
    ``fn(dom)`` with ``libvirtError`` translated like the provider's, for any ``vm`` it is given."""

    def __init__(self, libvirt: Any, dom: Any, *, site: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.libvirt = libvirt
        self.site = site
        self.clock = clock
        self._dom = dom

    def write_domain(self, what: str, vm: VmRef, fn: Callable[[Any], T]) -> T:
        try:
            return fn(self._dom)
        except self.libvirt.libvirtError as exc:
            raise translate_error(self.libvirt, exc, target=str(vm)) from exc


class GuestAgent:
    """The qemu guest agent of the domains of one connection."""

    def __init__(
        self, session: AgentSession, *, timeout: float, poll_interval: float = POLL_INTERVAL_S
    ) -> None:
        self._session = session
        self._lv = session.libvirt
        self._timeout = timeout
        self._poll = poll_interval
        self._site = session.site
        self._clock = session.clock

    # ------------------------------------------------------------------ one domain

    def command(self, dom: Any, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """One agent command; its ``return`` value. Raises ``libvirtError`` / :class:`OperationRefused`."""
        import libvirt_qemu  # part of libvirt-python; imported lazily like libvirt

        request = {"execute": command, **({"arguments": dict(arguments)} if arguments is not None else {})}
        seconds = max(1, math.ceil(self._timeout))
        try:
            reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(request), seconds, 0)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() != self._lv.VIR_ERR_INTERNAL_ERROR:
                raise
            # qemu-ga answered with an error (e.g. guest-exec: no such program): the guest said no
            raise OperationRefused(
                f"guest agent refused {command}: {exc.get_error_message()}",
                target=dom.name(),
                code="agent_command_failed",
            ) from exc
        return json.loads(reply)["return"]

    def ping(self, dom: Any) -> bool:
        """True when qemu-ga answers ``guest-ping`` within the timeout; never raises for agent trouble."""
        if not dom.isActive():
            return False
        try:
            self.command(dom, "guest-ping")
        except OperationRefused:
            return False
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN:
                raise
            return False
        return True

    def addresses(self, dom: Any) -> tuple[str, ...]:
        """The guest's addresses as the agent reports them (``lo`` left out); ``()`` when it cannot."""
        try:
            interfaces = dom.interfaceAddresses(self._lv.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        except self._lv.libvirtError:
            return ()  # addresses are a convenience; an agent that cannot list them is still ready
        return tuple(
            a["addr"]
            for name, iface in sorted(interfaces.items())
            if name != "lo"
            for a in iface.get("addrs") or ()
            if a.get("addr")
        )

    # ------------------------------------------------------------------ guest-exec

    def run(
        self,
        vm: VmRef,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` through ``guest-exec`` and wait (bounded) for it to exit."""
        if not argv:
            raise OperationRefused("guest_exec needs a program to run", target=str(vm), code="invalid_argv")
        environment = {"PATH": GUEST_PATH, **(env or {})}
        arguments: dict[str, Any] = {
            "path": argv[0],
            "arg": list(argv[1:]),
            "capture-output": True,
            "env": [f"{key}={value}" for key, value in environment.items()],
        }
        if stdin is not None:
            arguments["input-data"] = base64.b64encode(stdin.encode()).decode()
        started = self._clock.monotonic()
        pid = self._spawn(vm, arguments)
        try:
            status = self._wait_exit(vm, pid, timeout=timeout, what=f"{argv[0]} (pid {pid}) to exit")
        except ProviderTimeout:
            self._kill_quietly(vm, pid)
            raise
        return ExecResult(
            exit_code=status.get("exitcode") if "signal" not in status else None,
            stdout=_decode(status.get("out-data")),
            stderr=_decode(status.get("err-data")),
            signal=status.get("signal"),
            stdout_truncated=bool(status.get("out-truncated")),
            stderr_truncated=bool(status.get("err-truncated")),
            duration_s=round(self._clock.monotonic() - started, 3),
        )

    def _spawn(self, vm: VmRef, arguments: Mapping[str, Any]) -> int:
        return int(
            self._session.write_domain(
                "guest_exec", vm, lambda dom: self.command(dom, "guest-exec", arguments)["pid"]
            )
        )

    def _wait_exit(self, vm: VmRef, pid: int, *, timeout: float, what: str) -> dict[str, Any]:
        """Poll ``guest-exec-status`` (not retried: qemu-ga forgets a process once it reported its exit)."""

        def exited() -> dict[str, Any] | None:
            status = self._session.write_domain(
                "guest_exec_status", vm, lambda dom: self.command(dom, "guest-exec-status", {"pid": pid})
            )
            return status if status.get("exited") else None

        return wait_until(
            exited, timeout=timeout, interval=self._poll, what=what, clock=self._clock, target=str(vm)
        )

    def _kill_quietly(self, vm: VmRef, pid: int) -> None:
        """qemu-ga has no 'kill' command: best effort, SIGKILL the timed-out process and its descendants
        with a shell in the guest, then collect its status so qemu-ga forgets it."""
        arguments = {
            "path": "/bin/sh",
            "arg": ["-c", KILL_TREE, "kill-tree", str(pid)],
            "env": [f"PATH={GUEST_PATH}"],
        }
        try:
            killer = self._spawn(vm, arguments)
            self._wait_exit(vm, killer, timeout=30, what=f"kill of pid {pid}")
            self._wait_exit(vm, pid, timeout=10, what=f"pid {pid} to die")
        except ProviderError as exc:
            log.warning("guest_exec_kill_failed", site=self._site, vm=vm.name, pid=pid, code=exc.code)
        else:
            log.info("guest_exec_killed", site=self._site, vm=vm.name, pid=pid)


def _decode(data: str | None) -> str:
    return base64.b64decode(data).decode("utf-8", errors="replace") if data else ""
