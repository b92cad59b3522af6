"""Assessing many VMs: the CLI's path and the steps of ``serve``'s fleet rounds. Both call
:func:`~orchestrator.assessment.vm.assess_vm` for each VM and record a *round*
(:class:`~orchestrator.facts.vuln_rounds.RoundStore`).

* CLI (:func:`assess_fleet`): discover, select (``[targets]`` or ``--vm`` names), then a bounded
  thread pool (``[assess] parallel`` guests at a time) in this process. Meant for a selection or a
  fleet of hundreds; larger fleets are assessed by ``serve``.
* Engine (:func:`record_site_targets`, :func:`assess_slice`): per site, the round's targets are
  discovered and written once, in order; then batches of at most 500 take slices of them *by
  position* — the workflow passes (round, site, start, count) and gets counts back, so neither its
  payloads nor its history grow with the fleet. A retried batch skips the targets already marked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.assessment.vm import VmResult, assess_vm
from orchestrator.context import Context
from orchestrator.facts.vuln_rounds import RoundStore, RoundTarget
from orchestrator.planning.selection import select_targets
from providers.base import PowerState, VmInfo


@dataclass(frozen=True)
class FleetAssessment:
    round_id: str
    results: tuple[VmResult, ...]  # in (site, name) order
    notes: tuple[str, ...] = ()  # e.g. explicitly selected but excluded VMs

    @property
    def assessed(self) -> tuple[VmResult, ...]:
        return tuple(r for r in self.results if r.assessed)


@dataclass(frozen=True)
class SliceCounts:
    assessed: int = 0
    failed: int = 0
    skipped: int = 0  # marked by an earlier attempt of the same batch


def new_round_id(now: datetime, prefix: str = "assess") -> str:
    """``assess-20261204T173000Z-1f2e`` (sortable by time, unique per process and moment)."""
    return f"{prefix}-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def assess_fleet(ctx: Context, *, selection: Sequence[str] = (), refresh: bool = False, round_id: str = "",
                 requested_by: str = "", on_result: Callable[[VmResult], None] | None = None) -> FleetAssessment:  # fmt: skip
    """Assess the selected (else ``[targets]``) VMs of every site in this process; record the round."""
    now = ctx.clock.now()
    round_id = round_id or new_round_id(now)
    rounds = RoundStore(ctx.facts)
    rounds.start(round_id, requested_by=requested_by)
    inventories = ctx.discover()
    chosen = select_targets(inventories, ctx.settings, selection)
    notes = tuple(f"{b.target}: {b.reason}" for b in chosen.blocked)
    targets: list[tuple[RoundTarget, VmInfo]] = []
    for site in sorted({vm.ref.site for vm in chosen.vms}):
        vms = [vm for vm in chosen.vms if vm.ref.site == site]
        rounds.add_targets(round_id, site, [(vm.ref, _address(vm)) for vm in vms])
        targets += [(t, vm) for t, vm in zip(rounds.targets(round_id, site, 0, len(vms)), vms, strict=True)]

    def one(target: RoundTarget, info: VmInfo) -> VmResult:
        result = _assess_target(ctx, rounds, round_id, target, info, refresh)
        if on_result is not None:
            on_result(result)
        return result

    workers = max(1, min(ctx.settings.assess.parallel, len(targets)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assess") as pool:
        results = tuple(pool.map(lambda pair: one(*pair), targets))
    rounds.finish(round_id)
    return FleetAssessment(round_id, results, notes)


def record_site_targets(ctx: Context, round_id: str, site: str) -> int:
    """The round's targets on ``site`` (``[targets]``), discovered and written once: a second call
    (a retried activity, a continued workflow) finds them on record and does not discover again.
    VMs that are not running are marked at once ("not assessed: the VM is stopped")."""
    rounds = RoundStore(ctx.facts)
    have = rounds.counts(round_id, site)
    if have:
        return sum(have.values())
    chosen = select_targets(ctx.discover([site]), ctx.settings, ())
    count = rounds.add_targets(round_id, site, [(vm.ref, _address(vm)) for vm in chosen.vms])
    for target, vm in zip(rounds.targets(round_id, site, 0, count), chosen.vms, strict=True):
        if vm.power is not PowerState.RUNNING:
            rounds.mark(round_id, target, "failed", note=f"not assessed: the VM is {vm.power.value}")
    return count


def assess_slice(ctx: Context, round_id: str, site: str, start: int, count: int, *,
                 refresh: bool = False) -> SliceCounts:  # fmt: skip
    """Assess the round's targets ``start .. start+count`` on ``site`` that are not marked yet."""
    rounds = RoundStore(ctx.facts)
    targets = rounds.targets(round_id, site, start, count)
    todo = [t for t in targets if t.state == "pending"]

    def one(target: RoundTarget) -> VmResult:
        info = VmInfo(
            ref=target.vm, power=PowerState.RUNNING, ip_addresses=(target.address,) if target.address else ()
        )
        return _assess_target(ctx, rounds, round_id, target, info, refresh)

    if not todo:
        return SliceCounts(skipped=len(targets))
    workers = max(1, min(ctx.settings.assess.parallel, len(todo)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assess") as pool:
        results = list(pool.map(one, todo))
    assessed = sum(r.assessed for r in results)
    return SliceCounts(assessed, len(results) - assessed, len(targets) - len(todo))


def _assess_target(ctx: Context, rounds: RoundStore, round_id: str, target: RoundTarget, info: VmInfo,
                   refresh: bool) -> VmResult:  # fmt: skip
    if info.power is not PowerState.RUNNING:
        result = VmResult(target.vm, False, f"not assessed: the VM is {info.power.value}")
    else:
        result = assess_vm(ctx, target.vm, info, round_id=round_id, refresh=refresh)
    state = "assessed" if result.assessed else "failed"
    rounds.mark(round_id, target, state, note=result.note, assessment_id=result.assessment_id or None)
    return result


def _address(vm: VmInfo) -> str:
    return vm.ip_addresses[0] if vm.ip_addresses else ""
