"""The scale test bed's configuration: a :class:`~tests.simulators.scalesim.ScaleFleet` as patchwave sees it.

Each site is a ``[providers.sN]`` table of kind ``libvirt`` (``test:///default``) that is parsed but
never opened: :meth:`ScaleBed.opener` serves the site from the fleet (``Session(..., opener=...)``),
the way the test-driver bed bridges its guests' disks. Guests are reached through the ``agent``
channel (the fleet's instant guest agent); one ``command`` health check; update mode ``all``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.settings import ProviderSite
from providers.base import Provider
from tests.simulators.scalesim import HEALTH_COMMAND, ScaleFleet


@dataclass
class ScaleBed:
    root: Path
    fleet: ScaleFleet

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def opener(self, site: ProviderSite) -> Provider:
        return self.fleet.provider(site.site)


def write_scale_bed(
    root: Path,
    fleet: ScaleFleet,
    *,
    port: int,
    concurrency: int = 50,
    prepare_ahead: int = 0,
    budget: str = '"10%"',
    wave_size: int = 0,
    canary_soak: str = "",
    hosts: bool = False,
    log_level: str = "warning",
    extra: str = "",
) -> ScaleBed:
    """``canary_soak``: a canary ring (the fleet's ``ring-canary`` VMs) soaked that long, then the main
    ring; "" = one ring. ``hosts``: the hypervisor phase too (platform patch, one host at a time)."""
    bed = ScaleBed(root, fleet)
    root.mkdir(parents=True, exist_ok=True)
    sites = "".join(f'[providers.{s}]\nkind = "libvirt"\nuri = "test:///default"\n' for s in fleet.sites)
    rings = '[rings]\norder = ["main"]\n'
    if canary_soak:
        rings = (
            '[[groups]]\nname = "canary"\nring = "canary"\nmatch = { tags = ["ring-canary"] }\n'
            f'[rings]\norder = ["canary", "main"]\n[rings.canary]\nsoak = "{canary_soak}"\n'
        )
    rings += f"[rings.main]\nwave_size = {wave_size}\n"
    host_phase = 'enabled = true\nscope = "all"\npatch = "platform"\nreboot = "if-required"\nevacuate = false'
    bed.config.write_text(f"""
[state]
dir = "{bed.state}"
[temporal]
mode = "embedded"
address = "127.0.0.1:{port}"
retention = "3d"
[logging]
format = "json"
level = "{log_level}"
{sites}
[targets]
tags = ["scale"]
{rings}
[policy]
concurrency = {concurrency}
prepare_ahead = {prepare_ahead}
failure_budget = {budget}
snapshot_ttl = "2h"
health_deadline = "2s"
patch_timeout = "2m"
default_vm_duration = "1m"
[hosts]
{host_phase if hosts else "enabled = false"}
[guests]
channel = "agent"
[[health]]
name = "app"
kind = "command"
command = "{HEALTH_COMMAND}"
timeout = "5s"
retries = 0
interval = "1s"
{extra}
""")
    return bed
