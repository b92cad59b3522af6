"""A stateful Proxmox VE 9.1 API simulator over real HTTP(S), for tests and the lab.

    with Simulator(SimConfig(task_duration=0.05)) as sim:
        ProxmoxAPI("127.0.0.1", port=sim.port, user="root@pam", password=ROOT_PASSWORD,
                   verify_ssl=str(sim.ca_file))

Routes are declared in :mod:`tests.simulators.pvesim.routes` (checked against the official schema by
``tests/contract/test_pvesim_conformance.py``); behaviour lives in :mod:`tests.simulators.pvesim.actions`;
``python -m tests.simulators.pvesim --port 8006`` runs it standalone.
"""

from tests.simulators.pvesim.simulator import (
    FAULT_KINDS,
    RESTRICTED_TOKEN_ID,
    ROOT_PASSWORD,
    TOKEN_ID,
    Simulator,
)
from tests.simulators.pvesim.state import SimConfig

__all__ = ["FAULT_KINDS", "RESTRICTED_TOKEN_ID", "ROOT_PASSWORD", "TOKEN_ID", "SimConfig", "Simulator"]
