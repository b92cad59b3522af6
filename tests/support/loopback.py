"""Loopback networking for the tests: every service a test starts listens on 127.0.0.1."""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Where the kernel draws ports for ``bind(port 0)`` and outgoing connections.
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000

_handed_out: set[int] = set()
_draw = random.Random()


def _first_ephemeral() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a service started later.

    Drawn below the kernel's ephemeral range and never handed out twice in this process: a port
    the OS picked (``bind(0)``) is free again once the probe closes, and the OS hands it to the
    next ``bind(0)`` or outgoing connection — CI seed f085b56f #71 gave the Temporal port of a run
    to a Proxmox simulator's SSH server started in between, so the run's server could not bind it.
    """
    top = _first_ephemeral()
    for _ in range(500) if top - LOWEST > 1000 else ():
        port = _draw.randrange(LOWEST, top)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # no room below the ephemeral range: let the OS pick
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
