"""Leases in the activities: a run's admission, renewal and release (:mod:`orchestrator.facts.leases`).

* :func:`admit` — ``plan_run``: the run takes the leases of every planned VM and patched host
  before its first side effect. An ad-hoc run that finds one held is refused
  (:class:`~orchestrator.errors.LeaseHeld`, exit 2, nothing recorded). A *scheduled* run does not
  wait and is not refused as a whole: the targets another run or operation holds are planned as
  blocked (code ``lease_held``, the holder named), the rest runs — its window is not lost for the
  VMs nobody else works on.
* :func:`readmit` — ``run_setup`` of a resumed run: the run takes its own leases again (re-entrant)
  for the steps without a final outcome; someone else's lease refuses the resume.
* :class:`LeaseActivities` — ``renew_leases`` (the workflows' lease keeper calls it every third of
  the TTL) and ``release_leases`` (a rollback's end).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from temporalio import activity

from orchestrator.context import Context
from orchestrator.engine.activities.translation import translated
from orchestrator.engine.names import ActivityName
from orchestrator.engine.payloads import LeaseRenewal
from orchestrator.errors import LeaseHeld
from orchestrator.facts.leases import LEASE_TTL_S, Lease, LeaseTarget, plan_targets
from orchestrator.facts.store import FactStore
from orchestrator.model import Blocker, Plan, RunRequest
from orchestrator.planning.timeline import plan_id_of

#: A scheduled run re-plans around leases taken between its look and its acquisition this often.
ADMISSION_ATTEMPTS = 3


class LeaseActivities:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def all(self) -> list[Callable[..., Any]]:
        return [self.renew_leases, self.release_leases]

    @activity.defn(name=ActivityName.RENEW_LEASES)
    @translated
    def renew_leases(self, owner: str) -> LeaseRenewal:
        held = self.ctx.facts.renew_leases(owner)
        return LeaseRenewal(held=held, next_s=LEASE_TTL_S / 3)

    @activity.defn(name=ActivityName.RELEASE_LEASES)
    @translated
    def release_leases(self, owner: str) -> int:
        released = self.ctx.facts.release_leases(owner)
        self.ctx.log.info("leases_released", owner=owner, released=released)
        return released


def workflow_id() -> str:
    """The id of the workflow whose activity runs now ("" when called outside an activity): the
    owner of the leases it takes (a PatchRun's id is its run id)."""
    return (activity.info().workflow_id or "") if activity.in_activity() else ""


def operation_of(request: RunRequest) -> str:
    return "schedule" if request.requested_by.startswith("schedule:") else "run"


def admit(facts: FactStore, request: RunRequest, plan: Plan) -> Plan:
    """Take the leases of ``plan`` for the run; the plan the run will follow (see the module doc)."""
    operation = operation_of(request)
    for attempt in range(ADMISSION_ATTEMPTS):
        if operation == "schedule":
            held = [lease for lease in facts.leases_on(plan_targets(plan)) if lease.owner != request.run_id]
            plan = without(plan, held) if held else plan
        try:
            facts.acquire_leases(request.run_id, plan_targets(plan), operation=operation)
            return plan
        except LeaseHeld:
            if operation != "schedule" or attempt + 1 == ADMISSION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def readmit(facts: FactStore, request: RunRequest, plan: Plan, done: Sequence[str]) -> None:
    """A resumed run takes its own leases again for the steps without a final outcome."""
    facts.acquire_leases(request.run_id, plan_targets(plan, done=done), operation=operation_of(request))


def without(plan: Plan, held: Sequence[Lease]) -> Plan:
    """``plan`` minus the targets of ``held``, each planned as blocked naming its holder."""
    by_key = {lease.target.key: lease for lease in held}
    blocked = list(plan.blocked)

    def keep(target: LeaseTarget, label: str) -> bool:
        lease = by_key.get(target.key)
        if lease is None:
            return True
        kind = "run" if lease.operation in ("run", "schedule") else lease.operation
        why = f"{kind} {lease.owner} is active on it (held since {lease.acquired_at[:19]}); left to it"
        blocked.append(Blocker(label, why, "lease_held"))
        return False

    waves = tuple(
        replace(w, vms=kept) for w in plan.waves
        if (kept := tuple(s for s in w.vms if keep(LeaseTarget.vm(s.vm), str(s.vm))))
    )  # fmt: skip
    domains = tuple(
        replace(d, hosts=hosts) for d in plan.host_phase
        if (hosts := tuple(h for h in d.hosts if h.patch == "none" or keep(LeaseTarget.host(h.host), str(h.host))))
    )  # fmt: skip
    order = sorted(blocked, key=lambda b: (b.target, b.code, b.reason))
    narrowed = replace(plan, waves=waves, host_phase=domains, blocked=tuple(order))
    return replace(narrowed, plan_id=plan_id_of(narrowed))
