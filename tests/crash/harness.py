"""Crash injection: SIGKILL the worker (or the embedded Temporal server) of a real run at a random
point, `patchwave resume RUN`, then check the end state from the providers and the fact store.

One injection:

1. a fresh target from a :mod:`tests.crash.scenarios` scenario (libvirt qemu:///system, vcsim,
   PVE simulator) with fake guests and its own state directory;
2. ``patchwave run --run-id RUN`` as a subprocess (worker + client; it spawns the embedded
   ``temporal server start-dev``), with ``PATCHWAVE_RECOVERY_S`` so a killed worker's work comes
   back within seconds (see :mod:`orchestrator.engine.retry`);
3. the kill point, drawn from a seeded RNG: ``records:N`` — once the fact store holds N records
   (steps, outcomes, snapshot and maintenance rows), or ``delay:S`` — S seconds after the start,
   S drawn from the provider's measured clean run; the kill target is the ``patchwave run``
   process (``worker``) or the dev server (``server``, pid from ``<state>/temporal.db.pid``);
4. after a server kill ``patchwave run`` must notice by itself (it supervises the server it
   started) and exit with the resume hint; one still running after a grace period is killed and
   the injection is dirty;
5. ``patchwave resume RUN`` until it exits, then the invariants (tests/crash/invariants.py).

Replay one injection: a dirty result prints its campaign's environment plus
``PATCHWAVE_CRASH_INDEX=<i>`` (run only injection i of that campaign). Every injection draws its
kill point from ``random.Random(f"{seed}:{provider}:{target}:{index}")``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.engine import server_files
from tests.crash.invariants import check, check_untouched
from tests.crash.scenarios import Scenario, Target, opened
from tests.support.loopback import unused_port
from tests.support.paths import REPO

PROVIDERS = ("libvirt", "vsphere", "proxmox")
KILL_TARGETS = ("worker", "server")
#: What a killed worker's work waits for before it is retried (seconds); see orchestrator.engine.retry.
RECOVERY_S = 3.0
#: Deadlines for the subprocesses (not assertions on durations: a run past them is "never finished").
RUN_DEADLINE_S = 180.0
ORPHAN_GRACE_S = 20.0
#: Replacement injections per (provider, kill target) for runs that finished before their kill point.
TOP_UPS = 6
DEFAULT_SUMMARY = REPO / ".cache" / "crash-injection.json"


def summary_path() -> Path:
    return Path(os.environ.get("PATCHWAVE_CRASH_SUMMARY", "") or DEFAULT_SUMMARY)


@dataclass
class Injection:
    provider: str
    target: str  # worker | server
    seed: str
    index: int
    point: str  # records:N | delay:S
    run_id: str
    killed: bool = False  # False: the run finished before the point (not counted)
    orphan_killed: bool = False  # after a server kill, `patchwave run` had to be killed too
    run_exit: int | None = None
    resume_exit: int | None = None
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""
    campaign: str = ""  # the environment that replays this injection's campaign

    @property
    def clean(self) -> bool:
        return not self.violations

    def replay(self) -> str:
        return (
            f"{self.campaign} PATCHWAVE_CRASH_INDEX={self.index} "
            f"({self.provider}/{self.target}, kill point {self.point})"
        )


# ------------------------------------------------------------------------------------ processes


def patchwave(target: Target, *args: str) -> subprocess.Popen[str]:
    """``patchwave -c <config> ARGS`` as a process; output appended to ``<root>/<command>.log``."""
    env = {
        **os.environ,
        **target.env,
        "PYTHONPATH": str(REPO),
        "PATCHWAVE_RECOVERY_S": f"{RECOVERY_S:g}",
    }
    with open(target.root / f"{args[0]}.log", "a") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "-c",
                str(target.config),
                "--log-format",
                "json",
                *args,
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def tail(target: Target, command: str, size: int = 3000) -> str:
    path = target.root / f"{command}.log"
    return path.read_text()[-size:] if path.exists() else ""


def server_pid(target: Target) -> int | None:
    """The dev server's pid from the pidfile devserver.py writes (``<state>/temporal.db.pid``), if
    that process is a dev server on this target's database (read as devserver.py reads it)."""
    return server_files.server_pid(target.state / "temporal.db.pid", target.state / "temporal.db")


def stop_server(target: Target) -> None:
    """Stop a dev server left on this target's state dir (ours only: pidfile + cmdline checked)."""
    pid = server_pid(target)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server_pid(target) == pid:
            time.sleep(0.1)
        if server_pid(target) == pid:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def fact_records(target: Target) -> int:
    """How many records the fact store holds (read-only; 0 before it exists)."""
    path = target.state / "facts.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            row = db.execute(
                "SELECT (SELECT COUNT(*) FROM steps) + (SELECT COUNT(*) FROM outcomes)"
                " + (SELECT COUNT(*) FROM snapshots) + (SELECT COUNT(*) FROM maintenance)"
            ).fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0  # not created yet / schema being written


def wait_exit(proc: subprocess.Popen[str], deadline_s: float) -> int | None:
    try:
        return proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        return None


# ------------------------------------------------------------------------------------ one injection


@dataclass(frozen=True)
class Calibration:
    """A clean run of the provider: how long it took and how many fact records it wrote."""

    seconds: float
    records: int


def draw_point(rng: random.Random, cal: Calibration) -> str:
    if rng.random() < 0.5 and cal.records > 2:
        return f"records:{rng.randint(1, cal.records - 1)}"
    return f"delay:{rng.uniform(0.5, max(1.0, cal.seconds * 0.8)):.2f}"


def reached(point: str, target: Target, started: float) -> bool:
    kind, value = point.split(":")
    if kind == "records":
        return fact_records(target) >= int(value)
    return time.monotonic() - started >= float(value)


def calibrate(scenario: Scenario, root: Path) -> tuple[Calibration, list[str]]:
    """One uninjected run: its duration and record count (and its invariants: a clean baseline)."""
    target = scenario.target(root, unused_port())
    run_id = "run-calibration"
    try:
        started = time.monotonic()
        proc = patchwave(target, "run", "--run-id", run_id)
        code = wait_exit(proc, RUN_DEADLINE_S)
        seconds = time.monotonic() - started
        if code is None:
            proc.kill()
            proc.wait()
        violations = check(scenario, target, run_id, code, killed=False)
        if violations:
            violations.append("run log: " + tail(target, "run"))
        return Calibration(seconds, fact_records(target)), violations
    finally:
        stop_server(target)
        scenario.release(target)


def inject(scenario: Scenario, root: Path, kill: str, seed: str, index: int, cal: Calibration) -> Injection:
    rng = random.Random(f"{seed}:{scenario.name}:{kill}:{index}")
    point = draw_point(rng, cal)
    run_id = f"run-crash-{index}"
    shot = Injection(scenario.name, kill, seed, index, point, run_id)
    started = time.monotonic()
    try:
        target = scenario.target(root, unused_port())
    except Exception as exc:  # noqa: BLE001 - the provider's test service failed: dirty, with its reason
        shot.violations.append(f"harness error: the target could not be built: {type(exc).__name__}: {exc}")
        shot.seconds = round(time.monotonic() - started, 2)
        return shot
    try:
        proc = patchwave(target, "run", "--run-id", run_id)
        while not reached(point, target, started) and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is not None:
            shot.run_exit = proc.returncode  # finished before the point: nothing was injected
            shot.violations = check(scenario, target, run_id, proc.returncode, killed=False)
        else:
            shot.killed = _kill(shot, target, proc, kill)
            resumed = patchwave(target, "resume", run_id)
            shot.resume_exit = wait_exit(resumed, RUN_DEADLINE_S)
            if shot.resume_exit is None:
                resumed.kill()
                resumed.wait()
                shot.violations.append(f"resume did not finish within {RUN_DEADLINE_S:.0f}s")
            if shot.resume_exit == 2 and f"no run {run_id!r} is known" in tail(target, "resume"):
                shot.note = "killed before the run was started: nothing to resume"
                shot.violations += check_untouched(scenario, target, run_id)
            else:
                shot.violations += check(scenario, target, run_id, shot.resume_exit)
        if shot.violations:
            command = "resume" if shot.killed else "run"
            shot.violations.append(f"{command} log: " + tail(target, command).replace("\n", " | "))
    except Exception as exc:  # noqa: BLE001 - a harness error is a dirty injection, with its reason
        shot.violations.append(f"harness error: {type(exc).__name__}: {exc}")
    finally:
        stop_server(target)
        try:
            scenario.release(target)
        except Exception as exc:  # noqa: BLE001
            shot.violations.append(f"release failed: {exc}")
        shot.seconds = round(time.monotonic() - started, 2)
    return shot


def _kill(shot: Injection, target: Target, proc: subprocess.Popen[str], kill: str) -> bool:
    if kill == "worker":
        proc.send_signal(signal.SIGKILL)
        shot.run_exit = proc.wait(timeout=30)
        return True
    pid = server_pid(target)
    if pid is None:  # not up yet (the point came before the server): kill it when it is
        deadline = time.monotonic() + 30
        while pid is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            pid = server_pid(target)
    if pid is None:
        shot.run_exit = wait_exit(proc, RUN_DEADLINE_S)
        return False
    os.kill(pid, signal.SIGKILL)
    shot.run_exit = wait_exit(proc, ORPHAN_GRACE_S)
    if shot.run_exit is None:  # the run did not notice that its engine is gone
        proc.send_signal(signal.SIGKILL)
        shot.run_exit = proc.wait(timeout=30)
        shot.orphan_killed = True
        shot.violations.append(
            f"`patchwave run` was still running {ORPHAN_GRACE_S:.0f}s after its Temporal server was killed"
        )
    elif shot.run_exit not in (0, 1):
        shot.violations.append(f"`patchwave run` exited with {shot.run_exit} after its server was killed")
    return True


# ------------------------------------------------------------------------------------ the campaign


@dataclass
class Campaign:
    seed: str
    injections: int
    providers: Sequence[str] = PROVIDERS
    targets: Sequence[str] = KILL_TARGETS
    only: int | None = None  # replay: run injection ``only`` of this campaign, nothing else
    results: list[Injection] = field(default_factory=list)
    calibrations: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(p, t) for p in self.providers for t in self.targets]

    def pair_of(self, index: int) -> tuple[str, str]:
        """(provider, kill target) of injection ``index``: round-robin, so every pair gets its share
        (top-up indices past the plan keep the same residue as the injection they replace)."""
        return self.pairs[index % len(self.pairs)]

    def plan(self) -> list[tuple[str, str]]:
        return [self.pair_of(i) for i in range(self.injections)]

    def top_ups(self, pair: tuple[str, str]) -> list[int]:
        """Indices for replacing injections of ``pair`` whose run finished before the kill point
        (such a run is checked but not counted): past the plan, at most :data:`TOP_UPS` each."""
        width = len(self.pairs)
        first = -(-self.injections // width) * width + self.pairs.index(pair)
        return [first + j * width for j in range(TOP_UPS)]

    def run(self, workdir: Path, log: Callable[[str], None] = print) -> None:
        from tests.crash.scenarios import Unavailable

        started = time.monotonic()
        todo = list(enumerate(self.plan()))
        if self.only is not None:
            todo = [(self.only, self.pair_of(self.only))]
        for provider in self.providers:
            mine = [(i, t) for i, (p, t) in todo if p == provider]
            if not mine:
                continue
            try:
                with opened(provider, workdir / provider / "shared") as scenario:
                    # Two clean runs: the first is cold (imports, caches) and would put delay
                    # points past the end of a warm run; the faster one sets the range.
                    first, violations = calibrate(scenario, workdir / provider / "calibration")
                    second, more = calibrate(scenario, workdir / provider / "calibration-2")
                    violations += more
                    cal = Calibration(min(first.seconds, second.seconds), min(first.records, second.records))
                    self.calibrations[provider] = {**asdict(cal), "violations": violations}
                    if violations:
                        log(f"crash[{provider}] calibration run is not clean: {violations}")
                    for index, kill in mine:
                        self._inject(scenario, workdir, provider, kill, index, cal, log)
                    if self.only is None:
                        for kill in self.targets:
                            for index in self.top_ups((provider, kill)):
                                missing = sum(1 for i, t in mine if t == kill) - sum(
                                    1
                                    for r in self.results
                                    if (r.provider, r.target) == (provider, kill) and r.killed
                                )
                                if missing <= 0:
                                    break
                                self._inject(scenario, workdir, provider, kill, index, cal, log)
            except Unavailable as exc:
                self.unavailable[provider] = str(exc)
                log(f"crash[{provider}] unavailable: {exc}")
        self.seconds = round(time.monotonic() - started, 1)

    def _inject(
        self, scenario: Scenario, workdir: Path, provider: str, kill: str, index: int, cal: Calibration,
        log: Callable[[str], None],
    ) -> None:  # fmt: skip
        shot = inject(scenario, workdir / provider / f"i{index}", kill, self.seed, index, cal)
        shot.campaign = self.environment()
        self.results.append(shot)
        status = ("clean" if shot.clean else "DIRTY") + (
            "" if shot.killed else ", run finished first: not counted"
        )
        log(f"crash[{provider}/{kill}] #{index} {shot.point}: {status} ({shot.seconds}s)")
        if not shot.clean:
            log(f"  replay: {shot.replay()}")
            for line in shot.violations:
                log(f"  - {line}")

    def environment(self) -> str:
        return (
            f"PATCHWAVE_CRASH_SEED={self.seed} PATCHWAVE_CRASH_INJECTIONS={self.injections} "
            f"PATCHWAVE_CRASH_PROVIDERS={','.join(self.providers)} PATCHWAVE_CRASH_TARGETS={','.join(self.targets)}"
        )

    def summary(self) -> dict[str, Any]:
        counted = [r for r in self.results if r.killed]
        return {
            "seed": self.seed,
            "injections": len(counted),
            "requested": self.injections,
            "not_injected": sum(1 for r in self.results if not r.killed),
            "clean": sum(1 for r in counted if r.clean),
            "dirty": sum(1 for r in counted if not r.clean),
            "dirty_uninjected": sum(1 for r in self.results if not r.killed and not r.clean),
            "by_provider": {p: sum(1 for r in counted if r.provider == p) for p in PROVIDERS},
            "by_target": {t: sum(1 for r in counted if r.target == t) for t in KILL_TARGETS},
            "orphans_killed": sum(1 for r in counted if r.orphan_killed),
            "seconds": self.seconds,
            "calibrations": self.calibrations,
            "unavailable": self.unavailable,
            "results": [{**asdict(r), "clean": r.clean, "replay": r.replay()} for r in self.results],
        }

    def write(self, path: Path) -> dict[str, Any]:
        data = self.summary()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
        return data


def headline(data: dict[str, Any]) -> str:
    """The one line CI prints last."""
    p, t = data["by_provider"], data["by_target"]
    # a dirty run that ended before its kill point fails the test too: the line must not hide it
    late = data["dirty_uninjected"]
    uninjected = f" + {late} dirty run(s) that finished before their kill point" if late else ""
    return (
        f"crash injection: {data['injections']} injections (libvirt {p['libvirt']}, vsphere {p['vsphere']}, "
        f"proxmox {p['proxmox']}; worker {t['worker']}, server {t['server']}) — "
        f"{data['clean']} clean, {data['dirty']} dirty{uninjected} ({data['seconds']:.0f}s, seed {data['seed']})"
    )
