"""What must hold after a crash-injected run, read from the providers' real state and the fact store."""

from __future__ import annotations

from orchestrator.facts.store import FactStore
from orchestrator.model import HostOutcome, StepStatus, VmOutcome
from patchwave_lab.fakeguest import FakeGuest
from tests.crash.scenarios import Scenario, Target
from tests.support.testbed import INSTALLED, UPGRADES

#: What one complete upgrade of a fake guest writes to its patch log.
FULL_UPGRADE = [f"{name} {INSTALLED[name]} {UPGRADES[name]}" for name in sorted(INSTALLED)]


def upgrade_runs(guest: FakeGuest, *, killed: bool) -> tuple[bool, str]:
    """(ok, note): exactly one upgrade — or, after a kill, one interrupted before it committed
    (its log is a strict prefix of a complete one; the fake commits the new versions at the end,
    so nothing was applied) followed by one complete retry."""
    patches, runs = guest.patches(), guest.upgrades()
    if runs == 1 and patches == FULL_UPGRADE:
        return True, ""
    head, full = patches[: -len(FULL_UPGRADE)], patches[-len(FULL_UPGRADE) :]
    if killed and runs == 2 and full == FULL_UPGRADE and head == FULL_UPGRADE[: len(head)]:
        return True, f"{len(head)} package(s) of an interrupted, uncommitted upgrade redone"
    return False, f"{runs} upgrade run(s), patches {patches} (expected 1 complete upgrade)"


def package_manager_state(guest: FakeGuest) -> list[str]:
    """The guest's package manager is done: every apt-get the guest ran finished (none still running,
    none killed: a killed job never logs "finished"), and its database is consistent."""
    bad: list[str] = []
    started = [line.split()[1] for line in guest.processes() if line.endswith(" started")]
    finished = {line.split()[1] for line in guest.processes() if line.endswith(" finished")}
    if unfinished := [pid for pid in started if pid not in finished]:
        bad.append(f"apt-get {unfinished} never finished (killed, or still running)")
    for name in ("audit", "states"):
        path = guest.state / name
        if path.exists() and path.read_text().strip():
            bad.append(f"package database not consistent: {name}: {path.read_text().strip()}")
    return bad


def check(
    scenario: Scenario, target: Target, run_id: str, resume_exit: int | None, *, killed: bool = True
) -> list[str]:
    """What must hold after the resumed run; every violation is one line."""
    bad: list[str] = []
    if resume_exit != 0:
        command = "resume" if killed else "run"  # a run that finished before its kill point
        bad.append(f"{command} exited {resume_exit} (expected 0: run finished, every VM patched)")
    facts = FactStore(target.state / "facts.db")
    try:
        record = facts.get_run(run_id)
        if record is None or record.status != "succeeded":
            bad.append(f"run status is {record.status if record else 'missing'!r}, not 'succeeded'")
        recorded = {s.step_id: s for s in facts.snapshots(run_id=run_id)}
        owned = scenario.owned_snapshots(target, run_id)
        for name, guest in target.guests.items():
            step_id = target.step_id(name)
            outcome = facts.outcome(run_id, step_id)
            if not isinstance(outcome, VmOutcome) or outcome.status is not StepStatus.SUCCEEDED:
                bad.append(f"{name}: outcome {getattr(outcome, 'status', None)} (expected succeeded)")
            # no VM patched twice: the guest's own log counts real (non-simulated) upgrades
            ok, why = upgrade_runs(guest, killed=killed)
            if not ok:
                bad.append(f"{name}: {why}")
            if guest.installed() != {"demo-app": "1.1", "openssl": "3.0.15"}:
                bad.append(f"{name}: installed {guest.installed()}")
            bad.extend(f"{name}: {why}" for why in package_manager_state(guest))
            # no leaked snapshot: ours on the platform = exactly the one recorded and kept by policy
            snaps = owned.get(name, [])
            rec = recorded.get(step_id)
            if len(snaps) != 1:
                bad.append(f"{name}: {len(snaps)} snapshot(s) owned by the run on the platform: "
                           f"{[s.id for s in snaps]} (expected 1, kept by the TTL policy)")  # fmt: skip
            if rec is None or rec.state != "kept" or not any(s.id == rec.snapshot_id for s in snaps):
                bad.append(f"{name}: fact store snapshot record {rec and (rec.snapshot_id, rec.state)} "
                           f"does not match the platform {[s.id for s in snaps]}")  # fmt: skip
            if any((s.ownership.step_id if s.ownership else "") != step_id for s in snaps):
                bad.append(f"{name}: a snapshot owned by the run names another step")
        for other in set(recorded) - {target.step_id(n) for n in target.guests}:
            bad.append(f"snapshot record for an unknown step {other}")
        if target.hosts:
            plan = facts.run_plan(run_id) if record else None
            for step in plan.host_steps if plan else ():
                outcome = facts.outcome(run_id, step.step_id)
                if not isinstance(outcome, HostOutcome) or outcome.status is not StepStatus.SUCCEEDED:
                    bad.append(f"host {step.host.name}: outcome {getattr(outcome, 'status', None)}")
            report = scenario.host_report(target)
            stale = {h: b for h, b in report.get("builds", {}).items() if b != report["expected_build"]}
            if stale:
                bad.append(f"hosts not at build {report['expected_build']}: {stale}")
            if any(n > 1 for n in report.get("max_concurrent", {}).values()):
                bad.append(f"more than one host in maintenance at once: {report['max_concurrent']}")
            # hosts patched over SSH (Proxmox): per host, what each package upgrade run changed (0:
            # nothing); one run installs, a retry that finds nothing pending may only change nothing
            for host, runs in sorted(report.get("upgrades", {}).items()):
                if sum(1 for changed in runs if changed) != 1:
                    bad.append(f"host {host}: {len(runs)} upgrade run(s), changes per run {runs} "
                               "(expected exactly one run that changed packages)")  # fmt: skip
            rebooted = {h: n for h, n in report.get("reboots", {}).items() if n != 1}
            if rebooted:
                bad.append(f"hosts not rebooted exactly once onto the new build: {rebooted}")
            bad.extend(f"unsafe host reboot: {line}" for line in report.get("unsafe_reboots", []))
        left = facts.hosts_in_maintenance()
        if left:
            bad.append(f"fact store: hosts still in maintenance {[str(m.host) for m in left]}")
    finally:
        facts.close()
    in_maintenance = scenario.hosts_in_maintenance(target)
    if in_maintenance:
        bad.append(f"platform: hosts left in maintenance {in_maintenance}")
    return bad


def check_untouched(scenario: Scenario, target: Target, run_id: str) -> list[str]:
    """A run killed before its workflow existed (resume: unknown run): nothing may have happened."""
    bad: list[str] = []
    facts = FactStore(target.state / "facts.db")
    try:
        if facts.get_run(run_id) is not None:
            bad.append("resume called a run unknown that the fact store has")
    finally:
        facts.close()
    for name, snaps in scenario.owned_snapshots(target, run_id).items():
        if snaps:
            bad.append(f"{name}: snapshots {[s.id for s in snaps]} of a run that never started")
    for name, guest in target.guests.items():
        if guest.upgrades():
            bad.append(f"{name}: patched by a run that never started")
    in_maintenance = scenario.hosts_in_maintenance(target)
    if in_maintenance:
        bad.append(f"platform: hosts left in maintenance {in_maintenance}")
    return bad
