"""A scale test bed: thousands of VMs behind the provider contract, in process, answering instantly.

    fleet = ScaleFleet(FleetShape(vms=10_000, sites=4))
    bed = write_scale_bed(tmp_path, fleet, port=...)     # tests/support/scalebed.py
    Session(load_settings(bed.config), opener=bed.opener)  # each site's provider is fleet.provider(site)

Every VM's whole patch path runs for real through Temporal (baseline health, snapshot, patch, reboot
when a kernel came, verify, record, assess); only the platform and the guest are simulated
(:mod:`.fleet`, :mod:`.guest`).
"""

from tests.simulators.scalesim.fleet import FleetShape, ScaleFleet, ScaleProvider, site_name, vm_name
from tests.simulators.scalesim.guest import HEALTH_COMMAND, GuestTimes, ScaleGuest

__all__ = [
    "HEALTH_COMMAND",
    "FleetShape",
    "GuestTimes",
    "ScaleFleet",
    "ScaleGuest",
    "ScaleProvider",
    "site_name",
    "vm_name",
]
