"""Per run, what each VM went through and when: bars for the report's timeline (Gantt) charts.

The bars come from the step journal (:meth:`FactStore.step_history`, per VM): an intent record opens a
bar, the matching result closes it. A result without an intent of its own (health checks; "nothing to
patch") is a bar from the VM's previous record to it; an intent never followed by its result (a step
interrupted by a crash, or still running) is a bar to the VM's last record, marked unfinished. Only the
latest ``runs`` runs and at most ``vms`` VMs per run are read (rolled-back and failed VMs first), so a
50,000-VM run costs no more than a small one; the report says how many VMs a run had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.facts import history
from orchestrator.facts.gates import GateRecord
from orchestrator.facts.records import StepRecord
from orchestrator.facts.store import FactStore
from orchestrator.model import StepStatus, VmOutcome

RUNS = 5
VMS_PER_RUN = 40
#: Journal action -> bar kind; the only place that reads the journal's actions (see :func:`bars_of`).
BAR_KINDS = {"snapshot": "snapshot", "patch": "patch", "reboot": "reboot", "restart_services": "reboot",
             "baseline_health": "health", "verify_health": "health", "revert": "rollback"}  # fmt: skip


@dataclass(frozen=True)
class Bar:
    kind: str  # snapshot | patch | reboot | health | rollback; "outcome": a whole VM without a journal
    start: str  # ISO
    end: str  # ISO
    ok: bool | None  # None: no result recorded (interrupted, or still running)
    action: str  # the journal's action


@dataclass(frozen=True)
class TimelineRow:
    vm: str  # site/name
    status: str  # the VM's outcome in the run
    error: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class RunTimeline:
    run_id: str
    status: str
    created_at: str
    vms: int  # VMs with an outcome in the run (rows: at most VMS_PER_RUN of them)
    rows: tuple[TimelineRow, ...]
    gates: tuple[str, ...] = ()  # the run's ring gate decisions (refused / approved / forced, who, when)


def bars_of(records: Sequence[StepRecord]) -> tuple[Bar, ...]:
    """One VM's journal of one run (oldest first) -> its bars. Reads ``action``/``phase``/``ok``/
    ``recorded_at`` only: when the journal's actions become a typed enum, ``str(action)`` still works."""
    opened: dict[str, StepRecord] = {}
    bars: list[Bar] = []
    previous = ""
    for record in records:
        action = str(getattr(record.action, "value", record.action))
        kind = BAR_KINDS.get(action)
        if record.phase == "intent":
            opened[action] = record
        elif kind is not None:
            intent = opened.pop(action, None)
            start = intent.recorded_at if intent is not None else (previous or record.recorded_at)
            bars.append(Bar(kind, start, record.recorded_at, bool(record.ok), action))
        previous = record.recorded_at
    for action, intent in opened.items():  # no result: interrupted, or still running
        if BAR_KINDS.get(action):
            bars.append(Bar(BAR_KINDS[action], intent.recorded_at, previous, None, action))
    return tuple(sorted(bars, key=lambda b: (b.start, b.end)))


def _bars(records: Sequence[StepRecord], outcome: VmOutcome) -> tuple[Bar, ...]:
    """The journal's bars; without a journal (older records), one bar for the whole outcome."""
    bars = bars_of(records)
    if bars or not (outcome.started_at and outcome.finished_at):
        return bars
    ok = outcome.status not in (StepStatus.FAILED, StepStatus.ROLLED_BACK)
    return (Bar("outcome", outcome.started_at, outcome.finished_at, ok, f"whole VM, {outcome.status}"),)


def gate_line(gate: GateRecord) -> str:
    """One ring gate decision as a line: "ring canary: forced by alice at 2026-..: <the refusal>"."""
    why = f": {gate.reason}" if gate.reason else ""
    return f"ring {gate.ring}: {gate.decision} by {gate.decided_by or '?'} at {gate.decided_at[:19]}Z{why}"


def run_timelines(facts: FactStore, *, runs: int = RUNS, vms: int = VMS_PER_RUN) -> tuple[RunTimeline, ...]:
    """The latest ``runs`` runs (newest first) that have VM outcomes, at most ``vms`` VMs each."""
    found = []
    for run in facts.list_runs(limit=runs):
        total, outcomes = history.run_vm_outcomes(facts, run.run_id, vms)
        if not total:
            continue
        rows = [
            TimelineRow(
                str(o.vm), str(o.status), o.error[:200], _bars(facts.step_history(run.run_id, o.step_id), o)
            )
            for o in outcomes
        ]
        rows.sort(key=lambda r: (not r.bars, r.bars[0].start if r.bars else "", r.vm))
        gates = tuple(gate_line(g) for g in facts.gate_records(run.run_id))
        found.append(RunTimeline(run.run_id, run.status, run.created_at, total, tuple(rows), gates))
    return tuple(found)
