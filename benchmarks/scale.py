"""Rollouts of 1,000 / 10,000 / 50,000 VMs through real Temporal: makespan, CPU, memory, histories.

Each size runs in its own process (so peak RSS is its own): the embedded Temporal dev server (the
product's, SQLite file), the in-process workers, and the scale bed (tests/simulators/scalesim): every
VM's whole patch path runs for real through Temporal — baseline health, snapshot, patch (apt through
the instant guest agent, ``--upgrade-s`` seconds per upgrade), a reboot for every tenth VM (a kernel
came), verify, record, assess. Printed per size:

* makespan, and the lower bound the concurrency limits imply: ceil(N / C) x the simulated time per VM,
  C = min(wave concurrency, the site workers' activity slots) — the rest is orchestration;
* orchestration CPU per VM: the worker process's CPU (the simulated fleet's few microseconds per
  command included) and the Temporal server's;
* peak RSS (VmHWM) of the worker process (the simulated fleet's own memory shown apart) and of the server;
* per workflow type, from Temporal's own histories: executions, the longest history, the largest payload.

Absolute times on a shared 2-core machine are noisy: the load average is printed with each run.

    python benchmarks/scale.py                      # 1000,10000,50000
    python benchmarks/scale.py --vms 1000 --sites 2 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CEILING_EVENTS, CEILING_PAYLOAD = 10_000, 512 * 1024


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def one(args: argparse.Namespace, n: int) -> dict:
    from orchestrator.config.loader import load_settings
    from orchestrator.engine.runs import start_run, watch
    from orchestrator.engine.session import Session
    from orchestrator.engine.workers import activity_slots
    from orchestrator.logs import configure_logging
    from orchestrator.model import RunRequest
    from tests.simulators.scalesim import FleetShape, GuestTimes, ScaleFleet
    from tests.support.histories import run_histories
    from tests.support.loopback import unused_port
    from tests.support.scalebed import write_scale_bed

    base_kb = status_kb(os.getpid(), "VmRSS")
    fleet = ScaleFleet(
        FleetShape(vms=n, sites=args.sites, hosts_per_site=8, times=GuestTimes(upgrade_s=args.upgrade_s))
    )
    fleet_kb = status_kb(os.getpid(), "VmRSS") - base_kb
    root = Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=args.dir))
    bed = write_scale_bed(root, fleet, port=unused_port(), concurrency=args.concurrency)
    settings = load_settings(bed.config)
    configure_logging(settings.logging, secrets=settings.secrets)
    in_flight, polls = 0, 0

    def seen(progress) -> None:
        nonlocal in_flight, polls
        in_flight, polls = max(in_flight, len(progress.vms)), polls + 1

    async with Session(settings, opener=bed.opener) as session:
        server = session.engine.embedded_server.pid
        loads = [load()]
        started, worker0, server0 = time.monotonic(), cpu_s(os.getpid()), cpu_s(server)
        request = RunRequest(run_id=f"run-{n}", config_digest=settings.digest, requested_by="benchmark")
        summary = await watch(await start_run(session.client, request), seen, interval_s=5.0)
        makespan = time.monotonic() - started
        worker, server_cpu = cpu_s(os.getpid()) - worker0, cpu_s(server) - server0
        loads.append(load())
        histories = await run_histories(session.client, request.run_id)
        server_hwm = status_kb(server, "VmHWM")
    slots = min(args.concurrency, activity_slots(settings) * args.sites)
    bound = math.ceil(n / slots) * args.upgrade_s
    return {
        "vms": n, "status": summary.status, "counts": summary.counts, "makespan_s": round(makespan, 1),
        "lower_bound_s": round(bound, 1), "concurrency": slots, "upgrade_s": args.upgrade_s, "worker_cpu_ms_per_vm": round(worker / n * 1000, 1),
        "server_cpu_ms_per_vm": round(server_cpu / n * 1000, 1), "worker_peak_rss_mb": status_kb(os.getpid(), "VmHWM") // 1024,
        "fleet_rss_mb": fleet_kb // 1024, "server_peak_rss_mb": server_hwm // 1024, "max_in_flight_seen": in_flight,
        "load": loads, "histories": {
            k: {"executions": t.executions, "max_events": t.max_events,
                "avg_events": round(t.total_events / max(1, t.executions)), "max_payload_b": t.max_payload}
            for k, t in sorted(histories.types.items())
        },
    }  # fmt: skip


def report(result: dict) -> str:
    n, r = result["vms"], result
    ratio = r["makespan_s"] / max(1, r["lower_bound_s"])
    head = f"== {n:,} VMs: {r['status']} {r['counts']}  (load avg before / after: {' / '.join(r['load'])})"
    makespan = (
        f"makespan {r['makespan_s']:.0f} s; lower bound {r['lower_bound_s']:.0f} s "
        f"(ceil({n} / {r['concurrency']}) x {r['upgrade_s']} s upgrade) -> {ratio:.1f}x the bound"
    )
    cpu = f"orchestration CPU per VM: worker {r['worker_cpu_ms_per_vm']} ms, Temporal server {r['server_cpu_ms_per_vm']} ms"
    rss = (
        f"peak RSS: worker {r['worker_peak_rss_mb']} MB (the simulated fleet's {r['fleet_rss_mb']} MB included), "
        f"server {r['server_peak_rss_mb']} MB; most VMs in flight in `progress`: {r['max_in_flight_seen']}"
    )
    table = f"{'workflow type':<12} {'executions':>10} {'max events':>10} {'avg events':>10} {'largest payload':>16}"
    lines = [head, makespan, cpu, rss, table]
    for kind, t in result["histories"].items():
        lines.append(f"{kind:<12} {t['executions']:>10} {t['max_events']:>10} {t['avg_events']:>10} "
                     f"{t['max_payload_b'] / 1024:>13.1f} KB")  # fmt: skip
    worst_events = max(t["max_events"] for t in result["histories"].values())
    worst_payload = max(t["max_payload_b"] for t in result["histories"].values())
    ok = worst_events <= CEILING_EVENTS and worst_payload <= CEILING_PAYLOAD
    lines.append(f"ceilings (10,000 events, 512 KB): {'kept' if ok else 'EXCEEDED'} "
                 f"(max {worst_events} events, {worst_payload / 1024:.1f} KB)")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", default="1000,10000,50000", help="comma-separated fleet sizes")
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument(
        "--concurrency", type=int, default=64, help="the waves' concurrency ([policy] concurrency)"
    )
    parser.add_argument(
        "--upgrade-s", type=float, default=1.0, help="simulated duration of one guest's upgrade"
    )
    parser.add_argument("--dir", default=None, help="where the state directories go (default: the temp dir)")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(asyncio.run(one(args, args.one))))
        return
    print(f"scale benchmark: {args.sites} sites, wave concurrency {args.concurrency}, upgrade {args.upgrade_s} s, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    for n in (int(v) for v in args.vms.split(",")):
        argv = [sys.executable, __file__, "--one", str(n), "--sites", str(args.sites), "--concurrency",
                str(args.concurrency), "--upgrade-s", str(args.upgrade_s)]  # fmt: skip
        if args.dir:
            argv += ["--dir", args.dir]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"== {n:,} VMs: failed (exit {done.returncode})\n{done.stderr[-3000:]}", flush=True)
            continue
        print(report(json.loads(done.stdout.strip().splitlines()[-1])), flush=True)


if __name__ == "__main__":
    main()
