"""The worker's context: everything an activity may use, passed explicitly (no ambient globals).

Settings, the fact store, the clock, the logger, and the providers — opened lazily, once per site
per context (one context per worker run), shared by the activity threads (adapters are
thread-safe by contract). Guest channels are built per VM from the settings.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, overload

import structlog

from orchestrator.config.settings import HealthCheckSettings, ProviderSite, Settings, SshSettings
from orchestrator.errors import FactStoreError
from orchestrator.facts.inventory import InventoryStore
from orchestrator.facts.store import FactStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.guests.channel import AgentChannel, GuestChannel, LocalChannel
from orchestrator.health import HealthTarget
from orchestrator.model import Plan, host_step_id, vm_step_id
from orchestrator.planning.cve import override_windows as windowless
from orchestrator.planning.planner import group_of, make_plan
from orchestrator.vulns.risk import VmRisk
from providers import open_provider
from providers.base import Capability, HostRef, Inventory, Provider, VmInfo, VmRef
from providers.capabilities import (
    GuestExecOps,
    HostPatchOps,
    HostRebootOps,
    MaintenanceCapability,
    MaintenanceOps,
    PowerCapability,
    PowerOps,
    SnapshotCapability,
    SnapshotOps,
    require,
)
from providers.timing import SYSTEM_CLOCK, Clock

ProviderOpener = Callable[[ProviderSite], Provider]


class DurationHistory(Protocol):
    """What planning reads of the fact store: earlier steps' durations (:class:`FactStore`, or a
    read-only :class:`~orchestrator.facts.reader.FactReader` for the dry run)."""

    def history(self, step_ids: Sequence[str], limit: int = 10) -> dict[str, list[float]]: ...


class RiskSource(Protocol):
    """What planning reads of the vulnerability assessments: each VM's risk (``VulnStore``, or the
    read-only ``FactReader`` for the dry run)."""

    def risks(self) -> dict[str, VmRisk]: ...


def open_site(site: ProviderSite) -> Provider:
    """The default opener: ``providers.open_provider(kind, settings)``."""
    return open_provider(site.kind, site.settings)


class Context:
    def __init__(
        self,
        settings: Settings,
        facts: FactStore | None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        log: Any = None,
        opener: ProviderOpener = open_site,
        record_inventory: bool = True,
        history: DurationHistory | None = None,
        risks: RiskSource | None = None,
    ) -> None:
        """``facts`` is None only for the dry run, which plans with ``history`` and ``risks`` and writes
        nothing."""
        self.settings = settings
        self._facts = facts
        self._history: DurationHistory | None = history if history is not None else facts
        self._risks: RiskSource | None = VulnStore(facts) if risks is None and facts is not None else risks
        self.clock = clock
        self._record_inventories = record_inventory  # off for the dry run, which writes nothing
        self.log = log if log is not None else structlog.get_logger("patchwave")
        self._opener = opener
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

    @property
    def facts(self) -> FactStore:
        if self._facts is None:
            raise RuntimeError("this context has no fact store (a dry run records nothing)")
        return self._facts

    # ---------------------------------------------------------------- providers

    def provider(self, site: str) -> Provider:
        """The site's provider, connected on first use (once per context)."""
        with self._lock:
            if site not in self._providers:
                self._providers[site] = self._opener(self.settings.provider(site))
                self.log.info("provider_opened", site=site, kind=self.settings.provider(site).kind)
            return self._providers[site]

    @overload
    def require(self, site: str, capability: Literal[Capability.INVENTORY]) -> Provider: ...
    @overload
    def require(self, site: str, capability: SnapshotCapability) -> SnapshotOps: ...
    @overload
    def require(self, site: str, capability: PowerCapability) -> PowerOps: ...
    @overload
    def require(self, site: str, capability: Literal[Capability.GUEST_EXEC]) -> GuestExecOps: ...
    @overload
    def require(self, site: str, capability: MaintenanceCapability) -> MaintenanceOps: ...
    @overload
    def require(self, site: str, capability: Literal[Capability.HOST_PATCH]) -> HostPatchOps: ...
    @overload
    def require(self, site: str, capability: Literal[Capability.HOST_REBOOT]) -> HostRebootOps: ...
    @overload
    def require(self, site: str, capability: Capability) -> Provider: ...
    def require(self, site: str, capability: Capability) -> Provider:
        """The site's provider typed as ``capability``'s Protocol (:func:`providers.base.require`);
        :class:`~providers.errors.CapabilityMissing` when the provider does not declare it."""
        return require(self.provider(site), capability)

    # ---------------------------------------------------------------- discovery and planning

    def discover(self, sites: Sequence[str] | None = None) -> tuple[Inventory, ...]:
        """Every site's inventory (sites in configuration order)."""
        chosen = self.settings.sites if sites is None else sites
        found = tuple(self.inventory_of(site) for site in chosen)
        if self._record_inventories:
            for inventory in found:
                self._record_inventory(inventory)
        return found

    def inventory_of(self, site: str) -> Inventory:
        """One site's inventory, asked of its provider (recorded by nobody)."""
        return self.require(site, Capability.INVENTORY).inventory()

    def record_inventory(self, inventory: Inventory, *, pin: str = "") -> int:
        """Record ``inventory`` as its site's latest (a run plans from it: ``pin`` = the run id, its
        rows kept until the run has planned); returns the snapshot id. Errors propagate."""
        return InventoryStore(self.facts).record(inventory, lambda vm: placement(vm, self.settings), pin=pin)

    def _record_inventory(self, inventory: Inventory) -> None:
        """The site's latest inventory on record, for the report and the metrics; a failed write is
        logged and never fails the discovery (a command does not depend on it)."""
        try:
            self.record_inventory(inventory)
        except (sqlite3.Error, FactStoreError) as exc:
            self.log.warning("inventory_record_failed", site=inventory.site, error=str(exc))

    def plan(
        self,
        inventories: Sequence[Inventory],
        now: datetime,
        *,
        selection: Sequence[str] = (),
        hosts: bool = True,
        guests: bool = True,
        groups: Sequence[str] = (),
        sites: Sequence[str] = (),
        window: str = "",
        override_windows: bool = False,
    ) -> Plan:
        """``make_plan`` with the fact store's duration history, the VMs' risks (latest vulnerability
        assessments) and the providers' capabilities (the ``plan`` command and the ``plan_run``
        activity plan with the same inputs)."""
        step_ids = [vm_step_id(vm.ref) for inv in inventories for vm in inv.vms]
        step_ids += [host_step_id(host.ref) for inv in inventories for host in inv.hosts]
        capabilities = {inv.site: self.provider(inv.site).capabilities for inv in inventories}
        return make_plan(
            inventories,
            windowless(self.settings) if override_windows else self.settings,
            now,
            history=self._history.history(step_ids) if self._history is not None else {},
            capabilities=capabilities,
            selection=selection,
            hosts=hosts,
            guests=guests,
            groups=groups,
            sites=sites,
            window="" if override_windows else window,
            risks=self._risks.risks() if self._risks is not None else {},
        )

    def close(self) -> None:
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            try:
                provider.close()
            except Exception as exc:  # noqa: BLE001 - closing must not mask the real outcome
                self.log.warning("provider_close_failed", error=str(exc))

    # ---------------------------------------------------------------- guests

    def guest_channel(self, vm: VmRef, info: VmInfo | None = None) -> GuestChannel:
        """The channel configured for ``vm`` (``[guests]`` default + ``[guests.overrides]``)."""
        access = self.settings.guests.access(vm.name, vm.site)
        if access.channel == "agent":
            return AgentChannel(self.require(vm.site, Capability.GUEST_EXEC), vm)
        if access.channel == "local":
            return LocalChannel(root=access.local_root, clock=self.clock)
        ip = info.ip_addresses[0] if info is not None and info.ip_addresses else ""
        return ssh_channel(access.ssh, name=vm.name, ip=ip, clock=self.clock)

    def host_channel(self, host: HostRef, address: str = "") -> GuestChannel:
        """SSH to a hypervisor host (``[hosts] patch = "ssh"``): ``[hosts] ssh`` with the host's
        ``[hosts.overrides."NAME"]`` applied; ``ssh.host`` with ``{ip}`` = the host's management address
        (``HostInfo.address``, else its name) and ``{name}``; an empty ``ssh.host`` means the address."""
        target = address or host.name
        ssh = self.settings.hosts.ssh_for(host.name, host.site)
        return ssh_channel(replace_host(ssh, "{ip}"), name=host.name, ip=target, clock=self.clock)

    def health_checks(self) -> tuple[HealthCheckSettings, ...]:
        return self.settings.health

    def health_target(self, vm: VmRef, info: VmInfo) -> HealthTarget:
        ip = info.ip_addresses[0] if info.ip_addresses else ""
        return HealthTarget(
            vm.name, ip=ip, tags=info.tags, site=vm.site, channel=lambda: self.guest_channel(vm, info)
        )


def placement(vm: VmInfo, settings: Settings) -> tuple[str, str]:
    """The (group, ring) the configuration gives ``vm`` (as the planner places it)."""
    group = group_of(vm, settings)
    return group.name, group.ring


def replace_host(ssh: SshSettings, default: str) -> SshSettings:
    return ssh if ssh.host else dataclasses.replace(ssh, host=default)


def ssh_channel(ssh: SshSettings, *, name: str, ip: str, clock: Clock) -> GuestChannel:
    from orchestrator.guests.ssh import SshChannel, SshTarget  # paramiko only when SSH is used

    host = (ssh.host or "{name}").replace("{ip}", ip).replace("{name}", name)
    target = SshTarget(
        host=host,
        port=ssh.port,
        user=ssh.user,
        key_file=ssh.key_file,
        password=ssh.password,
        known_hosts=ssh.known_hosts,
        trust_on_first_use=ssh.trust_on_first_use,
    )
    return SshChannel(target, clock=clock)
