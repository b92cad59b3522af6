"""A small fleet's history in a real fact store, for the compliance report tests.

Everything is written through the public FactStore API with the real value types (plans, outcomes,
the guest layer's Assessment), as the activities write it. Times come from a fixed clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.facts import FactStore
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages import PendingUpdate
from orchestrator.guests.patcher import Assessment
from orchestrator.model import Plan, StepStatus, VmOutcome, VmPolicy, VmStep, Wave
from providers.base import VmRef

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEBIAN = OsInfo(id="debian", version_id="12", family="debian", pretty_name="Debian GNU/Linux 12 (bookworm)")
ROCKY = OsInfo(id="rocky", version_id="9.4", family="rhel", pretty_name="Rocky Linux 9.4 (Blue Onyx)")


class FixedClock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return self.moment.timestamp()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("the fact store never sleeps")


def vm(name: str, site: str = "dc1") -> VmRef:
    return VmRef(site, f"uuid-{name}", name)


def step(ref: VmRef, group: str, ring: str = "main") -> VmStep:
    return VmStep(step_id=f"vm:{ref.site}:{ref.id}", vm=ref, group=group, ring=ring, policy=VmPolicy(),
                  est_duration_s=600, est_rollback_s=600, channel="ssh")  # fmt: skip


def plan(plan_id: str, steps: list[VmStep]) -> Plan:
    wave = Wave(wave_id="main:0", ring="main", index=0, vms=tuple(steps), concurrency=2)
    return Plan(plan_id=plan_id, created_at="2026-11-20T20:00:00+00:00", sites=("dc1",), host_phase=(),
                waves=(wave,), blocked=(), failure_budget=1)  # fmt: skip


def update(name: str, *, security: bool = False, severity: str = "", cves: tuple[str, ...] = ()) -> PendingUpdate:
    return PendingUpdate(name=name, current="1.0", candidate="1.1", security=security, severity=severity, cves=cves)


WEB1, WEB2, DB1, CANARY1 = vm("web-1"), vm("web-2"), vm("db-1"), vm("canary-1")
LEGACY = vm("legacy-<b>1</b>", site="dc2")  # a name that must be escaped in HTML


@dataclass(frozen=True)
class Fleet:
    store: FactStore
    now: datetime = NOW


def populate(path: Path) -> Fleet:
    """Two runs over four VMs, assessments, and snapshots in every state; one VM only has a snapshot."""
    clock = FixedClock(datetime(2026, 11, 20, 20, 0, tzinfo=UTC))
    store = FactStore(path, clock=clock)
    steps = [step(WEB1, "web"), step(WEB2, "web"), step(DB1, "databases"), step(CANARY1, "canary", "canary")]
    store.create_run("run-1", plan=plan("p1", steps), config_digest="d", requested_by="test")
    _outcome(store, "run-1", WEB1, StepStatus.SUCCEEDED, "2026-11-20T21:00:00+00:00", "2026-11-20T21:20:00+00:00")
    _outcome(store, "run-1", WEB2, StepStatus.ROLLED_BACK, "2026-11-20T21:10:00+00:00", "2026-11-20T21:40:00+00:00",
             error="unhealthy after patching: web: HTTP 503")  # fmt: skip
    _outcome(store, "run-1", DB1, StepStatus.SUCCEEDED, "2026-11-20T21:00:00+00:00", "2026-11-20T21:30:00+00:00")
    _outcome(store, "run-1", CANARY1, StepStatus.SUCCEEDED, "2026-11-20T20:10:00+00:00", "2026-11-20T20:20:00+00:00")
    web2_pending = Assessment(os=ROCKY, kernel="5.14.0-427.el9.x86_64", reboot_required=False, updates=(
        update("openssl", security=True, severity="Critical", cves=("CVE-2026-0001", "CVE-2026-0002")),
        update("kernel", security=True, severity="Important", cves=("CVE-2026-0002",)),
        update("glibc", security=True, severity="Important", cves=("CVE-2026-0003",)),
        update("curl", security=True, severity="Moderate"),
        update("tzdata"),
    ))  # fmt: skip
    store.record_assessment("run-1", steps[1].step_id, WEB2, web2_pending, phase="before",
                            taken_at="2026-11-20T21:12:00+00:00")  # fmt: skip
    db_after = Assessment(os=DEBIAN, kernel="6.1.0-27-amd64", reboot_required=True,
                          updates=(update("vim"), update("less")))  # fmt: skip
    store.record_assessment("run-1", steps[2].step_id, DB1, db_after, phase="after",
                            taken_at="2026-11-20T21:25:00+00:00")  # fmt: skip
    for ref, name in ((WEB2, "pw-web-2"), (DB1, "pw-db-1")):
        store.register_snapshot_intent("run-1", f"vm:{ref.site}:{ref.id}", ref, name)
        store.register_snapshot_created("run-1", f"vm:{ref.site}:{ref.id}", f"snap-{ref.name}")
    store.mark_snapshot("run-1", steps[1].step_id, "reverted")
    store.mark_snapshot("run-1", steps[2].step_id, "deleted")

    clock.moment = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    store.create_run("run-2", plan=plan("p2", [steps[0], steps[3]]), config_digest="d", requested_by="schedule")
    _outcome(store, "run-2", WEB1, StepStatus.SUCCEEDED, "2026-11-25T21:00:00+00:00", "2026-11-25T21:15:00+00:00")
    _outcome(store, "run-2", CANARY1, StepStatus.FAILED, "2026-11-25T21:00:00+00:00", "2026-11-25T21:05:00+00:00",
             error="snapshot failed: datastore full")  # fmt: skip
    clean = Assessment(os=DEBIAN, kernel="6.1.0-28-amd64", reboot_required=False, updates=())
    store.record_assessment("run-2", steps[0].step_id, WEB1, clean, phase="after")
    store.record_assessment("run-2", steps[3].step_id, CANARY1, clean, phase="before")
    store.register_snapshot_intent("run-2", steps[0].step_id, WEB1, "pw-web-1")
    store.register_snapshot_created("run-2", steps[0].step_id, "snap-web-1")
    store.mark_snapshot("run-2", steps[0].step_id, "kept")
    store.register_snapshot_intent("run-old", "vm:dc2:uuid-legacy", LEGACY, "pw-legacy")  # never finished
    clock.moment = NOW
    return Fleet(store)


def _outcome(store: FactStore, run: str, ref: VmRef, status: StepStatus, started: str, finished: str,
             error: str = "") -> None:  # fmt: skip
    store.set_outcome(run, VmOutcome(step_id=f"vm:{ref.site}:{ref.id}", vm=ref, status=status, error=error,
                                     started_at=started, finished_at=finished))  # fmt: skip
