"""`patchwave demo`: the main job — a real rollout on the Debian guest lab, on the embedded default.

**Lab demo** (the default; needs libvirtd + QEMU, see .ci/setup-lab.sh): ``lab up`` with three TCG
guests in a temporary state directory (the image and golden states come from the lab cache, built
on the first run), the update ``good`` (demo-app 1.1, which asks for a reboot) published to every
guest and ``breaking`` (1.2, drops ``/health``) to ``pw-lab-2`` only, then a run of
``patchwave_lab/configs/lab.toml`` on the embedded Temporal dev server (free loopback port) with in-process
workers: the hypervisor phase is report only (the lab host is this machine: connected, pending
updates listed read-only), then pw-lab-1 (canary, guest agent), then pw-lab-2 and pw-lab-3 (SSH,
host keys verified) are snapshotted, patched through apt, rebooted when the package asks, checked;
pw-lab-2 is rolled back automatically. :class:`DemoReport` says what happened per VM (from the fact
store and the guests themselves) and how long each stage took; ``lab down`` follows unless ``keep``.
The run's own status is printed as it is ("failed": one VM rolled back); ``patchwave demo`` exits 0
when the designed outcome happened (:attr:`DemoReport.as_expected`), else 1.

**Test-driver demo** (``testdriver=True``; fast, no QEMU): ``patchwave_lab/configs/testdriver.toml`` against
libvirt's test driver, whose domain ``test`` is a fake Debian root (``patchwave_lab.fakeguest``) patched
through the ``local`` channel (chroot). Both configurations ship in ``patchwave_lab/configs``.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.config.settings import Settings
from orchestrator.engine.runs import new_run_id
from orchestrator.facts.actions import Action, Phase
from orchestrator.facts.details import PatchDetail
from orchestrator.facts.store import open_store
from orchestrator.model import PackageChange, RunRequest, RunSummary, StepStatus
from orchestrator.operations import ProgressFn, load, run
from patchwave_lab.fakeguest import FakeGuest

CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG = CONFIGS / "testdriver.toml"
LAB_CONFIG = CONFIGS / "lab.toml"
#: The fake guest of the domain "test": what is installed, and what the fake repository offers.
INSTALLED = {"demo-app": "1.0.0", "openssl": "3.0.11-1~deb12u2", "tzdata": "2024a-0+deb12u1"}
AVAILABLE = {"demo-app": "1.0.1", "openssl": "3.0.15-1~deb12u1", "tzdata": "2025b-0+deb12u1"}
#: The lab demo: three guests; pw-lab-2 is offered the breaking update, the others the good one.
LAB_GUESTS = 3
BREAKING_GUEST = "pw-lab-2"
EXPECTED = {
    "pw-lab-1": StepStatus.SUCCEEDED,
    "pw-lab-2": StepStatus.ROLLED_BACK,
    "pw-lab-3": StepStatus.SUCCEEDED,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def on_free_port(settings: Settings) -> Settings:
    """The embedded dev server on a free loopback port: a server someone else runs is never shared."""
    return replace(settings, temporal=replace(settings.temporal, address=f"127.0.0.1:{free_port()}"))


# ---------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class DemoVm:
    name: str
    channel: str  # agent | ssh
    status: StepStatus
    changed: tuple[PackageChange, ...]  # str(): "demo-app 1.0->1.1"
    snapshot: str  # the registry state: kept | reverted | ...
    reboots: int  # reboot results recorded for the VM's step
    version: str  # demo-app as dpkg reports it in the guest now
    error: str = ""


@dataclass(frozen=True)
class DemoReport:
    summary: RunSummary
    state: Path
    stages: tuple[tuple[str, float], ...]  # (stage, seconds) in order
    vms: tuple[DemoVm, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()  # (host, what the report-only host step found)
    lab: bool = False
    kept: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def as_expected(self) -> bool:
        """The lab demo's designed outcome: pw-lab-2 rolled back to 1.0, the others patched and kept."""
        got = {vm.name: vm.status for vm in self.vms}
        return got == EXPECTED and all(
            (vm.snapshot, vm.version)
            == (("reverted", "1.0") if vm.name == BREAKING_GUEST else ("kept", "1.1"))
            for vm in self.vms
        )


class Stages:
    """Wall-clock seconds per stage, in order (printed by the CLI; also fed to ``echo`` live)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.done: list[tuple[str, float]] = []
        self._echo = echo

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._echo(f"demo: {name} ...")
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.done.append((name, seconds))
            self._echo(f"demo: {name}: {seconds:.1f}s")


# ---------------------------------------------------------------------------------- test driver


def prepare_guest(state: Path) -> Path:
    """Create the fake guest the test-driver config expects at ``<state>/guests/test``."""
    root = state / "guests" / "test"
    FakeGuest.create(root, installed=INSTALLED, repo=AVAILABLE)
    return root


async def run_demo(*, keep: bool, on_progress: ProgressFn, log_format: str = "") -> tuple[RunSummary, Path]:
    """The test-driver demo (``patchwave demo --testdriver``)."""
    state = Path(tempfile.mkdtemp(prefix="patchwave-demo-"))
    try:
        settings = on_free_port(load(CONFIG, state_dir=state, log_format=log_format))
        prepare_guest(state)
        request = RunRequest(run_id=new_run_id(), config_digest=settings.digest, requested_by="demo")
        summary = await run(settings, request, on_progress=on_progress)
    finally:
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
    return summary, state


# ---------------------------------------------------------------------------------- lab


async def run_lab_demo(
    *,
    keep: bool,
    on_progress: ProgressFn,
    log_format: str = "",
    echo: Callable[[str], None] = lambda line: None,
    state: Path | None = None,
) -> DemoReport:
    """``lab up`` -> publish -> a run of patchwave_lab/configs/lab.toml -> what happened -> ``lab down`` (unless ``keep``)."""
    from patchwave_lab import control as lab

    state = state or Path(tempfile.mkdtemp(prefix="patchwave-demo-lab-"))
    stages = Stages(echo)
    summary: RunSummary | None = None
    load(LAB_CONFIG, state_dir=state, log_format=log_format)  # logging configured before `lab up` logs
    try:
        with stages.stage(f"lab up ({LAB_GUESTS} guests; image and golden states from the lab cache)"):
            lab_state = await asyncio.to_thread(lab.up, state, LAB_GUESTS)
        timings = lab_state.timings
        echo(
            f"demo: lab: image {'built' if timings.get('image_build_s') else 'cached'} "
            f"({timings.get('image_s', 0):.1f}s), golden states created {timings.get('golden_created', 0)} "
            f"({timings.get('golden_s', 0):.1f}s)"
        )
        lab.publish(state, "good")
        lab.publish(state, "breaking", guest=BREAKING_GUEST)
        echo(
            f"demo: published demo-app 1.1 (good, asks for a reboot) to all, 1.2 (breaking) to {BREAKING_GUEST}"
        )
        settings = on_free_port(load(LAB_CONFIG, state_dir=state, log_format=log_format))
        request = RunRequest(run_id=new_run_id(), config_digest=settings.digest, requested_by="demo")
        with stages.stage(f"rollout {request.run_id} (patchwave_lab/configs/lab.toml, embedded Temporal)"):
            summary = await run(settings, request, on_progress=on_progress)
        with stages.stage("collect (fact store + dpkg-query in each guest)"):
            vms, hosts = await asyncio.to_thread(_collect, settings, summary, lab_state, lab)
    finally:
        if not keep:
            with stages.stage("lab down"):
                await asyncio.to_thread(lab.down, state)
            shutil.rmtree(state, ignore_errors=True)
    return DemoReport(
        summary=summary,
        state=state,
        stages=tuple(stages.done),
        vms=vms,
        hosts=hosts,
        lab=True,
        kept=keep,
    )


def _collect(
    settings: Settings, summary: RunSummary, lab_state: Any, lab: Any
) -> tuple[tuple[DemoVm, ...], tuple[tuple[str, str], ...]]:
    facts = open_store(settings)
    try:
        snapshots = {s.step_id: s.state for s in facts.snapshots(run_id=summary.run_id)}
        vms = []
        for outcome in summary.vms:
            history = facts.step_history(summary.run_id, outcome.step_id)
            results = [r for r in history if r.phase is Phase.RESULT and r.ok]
            changed: tuple[PackageChange, ...] = ()
            for record in results:
                if isinstance(record.detail, PatchDetail):
                    changed = record.detail.changes or changed
            reboots = sum(1 for r in results if r.action is Action.REBOOT)
            guest = lab_state.guest(outcome.vm.name)
            vms.append(
                DemoVm(
                    name=outcome.vm.name,
                    channel=settings.guests.access(outcome.vm.name, outcome.vm.site).channel,
                    status=outcome.status,
                    changed=changed,
                    snapshot=snapshots.get(outcome.step_id, ""),
                    reboots=reboots,
                    version=lab.installed_version(guest),
                    error=outcome.error,
                )
            )
        hosts = tuple((str(h.host), h.detail or h.error) for h in summary.hosts)
    finally:
        facts.close()
    return tuple(sorted(vms, key=lambda v: v.name)), hosts
