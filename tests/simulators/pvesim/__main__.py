"""Run the simulator standalone: ``python -m tests.simulators.pvesim --port 8006 [--workdir DIR]``.

Prints the connection details (port, CA file, token, SSH ports, known_hosts and client key paths)
as one JSON line on stdout, then serves until interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from tests.simulators.pvesim import ROOT_PASSWORD, TOKEN_ID, SimConfig, Simulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.simulators.pvesim", description=__doc__)
    parser.add_argument("--port", type=int, default=8006, help="HTTPS port on 127.0.0.1 (0 = random)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the CA, keys and known_hosts go")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP (proxmoxer itself needs HTTPS)")
    parser.add_argument("--task-duration", type=float, default=0.5, help="seconds every task runs")
    parser.add_argument(
        "--agent-boot-delay", type=float, default=2.0, help="agent answers this long after start"
    )
    parser.add_argument(
        "--reboot-offline", type=float, default=3.0, help="seconds a rebooting node is offline"
    )
    args = parser.parse_args()
    config = SimConfig(
        task_duration=args.task_duration,
        agent_boot_delay=args.agent_boot_delay,
        reboot_offline=args.reboot_offline,
        migrate_duration=max(1.0, args.task_duration),
    )
    workdir = args.workdir.resolve() if args.workdir else None
    if workdir:
        workdir.mkdir(parents=True, exist_ok=True)
    sim = Simulator(config, tls=not args.no_tls, port=args.port, workdir=workdir).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        key = sim.client_key(sim.workdir / "id_ed25519")
        known_hosts = sim.write_known_hosts(sim.workdir / "known_hosts")
        print(
            json.dumps(
                {
                    "url": f"{'http' if args.no_tls else 'https'}://127.0.0.1:{sim.port}/api2/json",
                    "port": sim.port,
                    "ca_file": str(sim.ca_file) if sim.ca_file else None,
                    "user": "root@pam",
                    "password": ROOT_PASSWORD,
                    "token_name": TOKEN_ID,
                    "token_value": sim.token_secret,
                    "ssh_ports": {n: s.port for n, s in sim.ssh_servers.items()},
                    "ssh_key_file": str(key),
                    "known_hosts": str(known_hosts),
                }
            ),
            flush=True,
        )
        stop.wait()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
