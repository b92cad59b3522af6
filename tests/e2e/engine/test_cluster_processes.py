"""A cluster of processes, as on separate machines: an external Temporal dev server, one PostgreSQL
fact store, a central worker (``serve --central``) and two site workers (``serve --site east``,
``serve --site west``), each in a mount namespace of its own with a private tmpfs over the state
directory — separate disks, so nothing can be shared through a local file.

A rollout over the two sites (two PVE simulators, two fake Debian guests each, reached through the
``local`` channel) runs while the east worker is SIGKILLed in the middle of patching ``east/web-1``
(its apt-get has installed and lingers; the detached job outlives the worker) and started again on a
fresh, empty disk. Then:

* the run finishes, every VM patched and healthy, and no guest was patched twice (one apply each);
* ``patchwave rollback RUN`` (the CLI, from this process) finds every snapshot — both sites' — in the
  shared store and reverts all four VMs;
* ``patchwave doctor`` finds nothing left over.

The workers run with ``PATCHWAVE_RECOVERY_S=5`` (activity heartbeats), so the killed worker's
activity is retried by its successor within seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.binaries import temporal_binary
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.server import DevServer, DevServerSpec
from orchestrator.engine.session import Session
from orchestrator.facts.actions import Action
from orchestrator.model import RunRequest, StepStatus
from patchwave_lab.fakeguest import FakeGuest
from tests.simulators.pvesim import ROOT_PASSWORD, SimConfig, Simulator
from tests.simulators.pvesim.harness import FAST
from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.postgres import fresh_schema, server_or_skip
from tests.support.snapshot_disks import SnapshotDisks
from tests.support.testbed import INSTALLED, UPGRADES, fake_guest_tables

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD_ENV = "PW_TEST_PVE_PASSWORD"
SITES = ("east", "west")
VMS = ("web-1", "db-1")  # on each site's simulator
RUN = "run-cluster-procs"
VICTIM = ("east", "web-1")
#: Deadlines for waiting on processes (not assertions on durations).
DEADLINE_S = 300.0


@dataclass
class Cluster:
    root: Path
    config: Path
    sims: dict[str, Simulator]
    guests: dict[tuple[str, str], FakeGuest]
    disks: dict[str, SnapshotDisks]
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            PASSWORD_ENV: ROOT_PASSWORD,
            "PATCHWAVE_RECOVERY_S": "5",
        }

    def start_worker(self, name: str, *role: str) -> None:
        """``patchwave serve ROLE`` in a new mount namespace whose state directory is a fresh tmpfs."""
        self.state.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "-c",
            str(self.config),
            "--log-format",
            "json",
            "serve",
            *role,
        ]
        script = f'mount -t tmpfs -o size=64m pw-{name} "{self.state}" && exec "$@"'
        log = open(self.root / f"worker-{name}.log", "a")  # noqa: SIM115 - the process owns it
        self.workers[name] = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv],
            cwd=REPO, env=self.env(), stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        log.close()

    def log(self, name: str) -> str:
        path = self.root / f"worker-{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "orchestrator.cli", "-c", str(self.config), *args]
        return subprocess.run(
            argv, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=DEADLINE_S, check=False
        )

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def config_text(cluster: Cluster, *, address: str, facts_url: str, password_file: Path) -> str:
    fast = "\n".join(f"{k} = {v}" for k, v in FAST.items())
    providers = "".join(
        f'[providers.{site}]\nkind = "proxmox"\nhost = "127.0.0.1"\nport = {sim.port}\nuser = "root@pam"\n'
        f'password = {{ env = "{PASSWORD_ENV}" }}\nca_file = "{sim.ca_file}"\n{fast}\n'
        for site, sim in cluster.sims.items()
    )
    guests = fake_guest_tables({f"{site}/{name}": g.root for (site, name), g in cluster.guests.items()})
    return f"""
[state]
dir = "{cluster.state}"
[temporal]
mode = "external"
address = "{address}"
[facts]
url = "{facts_url}"
password = {{ file = "{password_file}" }}
[logging]
format = "json"
{providers}
[targets]
names = {list(VMS)!r}
[policy]
concurrency = 2
failure_budget = 0
snapshot_ttl = "2h"
health_deadline = "3s"
patch_timeout = "5m"
default_vm_duration = "1m"
[hosts]
enabled = false
{guests}""".replace("'", '"')


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    server = server_or_skip()
    with (
        fresh_schema(server) as schema,
        Simulator(SimConfig(task_duration=0.02), ssh=False) as east,
        Simulator(SimConfig(task_duration=0.02), ssh=False) as west,
    ):
        sims = {"east": east, "west": west}
        guests = {
            (site, name): FakeGuest.create(
                tmp_path / "guests" / site / name, installed=INSTALLED, repo=UPGRADES
            )
            for site in SITES
            for name in VMS
        }
        disks = {site: SnapshotDisks({n: guests[(site, n)] for n in VMS}) for site in SITES}
        for site, sim in sims.items():
            sim.cluster.listeners.append(disks[site].pvesim_listener())
        made = Cluster(tmp_path, tmp_path / "patchwave.toml", sims, guests, disks)
        address = f"127.0.0.1:{unused_port()}"
        made.config.write_text(
            config_text(
                made, address=address, facts_url=server.in_schema(schema), password_file=server.password_file
            )
        )
        try:
            yield made
        finally:
            made.stop()


def _wait(what: str, predicate, cluster: Cluster) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        dead = {n: p.returncode for n, p in cluster.workers.items() if p.poll() is not None}
        if dead:
            pytest.fail(f"worker(s) exited {dead} before {what}:\n" + "\n".join(cluster.log(n) for n in dead))
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


async def test_a_site_worker_killed_mid_patch_and_restarted_on_a_fresh_disk_patches_nothing_twice(
    cluster: Cluster,
) -> None:
    settings = load_settings(cluster.config, environ={PASSWORD_ENV: ROOT_PASSWORD})
    spec = DevServerSpec(binary=temporal_binary(), db_file=cluster.root / "temporal" / "temporal.db",
                         address=settings.temporal.address, log_file=cluster.root / "temporal.log")  # fmt: skip
    spec.db_file.parent.mkdir(parents=True)
    server = DevServer(spec)
    await server.start()
    try:
        cluster.start_worker("central", "--central")
        for site in SITES:
            cluster.start_worker(site, "--site", site)
        victim = cluster.guests[VICTIM]
        victim.linger_after_apply(600)  # installed, not yet reported: the worst moment to die

        async with Session(settings, worker=False) as running:
            assert running.facts is not None and running.facts.engine == "postgresql"
            handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
            await asyncio.to_thread(
                _wait, "east/web-1's upgrade to be installed", lambda: len(victim.patches()) == 2, cluster
            )
            killed = cluster.workers["east"]
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
            victim.stop_lingering()  # the detached job finishes on its own, as dpkg would
            cluster.start_worker("east", "--site", "east")  # a new process, an empty disk

            summary = await watch(handle, lambda _p: None, interval_s=0.5)
            outcomes = {(o.vm.site, o.vm.name): o for o in summary.vms}
            assert {k: o.status for k, o in outcomes.items()} == {
                (site, name): StepStatus.SUCCEEDED for site in SITES for name in VMS
            }, [(o.vm, o.error) for o in summary.vms]
            for key, guest in cluster.guests.items():
                assert guest.upgrades() == 1, key  # patched once, also the one whose worker died
                assert guest.installed() == UPGRADES, key
            # every site's snapshot intent and result is in the one shared store
            records = {(r.vm.site, r.vm.name): r for r in running.facts.snapshots(run_id=RUN)}
            assert {k: r.state for k, r in records.items()} == dict.fromkeys(outcomes, "kept")
            victim_step = outcomes[VICTIM].step_id
            patches = [r for r in running.facts.step_history(RUN, victim_step, action=Action.PATCH)]
            assert [r.phase for r in patches].count("intent") == 1, patches  # one install, never restarted

        rolled = cluster.cli("--log-format", "json", "rollback", RUN)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        for site in SITES:
            reverted = sorted(name for name, _snapshot in cluster.disks[site].reverts)
            assert reverted == sorted(VMS), (site, cluster.disks[site].reverts)
        assert all(g.installed() == INSTALLED for g in cluster.guests.values())

        assert not list(cluster.state.rglob("*.db")), "no SQLite file: every process used the shared store"
        doctor = cluster.cli("doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "leftovers of runs that are no longer running: 0" in doctor.stdout
    finally:
        cluster.stop()
        await server.stop()
