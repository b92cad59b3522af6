"""The configuration: a TOML file validated into frozen :class:`Settings`.

``load_settings(path)`` reads the file, resolves secret references (``{ env = "X" }`` /
``{ file = "/path" }``), validates every table (provider tables through
``providers.parse_settings``) and returns :class:`Settings`. Every problem is a
:class:`~orchestrator.errors.ConfigError` naming the file, the dotted field and the fix.
The table-by-table validation lives in :mod:`orchestrator.config.loader`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.config.assess import AssessSettings, BaselineSettings
from orchestrator.config.autoupdates import AutoUpdateConfig
from orchestrator.config.backups import BackupSettings
from orchestrator.config.events import NOTIFY_EVENTS
from orchestrator.config.facts import FactsSettings
from orchestrator.model import RebootPolicy, UpdateMode
from orchestrator.windows import WindowSpec
from providers.settings import Secret

DEFAULT_STATE_DIR = "~/.local/state/patchwave"
DEFAULT_GROUP = "default"
DEFAULT_RING = "default"


@dataclass(frozen=True)
class StateSettings:
    dir: Path  # expanded, absolute; created 0700 by whoever first writes into it

    @property
    def facts_path(self) -> Path:
        return self.dir / "facts.db"

    @property
    def temporal_db(self) -> Path:
        return self.dir / "temporal.db"


@dataclass(frozen=True)
class TemporalSettings:
    mode: str = "embedded"  # embedded | external
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    retention_s: int = 30 * 86400
    binary: str = ""


@dataclass(frozen=True)
class LoggingSettings:
    format: str = "auto"  # auto | json | console
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class ProviderSite:
    """One ``[providers.<site>]`` table: the site name, its kind and the adapter's parsed settings."""

    site: str
    kind: str  # libvirt | vsphere | proxmox
    settings: Any  # what providers.parse_settings(kind, site, raw) returned (may hold Secrets)


@dataclass(frozen=True)
class MatchSpec:
    """Which VMs something applies to: any name glob, any tag, or the regex (``search`` on the name)."""

    names: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    regex: str = ""

    @property
    def empty(self) -> bool:
        return not (self.names or self.tags or self.regex)

    def matches(self, name: str, tags: tuple[str, ...] | frozenset[str], site: str = "") -> bool:
        """Names match ``name`` or ``site/name`` (fnmatch globs, case-sensitive)."""
        qualified = f"{site}/{name}" if site else name
        if any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(qualified, g) for g in self.names):
            return True
        if set(self.tags) & set(tags):
            return True
        return bool(self.regex) and re.search(self.regex, name) is not None


@dataclass(frozen=True)
class TargetSettings:
    include: MatchSpec = MatchSpec()  # names / tags / regex: a VM matching any of them is a target
    exclude: MatchSpec = MatchSpec(tags=("no-patch",))  # exclude_names / exclude_tags / exclude_regex

    @property
    def names(self) -> tuple[str, ...]:
        return self.include.names


@dataclass(frozen=True)
class FailureBudget:
    """``failure_budget = 1`` (count) or ``"10%"`` (of the VMs the plan patches, rounded down)."""

    count: int = 1
    percent: float | None = None

    def resolve(self, planned_vms: int) -> int:
        if self.percent is None:
            return self.count
        return int(planned_vms * self.percent / 100.0)


@dataclass(frozen=True)
class PolicySettings:
    concurrency: int = 2
    #: VMs taken ahead of a wave's concurrency slots: baseline health, safeguards and snapshot while
    #: earlier VMs patch (0 = none: each VM is prepared inside its slot)
    prepare_ahead: int = 0
    failure_budget: FailureBudget = FailureBudget()
    count_rolled_back: bool = True  # a rolled-back VM counts against the failure budget (run-wide)
    reboot: RebootPolicy = RebootPolicy.IF_REQUIRED
    snapshot_memory: bool = False
    snapshot_quiesce: bool = False
    snapshot_ttl_s: int = 72 * 3600
    updates: UpdateMode = UpdateMode.ALL
    pins: tuple[str, ...] = ()
    health_deadline_s: int = 300
    patch_timeout_s: int = 3600
    reboot_timeout_s: int = 300  # a guest not back (new boot id) by then is reverted
    default_vm_duration_s: int = 900
    require_health: bool = True  # run-wide ([policy] only): a VM no [[health]] check applies to is blocked
    health: str = "checks"  # [groups.policy] only: "checks" | "none" (this group may go unchecked)
    restart_services: str = (
        "none"  # none | needrestart (restart stale services instead of a non-kernel reboot)
    )
    backup: str = "never"  # never | critical | always: a full backup before the VM's snapshot
    promotion: str = "pinned"  # run-wide: later rings get what the first ring installed | "latest"


@dataclass(frozen=True)
class GroupSettings:
    name: str
    ring: str
    match: MatchSpec
    window: str = ""  # a [windows.X] name; "" = none
    policy: PolicySettings = PolicySettings()  # [policy] with this group's overrides applied
    baselines: tuple[str, ...] = ()  # [[baselines]] names, at most one per OS family


@dataclass(frozen=True)
class RingSettings:
    name: str
    soak_s: int = 0
    approval: bool = False
    wave_size: int = 0  # 0 = the whole ring is one wave


@dataclass(frozen=True)
class ScheduleSettings:
    """A ``[[schedules]]`` table: one rollout (one ``PatchRun``) at each opening of ``window``.

    ``groups`` and ``sites`` are resolved: the ``[[groups]]`` it covers in configured order (those
    it names plus every group of the rings it names; all when it names neither) and the sites it
    covers (all when it names none). ``derived``: made from a group's window because the file has
    no ``[[schedules]]`` (see :func:`orchestrator.config.schedules.derived_schedules`).
    """

    name: str
    window: str
    groups: tuple[str, ...]
    sites: tuple[str, ...]
    derived: bool = False


@dataclass(frozen=True)
class SshSettings:
    """SSH access (hosts or guests). ``host`` may contain ``{ip}`` and ``{name}``."""

    user: str = "root"
    port: int = 22
    host: str = "{ip}"
    key_file: Path | None = None
    known_hosts: Path | None = None
    trust_on_first_use: bool = False
    password: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HostOverride:
    name: str  # host name (exact) or "site/name"
    ssh: tuple[tuple[str, Any], ...] = ()  # validated (SshSettings field, value) pairs to replace


@dataclass(frozen=True)
class HostSettings:
    enabled: bool = True
    scope: str = "targets"  # targets (hosts running a targeted VM) | all (every host of every site)
    patch: str = "platform"  # platform | ssh | none
    reboot: RebootPolicy = RebootPolicy.IF_REQUIRED
    evacuate: bool = True
    depot_urls: tuple[str, ...] = ()
    default_duration_s: int = 1800  # prediction for a host when there is no history
    window: str = ""  # [windows.X] the host phase waits for; "" = its guests' window; "none" = no window
    ssh: SshSettings = SshSettings(host="")
    overrides: tuple[HostOverride, ...] = ()  # [hosts.overrides."NAME"]: per-host SSH settings

    def ssh_for(self, name: str, site: str = "") -> SshSettings:
        """The SSH settings for host ``name`` (``site/name`` overrides win over ``name``)."""
        ssh = self.ssh
        for key in (name, f"{site}/{name}" if site else None):
            for override in self.overrides:
                if key is not None and override.name == key:
                    ssh = replace(ssh, **dict(override.ssh))
        return ssh


@dataclass(frozen=True)
class GuestAccess:
    """How to reach one guest: the channel and (for ``ssh``) the SSH settings."""

    channel: str  # agent | ssh | local
    ssh: SshSettings
    local_root: Path | None = None  # channel "local": chroot(8) into this directory (None = this machine)


@dataclass(frozen=True)
class GuestOverride:
    name: str  # VM name (exact) or "site/name"
    channel: str = ""  # "" = keep the default
    local_root: Path | None = None  # None = keep the default
    ssh: tuple[tuple[str, Any], ...] = ()  # validated (SshSettings field, value) pairs to replace


@dataclass(frozen=True)
class GuestSettings:
    channel: str = "agent"  # agent | ssh | local
    ssh: SshSettings = SshSettings()
    overrides: tuple[GuestOverride, ...] = ()
    overrides_file: Path | None = None  # extra [overrides."NAME"] tables (e.g. written by `lab up`)
    local_root: Path | None = None  # local channel: chroot into this directory (None = this machine)

    def access(self, name: str, site: str = "") -> GuestAccess:
        """The channel and SSH settings for VM ``name`` (``site/name`` overrides win over ``name``)."""
        channel, ssh, local_root = self.channel, self.ssh, self.local_root
        for key in (name, f"{site}/{name}" if site else None):
            for override in self.overrides:
                if key is not None and override.name == key:
                    channel = override.channel or channel
                    ssh = replace(ssh, **dict(override.ssh))
                    local_root = override.local_root or local_root
        return GuestAccess(channel=channel, ssh=ssh, local_root=local_root)


@dataclass(frozen=True)
class HealthCheckSettings:
    name: str
    kind: str  # command | http | tcp | systemd
    command: str = ""  # command: through the VM's guest channel; exit 0 = healthy
    url: str = ""  # http: from the orchestrator host; {ip} and {name} are templated
    address: str = ""  # tcp: "host:port"; {ip} and {name} are templated
    unit: str = ""  # systemd: unit name, checked through the guest channel
    expect_status: int = 200  # http
    timeout_s: float = 5.0
    retries: int = 3
    interval_s: float = 2.0
    match: MatchSpec = MatchSpec()  # empty = every VM

    def applies_to(self, name: str, tags: tuple[str, ...] | frozenset[str], site: str = "") -> bool:
        """The one rule of which VMs a check applies to: an empty ``match`` means every VM."""
        return self.match.empty or self.match.matches(name, tags, site)


@dataclass(frozen=True)
class NotifyRoute:
    """Apprise URLs (secrets: never logged, never in a payload) and the events sent to them."""

    urls: tuple[Secret, ...] = field(default=(), repr=False)
    events: tuple[str, ...] = NOTIFY_EVENTS


@dataclass(frozen=True)
class MessageTemplate:
    """A ``[notifications.templates.<event>]`` override (``string.Template`` text, ``$field``)."""

    event: str
    title: str = ""  # "" = the built-in title
    body: str = ""  # "" = the built-in body


@dataclass(frozen=True)
class NotificationSettings:
    routes: tuple[NotifyRoute, ...] = ()  # [notifications] urls/events, then each [[notifications.routes]]
    prenotice_s: int = 0  # window_prenotice this long before a window opens (0 = no pre-notice)
    owner_label: str = "owner"  # VM label (or tag "<label>:NAME") naming the owner -> "@NAME"
    templates: tuple[MessageTemplate, ...] = ()
    timeout_s: int = 10  # per delivery

    @property
    def enabled(self) -> bool:
        return any(route.urls for route in self.routes)

    def template(self, event: str) -> MessageTemplate | None:
        return next((t for t in self.templates if t.event == event), None)


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: the Prometheus endpoint of ``patchwave serve`` (off while ``port`` is 0)."""

    address: str = "127.0.0.1"  # an IP address literal; loopback unless the operator says otherwise
    port: int = 0  # 0 = no endpoint
    cache_s: float = 15.0  # scrapes within this long of a fact-store read are answered from it

    @property
    def enabled(self) -> bool:
        return self.port > 0


@dataclass(frozen=True)
class ComplianceSettings:
    """``[compliance]``: when a machine counts as non-compliant (report, metrics; see README)."""

    grace_s: int = 30 * 86400  # security updates may stay pending this long after the last patch


@dataclass(frozen=True)
class Settings:
    file: Path
    state: StateSettings
    temporal: TemporalSettings
    logging: LoggingSettings
    providers: tuple[ProviderSite, ...]  # sorted by site
    targets: TargetSettings
    groups: tuple[GroupSettings, ...]  # configured order; the implicit "default" group is last
    rings: tuple[RingSettings, ...]  # in [rings].order
    windows: tuple[WindowSpec, ...]  # sorted by name
    policy: PolicySettings
    hosts: HostSettings
    guests: GuestSettings
    health: tuple[HealthCheckSettings, ...]
    digest: str  # sha256 of the normalised config without secret values (and without [logging])
    secrets: tuple[Secret, ...] = field(default=(), repr=False, compare=False)  # for log redaction
    notifications: NotificationSettings = NotificationSettings()  # not part of the digest
    metrics: MetricsSettings = MetricsSettings()  # not part of the digest
    compliance: ComplianceSettings = ComplianceSettings()  # not part of the digest
    schedules: tuple[ScheduleSettings, ...] = ()  # sorted by name; not part of the digest (see README)
    autoupdates: AutoUpdateConfig = field(
        default_factory=AutoUpdateConfig
    )  # [autoupdates]; not in the digest
    assess: AssessSettings = field(default_factory=AssessSettings)  # not part of the digest
    baselines: tuple[BaselineSettings, ...] = ()  # part of the digest (what a run may install)
    backup: BackupSettings = field(default_factory=BackupSettings)  # [backup]; part of the digest
    facts: FactsSettings = field(
        default_factory=FactsSettings
    )  # [facts]: where the fact store lives; not in the digest

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(p.site for p in self.providers)

    @property
    def ring_order(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rings)

    def provider(self, site: str) -> ProviderSite:
        for p in self.providers:
            if p.site == site:
                return p
        raise KeyError(site)

    def ring(self, name: str) -> RingSettings:
        for r in self.rings:
            if r.name == name:
                return r
        raise KeyError(name)

    def window(self, name: str) -> WindowSpec:
        for w in self.windows:
            if w.name == name:
                return w
        raise KeyError(name)

    def group(self, name: str) -> GroupSettings:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def schedule(self, name: str) -> ScheduleSettings:
        for s in self.schedules:
            if s.name == name:
                return s
        raise KeyError(name)

    def baseline_for(self, group: str, family: str) -> BaselineSettings | None:
        """The baseline ``group`` picked for OS family ``family`` (None: the group's [policy] applies)."""
        picked = self.group(group).baselines
        return next((b for b in self.baselines if b.name in picked and b.os == family), None)
