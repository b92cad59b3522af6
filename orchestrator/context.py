"""The worker's context: everything an activity may use, passed explicitly (no ambient globals).

Settings, the fact store, the clock, the logger, and the providers — opened lazily, once per site
per context (one context per worker run), shared by the activity threads (adapters are
thread-safe by contract). Guest channels are built per VM from the settings.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import structlog

from orchestrator.config import HealthCheckSettings, ProviderSite, Settings, SshSettings
from orchestrator.facts import FactStore
from orchestrator.guests.channel import AgentChannel, GuestChannel, LocalChannel
from orchestrator.health import HealthTarget
from providers import open_provider
from providers.base import (
    SYSTEM_CLOCK,
    Capability,
    CapabilityMissing,
    Clock,
    HostRef,
    Provider,
    VmInfo,
    VmRef,
)

ProviderOpener = Callable[[ProviderSite], Provider]


def open_site(site: ProviderSite) -> Provider:
    """The default opener: ``providers.open_provider(kind, settings)``."""
    return open_provider(site.kind, site.settings)


class Context:
    def __init__(
        self,
        settings: Settings,
        facts: FactStore,
        *,
        clock: Clock = SYSTEM_CLOCK,
        log: Any = None,
        opener: ProviderOpener = open_site,
    ) -> None:
        self.settings = settings
        self.facts = facts
        self.clock = clock
        self.log = log if log is not None else structlog.get_logger("patchwave")
        self._opener = opener
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- providers

    def provider(self, site: str) -> Provider:
        """The site's provider, connected on first use (once per context)."""
        with self._lock:
            if site not in self._providers:
                self._providers[site] = self._opener(self.settings.provider(site))
                self.log.info("provider_opened", site=site, kind=self.settings.provider(site).kind)
            return self._providers[site]

    def require(self, site: str, capability: Capability) -> Any:
        provider = self.provider(site)
        if capability not in provider.capabilities:
            raise CapabilityMissing(
                f"provider for site {site!r} does not support {capability.value}", code="capability"
            )
        return provider

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
