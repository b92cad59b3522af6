"""``unused_port`` hands out ports the kernel does not give to ``bind(0)`` or outgoing connections
(CI seed f085b56f #71: the run's Temporal port went to a simulator's SSH server started in between),
and never the same port twice in one process."""

from __future__ import annotations

import socket

from tests.support.loopback import LOWEST, _first_ephemeral, unused_port


def test_ports_are_below_the_ephemeral_range_distinct_and_free() -> None:
    ports = [unused_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < _first_ephemeral() for port in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_the_kernel_hands_out_is_never_drawn() -> None:
    with socket.socket() as kernel:
        kernel.bind(("127.0.0.1", 0))
        taken = kernel.getsockname()[1]
        assert taken >= _first_ephemeral()
        assert taken not in {unused_port() for _ in range(200)}
