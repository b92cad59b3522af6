"""Guest transaction integrity on the real Debian lab: a patch is done only when apt/dpkg are done
and consistent. Real guests (libvirt/QEMU TCG), real apt, the orchestrator on the embedded Temporal.

One lab (two guests: pw-lab-1 through the guest agent, pw-lab-2 through SSH, one ring so both are
patched at once) for three scenarios, in this order (each leaves both guests at demo-app 1.0 or
patched, never half-done):

1. ``slow`` (postinst sleeps 60 s) with ``patch_timeout = "30s"``: both VMs ROLLED_BACK with "patch
   timed out after 30 s"; afterwards no apt/dpkg process, ``dpkg --audit`` empty,
   ``/var/lib/dpkg/updates`` empty, demo-app 1.0 and healthy.
2. ``no-return`` (its postinst masks qemu-guest-agent and ssh for the next boot) with
   ``reboot_timeout = "60s"``: the guests do not come back from their reboot; both are reverted
   within a bounded time and healthy again.
3. ``slow`` with a long patch timeout, ``patchwave run`` killed with SIGKILL while apt runs in both
   guests, then ``patchwave resume``: it waits for apt, reports the real change (1.0 -> 1.3, not
   "0 changed") and the reboot it asks for; the guests are consistent.

Needs libvirtd (qemu:///system) and the lab packages (.ci/setup-libvirt.sh, .ci/setup-lab.sh). Run
under ``flock /tmp/patchwave-lab.lock`` when the lab is shared. Timings are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.details import PatchDetail, PatchIntent
from orchestrator.model import PackageChange, RunRequest, RunSummary, StepStatus, VmOutcome
from patchwave_lab import control as lab
from patchwave_lab.state import LabGuest, LabState
from providers.errors import ProviderError
from providers.timing import wait_until
from tests.support.loopback import unused_port
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

LAB_CONFIG = REPO / "patchwave_lab" / "configs" / "lab.toml"
GUESTS = ("pw-lab-1", "pw-lab-2")
#: What is left in a guest after a patch: package-manager processes, dpkg's audit, its journal, demo-app.
GUEST_STATE = (
    'for p in /proc/[0-9]*; do read -r c 2>/dev/null < "$p/comm" || continue; case $c in apt|apt-get|dpkg)'
    ' echo "process $c";; esac; done; echo "audit: $(dpkg --audit | tr "\\n" " ")";'
    ' echo "updates: $(ls -A /var/lib/dpkg/updates | wc -l)";'
    " echo \"demo-app: $(dpkg-query -W -f '${db:Status-Abbrev}${Version}' demo-app)\""
)
#: A run finished or it is a failure: generous bounds for the CI machine, not timings.
RUN_BOUND_S = 420.0


@dataclass(frozen=True)
class GuestState:
    processes: tuple[str, ...]
    audit: str
    pending_updates: int
    demo_app: str  # "ii 1.0"

    @property
    def consistent(self) -> bool:
        return not self.processes and not self.audit and self.pending_updates == 0


def guest_state(guest: LabGuest) -> GuestState:
    code, out = lab.ssh_run(guest, GUEST_STATE, timeout=60)
    assert code == 0, out
    fields = dict(line.partition(": ")[::2] for line in out.splitlines() if ": " in line)
    processes = tuple(line.split()[1] for line in out.splitlines() if line.startswith("process "))
    return GuestState(processes, fields["audit"].strip(), int(fields["updates"]), fields["demo-app"].strip())


def _timing(what: str, started: float) -> float:
    took = time.monotonic() - started
    print(f"\n[lab integrity timing] {what}: {took:.1f}s")
    return took


def config_text(state_dir: Path, port: int, *, policy: str) -> str:
    """lab.toml with one ring for both guests, no host phase and ``policy`` lines in [policy]."""
    text = LAB_CONFIG.read_text()
    head, _, rest = text.partition("[[groups]]")
    _, _, tail = rest.partition("[policy]\n")
    for key in re.findall(r"^(\w+) = ", policy, flags=re.MULTILINE):
        tail = re.sub(rf"^{key} = .*\n", "", tail, count=1, flags=re.MULTILINE)  # lab.toml's value goes
    text = head + '[rings]\norder = ["main"]\n[rings.main]\nsoak = "0s"\n\n[policy]\n' + policy + "\n" + tail
    text = text.replace('dir = "~/.local/state/patchwave"', f'dir = "{state_dir}"')
    text = text.replace('address = "127.0.0.1:7233"', f'address = "127.0.0.1:{port}"')
    return re.sub(
        r"(?ms)^\[hosts\]\n.*?(?=^\[guests\])", '[hosts]\nenabled = false\npatch = "none"\n\n', text
    )


def write_config(state: LabState, name: str, *, policy: str) -> Path:
    """A config in a state dir of its own (fact store, Temporal's database: a run left behind by one
    scenario never blocks the next), which reaches the lab's guests through the lab's overrides."""
    own = Path(state.state_dir) / name
    (own / "lab").mkdir(parents=True)
    shutil.copy(Path(state.state_dir) / "lab" / "guests.toml", own / "lab" / "guests.toml")
    path = own / "patchwave.toml"
    path.write_text(config_text(own, unused_port(), policy=policy))
    return path


def run_in_process(config: Path, run_id: str) -> RunSummary:
    settings = load_settings(config)

    async def go() -> RunSummary:
        async with Session(settings) as running:
            handle = await start_run(running.client, RunRequest(run_id, settings.digest, requested_by="e2e"))
            return await watch(handle, lambda progress: None, interval_s=1.0)

    return asyncio.run(asyncio.wait_for(go(), RUN_BOUND_S))


def vm(summary: RunSummary, name: str) -> VmOutcome:
    return next(o for o in summary.vms if o.vm.name == name)


@pytest.fixture(scope="module")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state_dir = tmp_path_factory.mktemp("lab-integrity")
    started = time.monotonic()
    state = lab.up(state_dir, guests=len(GUESTS))
    _timing("lab up (2 guests)", started)
    try:
        yield state
    finally:
        started = time.monotonic()
        lab.down(state_dir)
        _timing("lab down", started)


# ------------------------------------------------------------------------------------------ 1


def test_a_patch_that_outlives_patch_timeout_is_reverted_and_dpkg_left_consistent(
    lab_state: LabState,
) -> None:
    lab.publish(Path(lab_state.state_dir), "slow")
    config = write_config(lab_state, "timeout", policy='patch_timeout = "30s"\nfailure_budget = 2')
    started = time.monotonic()
    summary = run_in_process(config, "run-integrity-timeout")
    _timing("slow update, patch_timeout 30s (2 guests)", started)
    for name in GUESTS:
        outcome = vm(summary, name)
        assert outcome.status is StepStatus.ROLLED_BACK, (name, outcome.status, outcome.error)
        assert outcome.error.startswith("patch timed out after 30 s; reverted to snapshot "), outcome.error
        assert outcome.error.endswith("; healthy again"), outcome.error
        guest = lab_state.guest(name)
        state = guest_state(guest)
        assert state.consistent, (name, state)
        assert state.demo_app == "ii 1.0", (name, state)
        assert lab.health_ok(guest)


# ------------------------------------------------------------------------------------------ 2


def test_a_guest_that_does_not_come_back_from_its_reboot_is_reverted_in_bounded_time(
    lab_state: LabState,
) -> None:
    lab.publish(Path(lab_state.state_dir), "no-return")
    policy = 'reboot_timeout = "60s"\nhealth_deadline = "60s"\nfailure_budget = 2'
    config = write_config(lab_state, "no-return", policy=policy)
    started = time.monotonic()
    summary = run_in_process(config, "run-integrity-no-return")
    _timing("no-return update, reboot_timeout 60s (2 guests)", started)  # printed, never asserted
    for name in GUESTS:
        outcome = vm(summary, name)
        assert outcome.status is StepStatus.ROLLED_BACK, (name, outcome.status, outcome.error)
        assert "no new boot id within 60 s of the reboot" in outcome.error, outcome.error
        assert outcome.error.startswith("rebooted at "), outcome.error
        assert outcome.error.endswith("; healthy again"), outcome.error
        guest = lab_state.guest(name)
        assert guest_state(guest).demo_app == "ii 1.0"
        assert lab.ssh_answers(guest) and lab.health_ok(guest)


# ------------------------------------------------------------------------------------------ 3


def patchwave(config: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATCHWAVE_RECOVERY_S": "5"}
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "-c", str(config), "--log-format", "json", *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def apt_running(guest: LabGuest) -> bool:
    """dpkg runs in ``guest`` (demo-app's postinst sleeps under it); False when the guest is too busy to say."""
    try:
        return lab.ssh_run(guest, "pgrep -x dpkg", timeout=60)[0] == 0
    except ProviderError:
        return False


def test_resume_after_kill_9_mid_upgrade_waits_for_apt_and_reports_the_real_change(
    lab_state: LabState,
) -> None:
    from orchestrator.facts.store import FactStore

    run_id = "run-integrity-resume"
    lab.publish(Path(lab_state.state_dir), "slow")
    config = write_config(lab_state, "resume", policy='patch_timeout = "10m"\nfailure_budget = 2')
    log = config.parent / "patchwave.log"
    started = time.monotonic()
    proc = patchwave(config, log, "run", "--run-id", run_id)
    try:
        wait_until(
            lambda: all(apt_running(lab_state.guest(n)) for n in GUESTS) or proc.poll() is not None,
            timeout=RUN_BOUND_S, interval=1.0, what="apt running in both guests",
        )  # fmt: skip
        assert proc.poll() is None, log.read_text()[-3000:]
        _timing("run until apt runs in both guests (then kill -9)", started)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(apt_running(lab_state.guest(n)) for n in GUESTS), "the kill must not stop apt"
    resumed = time.monotonic()
    resume = patchwave(config, log, "resume", run_id)
    try:
        code = resume.wait(timeout=RUN_BOUND_S)
    finally:
        if resume.poll() is None:
            resume.kill()
    _timing("resume (waits for apt, reboots, verifies)", resumed)
    assert code == 0, log.read_text()[-4000:]
    store = FactStore(config.parent / "facts.db")
    try:
        for name in GUESTS:
            check_resumed_guest(store, run_id, lab_state.guest(name))
    finally:
        store.close()


def check_resumed_guest(store, run_id: str, guest: LabGuest) -> None:
    outcome = next(o for o in store.outcomes(run_id) if o.vm.name == guest.name)
    assert outcome.status is StepStatus.SUCCEEDED, (guest.name, outcome.status, outcome.error)
    assert outcome.packages_changed == 1 and outcome.rebooted, outcome
    history = store.step_history(run_id, outcome.step_id)
    intents = [r for r in history if r.action == "patch" and r.phase == "intent"]
    assert len(intents) == 1 and isinstance(intents[0].detail, PatchIntent), intents  # one apply
    assert intents[0].detail.planned == {"demo-app": "1.3"}
    result = [r for r in history if r.action == "patch" and r.phase == "result"][-1]
    assert isinstance(result.detail, PatchDetail), result
    assert result.detail.changes == (PackageChange("demo-app", "1.0", "1.3"),)
    assert result.detail.reboot_required
    state = guest_state(guest)
    assert state.consistent and state.demo_app == "ii 1.3", (guest.name, state)
    assert lab.health_ok(guest)
