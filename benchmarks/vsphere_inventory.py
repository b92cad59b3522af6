"""Inventory of 1,000 VMs: patchwave's vSphere adapter vs naive pyVmomi attribute access.

Both read the same facts per VM (name, power state, host name, tools status, IP, guest OS, custom
values) from our vcsim launcher (4 clusters x 8 hosts, 250 VMs per cluster). Prints the wall-time
ratio measured in this one run and the SOAP round trips each needed (from /vcsim-control/stats).
Absolute times on a shared 2-core box are noise; the ratio and the call counts are the result.

    python benchmarks/vsphere_inventory.py            # builds the launcher if needed
"""

from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.simulators.vcsim.launcher import open_vsphere, start_vcsim


def naive(sim):
    """What a straightforward pyVmomi script does: walk a view and read attributes."""
    from pyVim.connect import Disconnect, SmartConnect
    from pyVmomi import vim

    si = SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password,
                      sslContext=ssl.create_default_context(cafile=str(sim.cert_file)))  # fmt: skip

    def run() -> int:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        rows = []
        for vm in view.view:
            rows.append(
                (vm.name, vm.runtime.powerState, vm.runtime.host.name, vm.guest.toolsRunningStatus,
                 vm.guest.ipAddress, vm.summary.config.guestFullName, list(vm.customValue))
            )  # fmt: skip
        view.DestroyView()
        return len(rows)

    return run, lambda: Disconnect(si)


def adapter(sim):
    provider = open_vsphere(sim, site="bench")
    return (lambda: len(provider.inventory().vms)), provider.close


def measure(sim, connect) -> tuple[float, int, dict[str, int]]:
    """Connect (not timed), then time one inventory read and count its SOAP calls."""
    run, close = connect(sim)
    try:
        sim.reset_stats()
        start = time.perf_counter()
        count = run()
        elapsed = time.perf_counter() - start
        return elapsed, count, sim.stats()
    finally:
        close()


def main() -> None:
    with start_vcsim("-dc", "1", "-cluster", "4", "-host", "8", "-vm", "250", "-balance") as sim:
        ours_s, ours_n, ours_calls = measure(sim, adapter)
        naive_s, naive_n, naive_calls = measure(sim, naive)
    assert ours_n == naive_n == 1000, (ours_n, naive_n)
    print(f"VMs: {ours_n} (vcsim launcher, 32 hosts, 4 clusters)")
    print(
        f"adapter (ContainerView + RetrievePropertiesEx): {ours_s:.2f} s, {sum(ours_calls.values())} SOAP calls {ours_calls}"
    )
    print(f"naive pyVmomi attribute access:                 {naive_s:.2f} s, {sum(naive_calls.values())} SOAP calls "
          f"(Fetch {naive_calls.get('Fetch', 0)})")  # fmt: skip
    print(f"ratio naive/adapter (wall, this run): {naive_s / ours_s:.1f}x; "
          f"SOAP round trips: {sum(naive_calls.values()) / sum(ours_calls.values()):.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()
