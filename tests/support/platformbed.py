"""Fake guests for VMs of a *simulated platform* (our vcsim launcher, the PVE simulator).

The simulators model the platform side (inventory, snapshots, tasks, faults) but run no guest OS;
each VM's guest is a :class:`~patchwave_lab.fakeguest.FakeGuest` chroot reached with the real ``local``
channel (``[guests.overrides."NAME"] local_root``), like the libvirt test-driver testbed. The
provider table is the caller's (secrets by reference), so the same bed serves vSphere and Proxmox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patchwave_lab.fakeguest import FakeGuest
from tests.support.loopback import unused_port
from tests.support.testbed import INSTALLED, UPGRADES, fake_guest_tables


@dataclass
class PlatformBed:
    root: Path
    guests: dict[str, FakeGuest] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"


def build_platform_bed(
    root: Path,
    *,
    site: str,
    provider_toml: str,
    vms: Sequence[str],
    broken: Sequence[str] = (),
    budget: int = 1,
    concurrency: int = 1,
    extra: str = "",
    checked: Sequence[str] | None = None,
    policy: str = "",
    guest_kw: Mapping[str, Mapping[str, Any]] = {},
) -> PlatformBed:
    """``provider_toml``: the lines of ``[providers.<site>]`` (kind included). ``broken``: VMs whose
    upgrade fails the health check (rolled back). ``extra``: more TOML appended at the end.
    ``checked``: the VMs the demo-app health check applies to (None = every VM). ``policy``: more
    ``[policy]`` lines. ``guest_kw``: VM -> more :meth:`FakeGuest.create` arguments (installed/repo are
    merged over the bed's)."""
    bed = PlatformBed(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in vms:
        kw = dict(guest_kw.get(name, {}))
        bed.guests[name] = FakeGuest.create(
            root / "guests" / name,
            installed={**INSTALLED, **kw.pop("installed", {})},
            repo={**UPGRADES, **kw.pop("repo", {})},
            broken={"demo-app": UPGRADES["demo-app"]} if name in broken else {},
            **kw,
        )
    guest_tables = fake_guest_tables({name: guest.root for name, guest in bed.guests.items()})
    names = ", ".join(f'"{n}"' for n in vms)
    match = "" if checked is None else "match = { names = [" + ", ".join(f'"{n}"' for n in checked) + "] }"
    bed.config.write_text(f"""
[state]
dir = "{bed.state}"

[temporal]
mode = "embedded"
address = "127.0.0.1:{unused_port()}"
retention = "3d"

[logging]
format = "json"
level = "info"

[providers.{site}]
{provider_toml}

[targets]
names = [{names}]

[policy]
concurrency = {concurrency}
failure_budget = {budget}
snapshot_ttl = "2h"
health_deadline = "3s"
patch_timeout = "2m"
default_vm_duration = "1m"
{policy}

[hosts]
enabled = false
patch = "none"

{guest_tables}{match}
{extra}
""")
    return bed
