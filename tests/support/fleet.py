"""A small fleet's history in a real fact store, for the compliance report and metrics tests.

Everything is written through the public FactStore API (and the inventory store's) with the real value
types (plans, outcomes, the guest layer's Assessment, the providers' inventory), as the activities
write it. Times come from the tests' fake clock, set by hand.

* :func:`populate` — two runs over four VMs, assessments, snapshots in every state (no inventory).
* :func:`populate_fleet` — that, plus what a fleet-wide report needs: both sites' inventories (hosts,
  a never-assessed VM), host outcomes and maintenance records, an older run and a later one, the
  assessment history of the last weeks and the step journal of run-1 and run-3 (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import Detail
from orchestrator.facts.engines.postgres import PostgresTarget
from orchestrator.facts.inventory import InventoryStore
from orchestrator.facts.store import FactStore
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.guests.patcher import Assessment
from orchestrator.model import HostOutcome, Plan, StepStatus, VmOutcome, VmPolicy, VmStep, Wave, vm_step_id
from providers.base import HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEBIAN = OsInfo(id="debian", version_id="12", family="debian", pretty_name="Debian GNU/Linux 12 (bookworm)")
ROCKY = OsInfo(id="rocky", version_id="9.4", family="rhel", pretty_name="Rocky Linux 9.4 (Blue Onyx)")


def vm(name: str, site: str = "dc1") -> VmRef:
    return VmRef(site, f"uuid-{name}", name)


def step(ref: VmRef, group: str, ring: str = "main") -> VmStep:
    return VmStep(step_id=vm_step_id(ref), vm=ref, group=group, ring=ring, policy=VmPolicy(),
                  est_duration_s=600, est_rollback_s=600, channel="ssh")  # fmt: skip


def plan(plan_id: str, steps: list[VmStep]) -> Plan:
    wave = Wave(wave_id="main:0", ring="main", index=0, vms=tuple(steps), concurrency=2)
    return Plan(plan_id=plan_id, created_at="2026-11-20T20:00:00+00:00", sites=("dc1",), host_phase=(),
                waves=(wave,), blocked=(), failure_budget=1)  # fmt: skip


def update(
    name: str, *, security: bool = False, severity: str = "", cves: tuple[str, ...] = ()
) -> PendingUpdate:
    return PendingUpdate(
        name=name, current="1.0", candidate="1.1", security=security, severity=severity, cves=cves
    )


WEB1, WEB2, DB1, CANARY1 = vm("web-1"), vm("web-2"), vm("db-1"), vm("canary-1")
LEGACY = vm("legacy-<b>1</b>", site="dc2")  # a name that must be escaped in HTML


@dataclass(frozen=True)
class Fleet:
    store: FactStore
    now: datetime = NOW
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))


def populate(path: Path | PostgresTarget) -> Fleet:
    """Two runs over four VMs, assessments, and snapshots in every state; one VM only has a snapshot."""
    clock = FakeClock(datetime(2026, 11, 20, 20, 0, tzinfo=UTC))
    store = FactStore(path, clock=clock)
    steps = [step(WEB1, "web"), step(WEB2, "web"), step(DB1, "databases"), step(CANARY1, "canary", "canary")]
    store.create_run("run-1", plan=plan("p1", steps), config_digest="d", requested_by="test")
    _outcome(
        store, "run-1", WEB1, StepStatus.SUCCEEDED, "2026-11-20T21:00:00+00:00", "2026-11-20T21:20:00+00:00"
    )
    _outcome(store, "run-1", WEB2, StepStatus.ROLLED_BACK, "2026-11-20T21:10:00+00:00", "2026-11-20T21:40:00+00:00",
             error="unhealthy after patching: web: HTTP 503")  # fmt: skip
    _outcome(
        store, "run-1", DB1, StepStatus.SUCCEEDED, "2026-11-20T21:00:00+00:00", "2026-11-20T21:30:00+00:00"
    )
    _outcome(
        store,
        "run-1",
        CANARY1,
        StepStatus.SUCCEEDED,
        "2026-11-20T20:10:00+00:00",
        "2026-11-20T20:20:00+00:00",
    )
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
        store.register_snapshot_intent("run-1", vm_step_id(ref), ref, name)
        store.register_snapshot_created("run-1", vm_step_id(ref), f"snap-{ref.name}")
    store.mark_snapshot("run-1", steps[1].step_id, "reverted")
    store.mark_snapshot("run-1", steps[2].step_id, "deleted")

    clock.advance_to(datetime(2026, 11, 25, 21, 0, tzinfo=UTC))
    store.create_run(
        "run-2", plan=plan("p2", [steps[0], steps[3]]), config_digest="d", requested_by="schedule"
    )
    _outcome(
        store, "run-2", WEB1, StepStatus.SUCCEEDED, "2026-11-25T21:00:00+00:00", "2026-11-25T21:15:00+00:00"
    )
    _outcome(store, "run-2", CANARY1, StepStatus.FAILED, "2026-11-25T21:00:00+00:00", "2026-11-25T21:05:00+00:00",
             error="snapshot failed: datastore full")  # fmt: skip
    clean = Assessment(os=DEBIAN, kernel="6.1.0-28-amd64", reboot_required=False, updates=())
    store.record_assessment("run-2", steps[0].step_id, WEB1, clean, phase="after")
    store.record_assessment("run-2", steps[3].step_id, CANARY1, clean, phase="before")
    store.register_snapshot_intent("run-2", steps[0].step_id, WEB1, "pw-web-1")
    store.register_snapshot_created("run-2", steps[0].step_id, "snap-web-1")
    store.mark_snapshot("run-2", steps[0].step_id, "kept")
    store.register_snapshot_intent("run-old", "vm:dc2:uuid-legacy", LEGACY, "pw-legacy")  # never finished
    clock.advance_to(NOW)
    return Fleet(store, clock=clock)


def _outcome(store: FactStore, run: str, ref: VmRef, status: StepStatus, started: str, finished: str,
             error: str = "") -> None:  # fmt: skip
    store.set_outcome(run, VmOutcome(step_id=vm_step_id(ref), vm=ref, status=status, error=error,
                                     started_at=started, finished_at=finished))  # fmt: skip


# ------------------------------------------------------------------------------------ the whole fleet
APP1, APP2, NEW1, RETIRED = vm("app-1"), vm("app-2"), vm("new-1"), vm("retired-1")
ESX1, ESX2, KVM1 = (
    HostRef("dc1", "host-10", "esx-1"),
    HostRef("dc1", "host-11", "esx-2"),
    HostRef("dc2", "kvm", "kvm-1"),
)
#: name -> (group, ring) as the configuration places each VM of the inventories.
PLACEMENT = {"web-1": ("web", "main"), "web-2": ("web", "main"), "db-1": ("databases", "main"),
             "canary-1": ("canary", "canary"), "app-1": ("apps", "main"), "app-2": ("apps", "main"),
             "new-1": ("default", "main"), LEGACY.name: ("default", "main")}  # fmt: skip
#: run -> VM -> journal: (action, started, finished or "" for a result without intent, ok) in order.
JOURNAL = {
    "run-1": {
        CANARY1: [("snapshot", "20:10:00", "20:10:40", True), ("baseline_health", "", "20:11:00", True),
                  ("patch", "20:11:10", "20:16:00", True), ("verify_health", "", "20:19:30", True)],
        WEB1: [("snapshot", "21:00:00", "21:01:00", True), ("baseline_health", "", "21:01:20", True),
               ("patch", "21:01:30", "21:09:00", True), ("reboot", "21:09:10", "21:12:40", True),
               ("verify_health", "", "21:19:00", True)],
        WEB2: [("snapshot", "21:10:00", "21:11:00", True), ("baseline_health", "", "21:11:20", True),
               ("patch", "21:12:30", "21:20:00", True), ("reboot", "21:20:10", "21:23:00", True),
               ("verify_health", "", "21:28:00", False), ("revert", "21:28:30", "21:33:00", True),
               ("verify_health", "", "21:38:00", True)],
        DB1: [("snapshot", "21:00:00", "21:02:00", True), ("baseline_health", "", "21:02:30", True),
              ("patch", "21:03:00", "21:15:00", True), ("reboot", "21:15:00", "21:19:00", True),
              ("verify_health", "", "21:25:00", True)],
    },
    "run-3": {APP2: [("snapshot", "21:00:00", "21:00:30", True), ("patch", "21:01:00", "21:08:00", True),
                     ("verify_health", "", "21:11:00", True)]},
}  # fmt: skip
RUN_DAYS = {"run-0": "2026-10-01", "run-1": "2026-11-20", "run-2": "2026-11-25", "run-3": "2026-11-24"}


def populate_fleet(path: Path | PostgresTarget) -> Fleet:
    """:func:`populate`, then: run-0 (Oct 1st: app-1, app-2 patched, clean after), retired-1
    (assessed in run-1 with a critical update, gone from the inventory since), run-3 (Nov 24th: app-1 skipped with an important
    security update pending and its last patch 8 weeks old -> non-compliant; app-2 patched, one
    important update released since -> compliant within the grace period), the hosts of run-2 (esx-1
    patched and rebooted; esx-2 left in maintenance; kvm-1 report-only: 3 pending, 1 security), the
    journal of run-1 and run-3, and both sites' inventories taken an hour before NOW (new-1 never
    assessed)."""
    fleet = populate(path)
    store, clock = fleet.store, fleet.clock
    _run(store, clock, "run-0", [step(APP1, "apps"), step(APP2, "apps")],
         {APP1: StepStatus.SUCCEEDED, APP2: StepStatus.SUCCEEDED}, ("21:00", "21:20"))  # fmt: skip
    clean = Assessment(os=DEBIAN, kernel="6.1.0-26-amd64", reboot_required=False, updates=())
    for ref in (APP1, APP2):
        store.record_assessment("run-0", f"vm:dc1:{ref.id}", ref, clean, phase="after",
                                taken_at="2026-10-01T21:25:00+00:00")  # fmt: skip
    critical = Assessment(os=DEBIAN, kernel="6.1.0-20-amd64", reboot_required=True,
                          updates=(update("openssl", security=True, severity="critical"),))  # fmt: skip
    store.record_assessment("run-1", f"vm:dc1:{RETIRED.id}", RETIRED, critical, phase="before",
                            taken_at="2026-11-20T21:05:00+00:00")  # fmt: skip
    _run(store, clock, "run-3", [step(APP1, "apps"), step(APP2, "apps")],
         {APP1: StepStatus.SKIPPED, APP2: StepStatus.SUCCEEDED}, ("21:00", "21:12"))  # fmt: skip
    important = Assessment(os=DEBIAN, kernel="6.1.0-28-amd64", reboot_required=False,
                           updates=(update("libxml2", security=True, severity="high", cves=("CVE-2026-0009",)),))  # fmt: skip
    store.record_assessment("run-3", f"vm:dc1:{APP1.id}", APP1, important, phase="before",
                            taken_at="2026-11-24T21:00:00+00:00")  # fmt: skip
    store.record_assessment("run-3", f"vm:dc1:{APP2.id}", APP2, important, phase="after",
                            taken_at="2026-11-24T21:12:00+00:00")  # fmt: skip
    _hosts(store, clock)
    for run, journals in JOURNAL.items():
        for ref, events in journals.items():
            _journal(store, clock, run, ref, events)
    _inventories(store, clock)
    clock.set_time(NOW)
    return fleet


def _at(run: str, hhmmss: str) -> datetime:
    return datetime.fromisoformat(f"{RUN_DAYS[run]}T{hhmmss}+00:00")


def _run(store: FactStore, clock: FakeClock, run: str, steps: list[VmStep], statuses: dict[VmRef, StepStatus],
         times: tuple[str, str]) -> None:  # fmt: skip
    clock.set_time(_at(run, times[0]))
    store.create_run(run, plan=plan(f"p-{run}", steps), config_digest="d", requested_by="schedule")
    for ref, status in statuses.items():
        started, finished = (_at(run, t).isoformat() for t in times)
        clock.set_time(_at(run, times[1]))
        error = "window 'weeknight' closed before the VM could start" if status is StepStatus.SKIPPED else ""
        _outcome(store, run, ref, status, started, finished, error=error)


def _typed(action: str, phase: Phase, detail: dict[str, Any]) -> Detail:
    """The typed journal detail ``action`` records for ``phase``, from the JSON the store keeps."""
    kind = Action(action).detail_type(phase)
    assert kind is not None, f"{action} records no {phase.value}"
    return kind.from_json(detail)


def _intent(
    store: FactStore, run: str, step_id: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    store.record_intent(
        run, step_id, Action(action), target=target, detail=_typed(action, Phase.INTENT, detail)
    )


def _result(store: FactStore, run: str, step_id: str, action: str, *, ok: bool, detail: dict[str, Any],
            error: str = "") -> None:  # fmt: skip
    store.record_result(
        run, step_id, Action(action), ok=ok, detail=_typed(action, Phase.RESULT, detail), error=error
    )


def _journal(store: FactStore, clock: FakeClock, run: str, ref: VmRef,
             events: list[tuple[str, str, str, bool]]) -> None:  # fmt: skip
    step_id = f"vm:{ref.site}:{ref.id}"
    for action, started, finished, ok in events:
        if started:
            clock.set_time(_at(run, started))
            _intent(store, run, step_id, action, str(ref), {})
        clock.set_time(_at(run, finished))
        _result(store, run, step_id, action, ok=ok, detail={}, error="" if ok else "web: HTTP 503")


def _hosts(store: FactStore, clock: FakeClock) -> None:
    def at(hhmm: str) -> str:
        clock.set_time(_at("run-2", f"{hhmm}:00"))
        return clock.now().isoformat()

    for state, hhmm in (("entering", "20:00"), ("in", "20:05")):
        at(hhmm)
        store.record_maintenance("run-2", ESX1, state)
    at("20:06")
    _intent(store, "run-2", f"host:dc1:{ESX1.id}", "host_patch", str(ESX1), {"build": "23825572"})
    at("20:30")
    _result(store, "run-2", f"host:dc1:{ESX1.id}", "host_patch", ok=True, detail={"build": "24022515"})
    at("20:31")
    _intent(store, "run-2", f"host:dc1:{ESX1.id}", "host_reboot", str(ESX1), {})
    at("20:45")
    _result(store, "run-2", f"host:dc1:{ESX1.id}", "host_reboot", ok=True, detail={})
    store.record_maintenance("run-2", ESX1, "exited")
    store.set_outcome("run-2", HostOutcome(step_id=f"host:dc1:{ESX1.id}", host=ESX1, status=StepStatus.SUCCEEDED,
                                           build_before="23825572", build_after="24022515", rebooted=True,
                                           started_at=at("20:00"), finished_at=at("20:48")))  # fmt: skip
    for state, hhmm in (("entering", "20:50"), ("in", "20:55")):
        at(hhmm)
        store.record_maintenance("run-2", ESX2, state)
    store.set_outcome("run-2", HostOutcome(step_id=f"host:dc1:{ESX2.id}", host=ESX2, status=StepStatus.FAILED,
                                           error="exit maintenance timed out", started_at=at("20:50"),
                                           finished_at=at("21:20")))  # fmt: skip
    at("20:10")
    _result(store, "run-2", f"host:dc2:{KVM1.id}", "host_assess", ok=True, detail={
        "report_only": True, "pending": ["libvirt0 9.0.0-4->9.0.0-4+deb12u2", "tzdata 2024a->2025b", "vim 2:9.0->2:9.0.1"],
        "security": ["libvirt0"], "reboot_required": True, "kernel": "6.1.0-28-amd64"})  # fmt: skip
    store.set_outcome("run-2", HostOutcome(step_id=f"host:dc2:{KVM1.id}", host=KVM1, status=StepStatus.SUCCEEDED,
                                           detail="report only: 3 update(s) pending (1 security)",
                                           started_at=at("20:09"), finished_at=at("20:10")))  # fmt: skip


def _inventories(store: FactStore, clock: FakeClock) -> None:
    clock.set_time(datetime(2026, 11, 26, 11, 0, tzinfo=UTC))
    esx1 = HostInfo(ESX1, HostState.CONNECTED, "cluster-a", version="8.0.3", build="24022515")
    esx2 = HostInfo(ESX2, HostState.MAINTENANCE, "cluster-a", version="8.0.2", build="23825572")
    kvm1 = HostInfo(KVM1, HostState.CONNECTED, "kvm-1", version="9.0.0")
    dc1 = [WEB1, WEB2, DB1, CANARY1, APP1, APP2, NEW1]
    vms = [VmInfo(ref, PowerState.RUNNING, host=ESX1 if i % 2 else ESX2, guest_os="debian12_64Guest")
           for i, ref in enumerate(dc1)]  # fmt: skip
    inventories = InventoryStore(store)
    inventories.record(Inventory("dc1", (esx1, esx2), tuple(vms)), lambda v: PLACEMENT[v.ref.name])
    legacy = VmInfo(LEGACY, PowerState.STOPPED, host=KVM1, guest_os="centos7")
    inventories.record(Inventory("dc2", (kvm1,), (legacy,)), lambda v: PLACEMENT[v.ref.name])
