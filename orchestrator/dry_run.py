"""``patchwave run --dry-run``: what a run would do, found out without changing anything.

A dry run is not a run: it never starts the Temporal server, PatchRun, a worker or a notification,
and writes nothing to the fact store, the guests or the platforms. In this process it

1. discovers every site and plans exactly like ``patchwave plan`` (the duration history is read
   from an existing fact store opened read-only — :mod:`orchestrator.facts.reader` — and none is
   created: a first dry run plans with the default durations);
2. asks each planned VM's guest channel, read-only, what it has pending (as ``patchwave assess``
   reads guests, :mod:`orchestrator.assessment.guest`): the package manager lists
   updates from the metadata the guest already has (apt without ``apt-get update``, dnf ``-C``,
   zypper ``--no-refresh``). A guest that could only answer after refreshing its metadata is
   "not assessed (would refresh metadata)"; one whose channel fails is "not assessed: <reason>".
   An SSH guest configured to trust its host key on first use is asked with that trust off: a dry
   run records no host key;
3. lists the snapshots the run's final cleanup would delete (expired ones on the planned sites).

A real run refreshes the package lists before it assesses, so it may find more than listed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.assessment.guest import readonly_patcher
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.errors import FactStoreError
from orchestrator.facts.reader import FactReader, open_reader
from orchestrator.facts.records import SnapshotRecord
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.guests.patcher import pin_target
from orchestrator.model import Plan, UpdateMode, VmStep
from orchestrator.vulns.risk import VmRisk
from providers.base import VmInfo, VmRef
from providers.timing import SYSTEM_CLOCK, Clock

#: Guests asked at the same time.
PARALLEL = 8
NOT_CACHED = "not assessed (would refresh metadata)"


@dataclass(frozen=True)
class VmPreview:
    """One planned VM: what it has pending (read-only), or why that could not be found out."""

    step: VmStep
    assessed: bool
    os: str = ""  # "Debian GNU/Linux 12 (bookworm)"
    manager: str = ""  # apt | dnf | zypper
    updates: tuple[PendingUpdate, ...] = ()  # everything pending
    selected: tuple[PendingUpdate, ...] = ()  # what the VM's update policy would apply of it
    note: str = ""  # "not assessed: ..." when not assessed


@dataclass(frozen=True)
class DryRun:
    """What ``patchwave run`` would do now, and what the guests have pending."""

    plan: Plan
    vms: tuple[VmPreview, ...]
    expired_snapshots: tuple[SnapshotRecord, ...]  # the run's cleanup would delete these
    notes: tuple[str, ...] = ()


class _History:
    """The duration history and the risks :meth:`Context.plan` asks for: from the fact store opened
    read-only, none without one; a store that cannot be read gives none too (noted) — it does not
    stop a dry run."""

    def __init__(self, reader: FactReader | None, notes: list[str]) -> None:
        self.reader = reader
        self.notes = notes

    def history(self, step_ids: Sequence[str], limit: int = 10) -> dict[str, list[float]]:
        if self.reader is None:
            return {}
        try:
            return self.reader.history(step_ids, limit)
        except FactStoreError as exc:
            self.notes.append(f"duration history not read: {exc}")
            return {}

    def risks(self) -> dict[str, VmRisk]:
        """The VMs' risks (the ring order), as ``plan`` reads them; none without a readable store."""
        if self.reader is None:
            return {}
        try:
            return self.reader.risks()
        except FactStoreError as exc:
            self.notes.append(f"vulnerability assessments not read: {exc}")
            return {}


def describe_run(
    settings: Settings,
    *,
    selection: tuple[str, ...] = (),
    hosts: bool = True,
    guests: bool = True,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> DryRun:
    """Plan, assess the planned VMs read-only and list the snapshots a cleanup would delete."""
    now = now or datetime.now(UTC)
    reader, notes = _history(settings)
    # No fact store: the context plans with the read-only duration history and records nothing.
    source = _History(reader, notes)
    ctx = Context(settings, None, history=source, risks=source, clock=clock, record_inventory=False)
    try:
        inventories = ctx.discover()
        plan = ctx.plan(inventories, now, selection=selection, hosts=hosts, guests=guests)
        infos = {vm.ref: vm for inv in inventories for vm in inv.vms}
        vms = assess_vms(ctx, plan.vm_steps, infos)
        expired = _expired(reader, plan, now, notes)
    finally:
        ctx.close()
        if reader is not None:
            reader.close()
    return DryRun(plan=plan, vms=vms, expired_snapshots=expired, notes=tuple(notes))


def assess_vms(ctx: Context, steps: Sequence[VmStep], infos: dict[VmRef, VmInfo]) -> tuple[VmPreview, ...]:
    """:func:`assess_vm` for every step, a few guests at a time, in plan order."""
    if not steps:
        return ()
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(steps)), thread_name_prefix="dry-run") as pool:
        return tuple(pool.map(lambda step: assess_vm(ctx, step, infos.get(step.vm)), steps))


def assess_vm(ctx: Context, step: VmStep, info: VmInfo | None) -> VmPreview:
    """The VM's pending updates through its guest channel, read-only; a failure is a note, never raised."""
    channel: GuestChannel | None = None
    try:
        channel = without_first_use(ctx.guest_channel(step.vm, info), ctx.clock)
        patcher = readonly_patcher(channel, ctx.clock)
        updates, manager = patcher.pending_updates(), patcher.package_manager.name
        return VmPreview(
            step,
            assessed=True,
            os=patcher.os_info().pretty_name or patcher.os_info().id,
            manager=manager,
            updates=updates,
            selected=selected_updates(step, manager, updates),
        )
    except PackageManagerError as exc:
        note = NOT_CACHED if exc.code == "metadata_not_cached" else f"not assessed: {exc}"
        return VmPreview(step, assessed=False, note=note)
    except Exception as exc:  # noqa: BLE001 - one guest's failure is shown for that guest, never raised
        ctx.log.warning("dry_run_assessment_failed", vm=str(step.vm), error=str(exc))
        return VmPreview(step, assessed=False, note=f"not assessed: {exc or type(exc).__name__}")
    finally:
        if channel is not None:
            channel.close()


def selected_updates(
    step: VmStep, manager: str, updates: Sequence[PendingUpdate]
) -> tuple[PendingUpdate, ...]:
    """What of ``updates`` the step's policy applies: all, the security ones, or the pinned packages."""
    policy = step.policy
    if policy.update_mode is UpdateMode.SECURITY:
        return tuple(u for u in updates if u.security)
    if policy.update_mode is UpdateMode.PINNED:
        names = set()
        for pin in policy.pins:
            try:
                names.add(pin_target(manager, pin)[0])
            except PackageManagerError:
                continue  # the run refuses such a pin (invalid_selection); nothing of it is applied
        return tuple(u for u in updates if u.name in names)
    return tuple(updates)


def without_first_use(channel: GuestChannel, clock: Clock) -> GuestChannel:
    """``channel``, except that an SSH channel trusting on first use rejects an unknown host key
    instead of recording it (a dry run writes no known_hosts entry)."""
    if channel.name != "ssh":
        return channel
    from orchestrator.guests.ssh import SshChannel

    if not isinstance(channel, SshChannel) or not channel.target.trust_on_first_use:
        return channel
    return SshChannel(dataclasses.replace(channel.target, trust_on_first_use=False), clock=clock)


def _history(settings: Settings) -> tuple[FactReader | None, list[str]]:
    if settings.facts.url:  # the read-only reader opens SQLite files only
        return None, [
            "duration history not read from a PostgreSQL fact store: estimates use the default durations"
        ]
    path = settings.state.facts_path
    try:
        reader = open_reader(path)
    except FactStoreError as exc:
        return None, [f"duration history not read: {exc}"]
    if reader is None:
        return None, [f"no fact store at {path} yet: estimates use the default durations"]
    return reader, []


def _expired(
    reader: FactReader | None, plan: Plan, now: datetime, notes: list[str]
) -> tuple[SnapshotRecord, ...]:
    if reader is None:
        return ()
    try:
        found = reader.expired_snapshots(now)
    except FactStoreError as exc:
        notes.append(f"expired snapshots not listed: {exc}")
        return ()
    return tuple(s for s in found if s.vm.site in plan.sites and s.snapshot_id)
