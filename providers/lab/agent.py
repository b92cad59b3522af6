"""Talking to qemu-guest-agent in a lab guest through libvirt: ping, exec, set the clock.

``guest-exec`` with ``env`` replaces the whole environment (pitfall 7), so PATH and LC_ALL are
always passed; output arrives only when the process exits. Agent failures are :class:`LabError`
(code ``agent``); waits raise :class:`providers.base.ProviderTimeout`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from providers.base import ExecResult, ProviderTimeout, wait_until
from providers.lab.errors import LabError

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # pragma: no cover - domain.connect reports the missing SDK first
    libvirt = None  # type: ignore[assignment]
    libvirt_qemu = None  # type: ignore[assignment]

GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def agent_command(
    dom: Any, command: str, arguments: Mapping[str, Any] | None = None, *, timeout: int = 10
) -> Any:
    payload = {"execute": command, **({"arguments": dict(arguments)} if arguments else {})}
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(payload), timeout, 0)
    except libvirt.libvirtError as exc:
        raise LabError(f"agent {command} failed: {exc.get_error_message()}", code="agent") from exc
    return json.loads(reply)["return"]


def agent_ping(dom: Any, *, timeout: int = 2) -> bool:
    try:
        agent_command(dom, "guest-ping", timeout=timeout)
    except LabError:
        return False
    return True


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
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> ExecResult:
    """Run ``argv`` in the guest through qemu-guest-agent and wait for it (bounded by ``timeout``)."""
    environment = {"PATH": GUEST_PATH, "LC_ALL": "C", **(env or {})}
    arguments: dict[str, Any] = {
        "path": argv[0],
        "arg": list(argv[1:]),
        "env": [f"{k}={v}" for k, v in environment.items()],
        "capture-output": True,
    }
    if stdin is not None:
        arguments["input-data"] = base64.b64encode(stdin).decode()
    started = time.monotonic()
    pid = agent_command(dom, "guest-exec", arguments)["pid"]

    def status() -> dict[str, Any] | None:
        reply = agent_command(dom, "guest-exec-status", {"pid": pid})
        return reply if reply.get("exited") else None

    reply = wait_until(
        status, timeout=timeout, interval=0.05, what=f"{argv[0]} in {dom.name()}", target=dom.name()
    )
    return ExecResult(
        exit_code=reply.get("exitcode"),
        stdout=base64.b64decode(reply.get("out-data", "")).decode(errors="replace"),
        stderr=base64.b64decode(reply.get("err-data", "")).decode(errors="replace"),
        signal=reply.get("signal"),
        stdout_truncated=bool(reply.get("out-truncated")),
        stderr_truncated=bool(reply.get("err-truncated")),
        duration_s=time.monotonic() - started,
    )
