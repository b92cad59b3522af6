"""Glue for tests: provider settings pointing at a running :class:`Simulator` (SSH included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from providers.proxmox.provider import ProxmoxSettings, parse_settings
from providers.settings import Secret
from tests.simulators.pvesim.simulator import ROOT_PASSWORD, TOKEN_ID, Simulator

#: Short polls and deadlines: simulated durations are tens of milliseconds.
FAST = {"poll_interval": 0.02, "timeout": 10, "task_timeout": 10, "lock_wait": 3, "agent_wait": 3}


def raw_settings(
    sim: Simulator, *, token: bool = False, ssh_dir: Path | None = None, **overrides: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {"host": "127.0.0.1", "port": sim.port, "ca_file": str(sim.ca_file), **FAST}
    if token:
        raw.update(token_name=TOKEN_ID, token_value=Secret(sim.token_secret))
    else:
        raw["password"] = Secret(ROOT_PASSWORD)
    if ssh_dir is not None:
        first = next(iter(sim.ssh_servers.values()))
        raw["ssh"] = {
            "user": "root",
            "host": "127.0.0.1",
            "port": first.port,
            "key_file": str(sim.client_key(ssh_dir / "id_ed25519")),
            "known_hosts": str(sim.write_known_hosts(ssh_dir / "known_hosts")),
        }
    raw.update(overrides)
    return raw


def settings_for(sim: Simulator, **kw: Any) -> ProxmoxSettings:
    return parse_settings("pve", raw_settings(sim, **kw))
