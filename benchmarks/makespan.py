"""Makespan of rollouts on our vCenter simulator vs the lower bound the concurrency limits set.

Each measurement is one real ``PatchRun`` on the embedded Temporal dev server against the vcsim
launcher (tests/simulators/vcsim) with N VMs: every VM is snapshotted in vSphere, patched through the
``local`` channel into a fake Debian guest (patchwave_lab.fakeguest) whose apt-get takes ``--step-s``
seconds (the simulated step), health-checked, recorded; no reboots, no host phase. The lower bound is
ceil(N / C) x step: C VMs at a time, each taking the step, nothing else. The ratio makespan / bound is
the orchestration's overhead per VM (round trips to Temporal, platform calls, guest commands).

Configurations run interleaved (every size and concurrency once, then again, ``--repeat`` times), so
a slow moment of the machine does not land on one configuration only; each line is one run, the last
lines the median ratio per configuration. The load average is printed with each run. ``--breakdown``
adds CPU per VM by process, each activity's mean duration and how the wave's slots were used
(:func:`slot_use`: before the first patch, in the slot, idle at batch ends and elsewhere).

    python benchmarks/makespan.py                               # 20,100,500 VMs x C=10,20, step 5 s
    python benchmarks/makespan.py --vms 500 --concurrency 20 --repeat 3
    python benchmarks/makespan.py --vms 100 --concurrency 20 --breakdown   # where the time goes
    python benchmarks/makespan.py --vms 500 --concurrency 20 --prepare-ahead 0,20  # [policy] prepare_ahead
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD_ENV = "PW_BENCH_VCSIM_PASSWORD"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def config_text(root: Path, table: dict, guests: dict, *, concurrency: int, port: int, ahead: int = 0) -> str:
    from tests.support.testbed import fake_guest_tables

    tail = fake_guest_tables({name: g.root for name, g in guests.items()}, health_timeout="10s")
    return f"""
[state]
dir = "{root / "state"}"
[temporal]
mode = "embedded"
address = "127.0.0.1:{port}"
[logging]
format = "json"
level = "warning"
[providers.vc]
kind = "vsphere"
host = "{table["host"]}"
port = {table["port"]}
user = "{table["user"]}"
password = {{ env = "{PASSWORD_ENV}" }}
ca_file = "{table["ca_file"]}"
task_timeout = "5m"
[targets]
names = {sorted(guests)!r}
[policy]
concurrency = {concurrency}
prepare_ahead = {ahead}
failure_budget = 0
reboot = "never"
snapshot_ttl = "2h"
health_deadline = "30s"
patch_timeout = "10m"
default_vm_duration = "1m"
[hosts]
enabled = false
{tail}""".replace("'", '"')


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far (user + system) of: this process (the worker, its workflows and activities),
    its reaped children (the guests' commands), the Temporal dev server and the vCenter simulator."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    found = {"worker": own.ru_utime + own.ru_stime, "guest commands": children.ru_utime + children.ru_stime,
             "temporal server": 0.0, "vcsim": 0.0}  # fmt: skip
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        name = {"temporal": "temporal server", "vcsim": "vcsim"}.get(comm)
        if name:
            found[name] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return found


async def breakdown(client: Client, run_id: str, n: int, cpu: dict[str, float]) -> dict:
    """Where the time went: CPU seconds per VM by process, and per VM the mean seconds each activity
    took from scheduled to completed (Temporal's own histories)."""
    from tests.support.histories import run_histories

    found = await run_histories(client, run_id)
    per_activity = {
        name: round(found.activity_s[name] / count, 3) for name, count in found.activities.items()
    }
    return {"cpu_s_per_vm": {k: round(v / n, 3) for k, v in cpu.items()},
            "activity_s_mean": dict(sorted(per_activity.items())), "activities_per_vm":
            round(sum(found.activities.values()) / n, 1)}  # fmt: skip


async def slot_use(client: Client, run_id: str, concurrency: int, step_s: float) -> dict:
    """How the wave's C concurrency slots were used (the benchmark's plan is one wave), from Temporal's
    histories: a VM holds a slot from its ``vm_patch`` start to its ``vm_verify_health`` end. In
    seconds of makespan (idle slot-seconds / C), adding up to the makespan: before the first patch
    (discovery, planning, the first VMs' preparation); the slot time per VM and its excess over the
    step (the work inside the slot); the slots left idle around each batch's end (from the batch's
    last patch start until the next batch fills every slot: its last VMs drain one by one, the next
    batch starts and prepares its first VMs); as the last batch drains; elsewhere (from one VM to the
    next in a slot); after the last verification (recording, assessing, cleanup, the run's end). And
    ``most_in_slots``: the most VMs between patch start and verification end at once (at most C)."""
    from tests.support.histories import slot_spans

    found = await slot_spans(client, run_id)
    started_at, ended_at, batches = found.run_started, found.run_ended, found.batches
    spans = [span for batch in batches for span in batch]
    if not spans:
        return {}
    first, last = spans[0][0], max(end for _, end in spans)
    moments = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])

    def idle(lo: float, hi: float) -> float:  # slot-seconds idle in [lo, hi]
        busy, at, total = 0, lo, 0.0
        for t, change in moments:
            if t > lo:
                total += max(0.0, concurrency - busy) * (min(t, hi) - at)
                at = min(t, hi)
            if t >= hi:
                break
            busy += change
        return total + max(0.0, concurrency - busy) * (hi - at)

    most = found.most_at_once()
    boundary = 0.0
    for done, following in itertools.pairwise(batches):
        filled = following[min(concurrency, len(following)) - 1][0]  # its C-th patch start
        boundary += idle(done[-1][0], filled) if filled > done[-1][0] else 0.0  # handed over: none
    total, drain = idle(first, last), idle(batches[-1][-1][0], last)
    return {"before_first_patch_s": round(first - started_at, 1),
            "slot_s_per_vm": round(statistics.mean(b - a for a, b in spans), 3),
            "over_step_in_slot_s": round(statistics.mean(b - a for a, b in spans) - step_s, 3),
            "most_in_slots": most, "batches": len(batches), "idle_at_batch_ends_s": round(boundary / concurrency, 1),
            "final_drain_s": round(drain / concurrency, 1),
            "idle_elsewhere_s": round((total - boundary - drain) / concurrency, 1),
            "after_last_verify_s": round(ended_at - last, 1)}  # fmt: skip


async def one(
    n: int, concurrency: int, step_s: float, workdir: Path, *, ahead: int = 0, explain: bool = False
) -> dict:
    from orchestrator.config.loader import load_settings
    from orchestrator.engine.runs import start_run, watch
    from orchestrator.engine.session import Session
    from orchestrator.logs import configure_logging
    from orchestrator.model import RunRequest
    from patchwave_lab.fakeguest import FakeGuest
    from tests.simulators.vcsim.launcher import start
    from tests.support.loopback import unused_port
    from tests.support.testbed import INSTALLED, UPGRADES

    root = Path(tempfile.mkdtemp(prefix=f"makespan-{n}-{concurrency}-", dir=workdir))
    sim = start("-host", "4", "-vm", str(n))
    try:
        names = [f"DC0_C0_RP0_VM{i}" for i in range(n)]
        guests = {
            name: FakeGuest.create(root / "guests" / name, installed=INSTALLED, repo=UPGRADES)
            for name in names
        }
        for guest in guests.values():
            guest.linger_after_apply(step_s)  # the simulated step: apt-get takes step_s
        config = root / "patchwave.toml"
        table = sim.provider_table()
        config.write_text(
            config_text(root, table, guests, concurrency=concurrency, port=unused_port(), ahead=ahead)
        )
        settings = load_settings(config, environ={PASSWORD_ENV: sim.password})
        configure_logging(settings.logging, secrets=settings.secrets)
        before = load()
        async with Session(settings) as session:
            request = RunRequest(
                run_id=f"run-{n}-{concurrency}", config_digest=settings.digest, requested_by="benchmark"
            )
            cpu_before = cpu_seconds()
            started = time.monotonic()
            summary = await watch(await start_run(session.client, request), lambda _p: None, interval_s=1.0)
            makespan = time.monotonic() - started
            cpu = {k: v - cpu_before[k] for k, v in cpu_seconds().items()}
            explained = await breakdown(session.client, request.run_id, n, cpu) if explain else None
            if explained is not None:
                explained["slots"] = await slot_use(session.client, request.run_id, concurrency, step_s)
        bound = math.ceil(n / concurrency) * step_s
        patched_once = all(g.upgrades() == 1 for g in guests.values())
        return {"vms": n, "concurrency": concurrency, "ahead": ahead, "step_s": step_s, "status": summary.status,
                "counts": summary.counts, "patched_once": patched_once, "makespan_s": round(makespan, 1),
                "bound_s": round(bound, 1), "ratio": round(makespan / bound, 3), "load": [before, load()],
                "breakdown": explained}  # fmt: skip
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", default="20,100,500", help="comma-separated fleet sizes")
    parser.add_argument("--concurrency", default="10,20", help="comma-separated wave concurrencies")
    parser.add_argument("--step-s", type=float, default=5.0, help="simulated duration of one VM's patch")
    parser.add_argument("--prepare-ahead", default="0",
                        help="comma-separated [policy] prepare_ahead values (VMs prepared ahead of the slots)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every configuration, interleaved")
    parser.add_argument("--dir", default=None, help="where the beds go (default: the temp dir)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print CPU per VM by process and each activity's mean duration")  # fmt: skip
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    if args.one:
        n, c, a = (int(v) for v in args.one.split(":"))
        print(json.dumps(asyncio.run(one(n, c, args.step_s, workdir, ahead=a, explain=args.breakdown))))
        return
    configs = list(
        itertools.product(
            (int(v) for v in args.vms.split(",")),
            (int(v) for v in args.concurrency.split(",")),
            (int(v) for v in args.prepare_ahead.split(",")),
        )
    )
    print(f"makespan benchmark on vcsim: step {args.step_s} s per VM, {args.repeat} round(s), interleaved")
    ratios: dict[tuple[int, int, int], list[float]] = {}
    for _round in range(args.repeat):
        for n, c, a in configs:
            argv = [
                sys.executable,
                __file__,
                "--one",
                f"{n}:{c}:{a}",
                "--step-s",
                str(args.step_s),
                "--dir",
                str(workdir),
                *(["--breakdown"] if args.breakdown else []),
            ]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(
                    f"{n:>4} VMs C={c:<3} ahead={a:<3} failed (exit {done.returncode})\n{done.stderr[-3000:]}",
                    flush=True,
                )
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            ratios.setdefault((n, c, a), []).append(r["ratio"])
            print(f"{n:>4} VMs C={c:<3} ahead={a:<3} {r['status']:<9} makespan {r['makespan_s']:>7.1f} s  bound {r['bound_s']:>6.1f} s"
                  f"  ratio {r['ratio']:.2f}x  patched once: {r['patched_once']}  load {' -> '.join(r['load'])}",
                  flush=True)  # fmt: skip
            if r["breakdown"]:
                print(f"    {json.dumps(r['breakdown'])}", flush=True)
    print("median ratio to the bound:")
    for (n, c, a), found in ratios.items():
        print(f"  {n:>4} VMs C={c:<3} ahead={a:<3} {statistics.median(found):.2f}x  ({len(found)} run(s))")


if __name__ == "__main__":
    main()
