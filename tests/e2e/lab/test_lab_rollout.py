"""A real rollout through the orchestrator on the Debian guest lab: the embedded Temporal dev server,
the real activities and three libvirt/QEMU (TCG) guests patched through apt.

One lab and one run for the whole module (``patchwave_lab/configs/lab.toml``, the configuration `patchwave demo`
uses): demo-app 1.1 (good; its postinst asks for a reboot) is published to every guest, 1.2
(breaking: ``/health`` answers 404) to pw-lab-2 only. pw-lab-1 is the canary, reached through the
guest agent; pw-lab-2 and pw-lab-3 through SSH with their host keys checked against the lab's
known_hosts (no trust on first use). While the run goes, pw-lab-3's dpkg frontend lock is held by
another process (a POSIX record lock, the kind apt takes) until apt is seen waiting behind it.

The tests read what the run left behind: the fact store, libvirt's snapshots, ``dpkg-query`` and
``/health`` in the guests, and wtmp's boot records. Needs libvirtd (qemu:///system) and the lab
packages (.ci/setup-libvirt.sh, .ci/setup-lab.sh). Timings are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.engine.runs import start_run, watch
from orchestrator.engine.session import Session
from orchestrator.facts.details import PatchDetail, RebootDetail
from orchestrator.guests.ssh import SshChannel
from orchestrator.model import HostOutcome, RunRequest, RunSummary, StepStatus, VmOutcome
from patchwave_lab import control as lab
from patchwave_lab import domain
from patchwave_lab.state import LabGuest, LabState
from providers.timing import wait_until
from tests.support.loopback import unused_port
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

CONFIG = REPO / "patchwave_lab" / "configs" / "lab.toml"
RUN = "run-lab-rollout"
BREAKING = "pw-lab-2"
LOCKED = "pw-lab-3"
RELEASE = "/run/pw-release-dpkg-lock"
# Holds dpkg's frontend lock the way apt takes it (fcntl F_SETLK; `flock(1)` would not block apt)
# until RELEASE exists (at most 10 minutes), then logs "released".
HOLD_DPKG_LOCK = (
    f"rm -f {RELEASE}; nohup perl -MFcntl -e '"
    '$| = 1; open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die "open: $!"; '
    'my $lock = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0); '
    'fcntl($f, F_SETLK, $lock) or die "lock: $!"; print "locked\\n"; '
    f'for (1 .. 3000) {{ last if -e "{RELEASE}"; select(undef, undef, undef, 0.2) }} print "released\\n"'
    "' >/tmp/dpkg-lock-holder.log 2>&1 &\n"
    "for i in $(seq 50); do grep -q locked /tmp/dpkg-lock-holder.log && break; sleep 0.1; done\n"
    "cat /tmp/dpkg-lock-holder.log"
)
# apt's install is running and demo-app is still 1.0: apt is waiting behind the held lock.
APT_WAITING = "pgrep -f 'apt-get .* -y (dist-)?upgrade' >/dev/null && dpkg-query -W -f '${Version}' demo-app"


@dataclass(frozen=True)
class LockWatch:
    """What the lock releaser saw in pw-lab-3 while the lock was held."""

    seen_waiting: bool = False
    version_while_held: str = ""
    holder_log: str = ""


@dataclass(frozen=True)
class Rollout:
    state: LabState
    settings: Settings
    summary: RunSummary
    session_facts_path: Path
    boots_before: dict[str, str]
    reboot_records_before: dict[str, int]
    known_hosts_before: str
    lock: LockWatch
    channels: dict[str, str]

    def vm(self, name: str) -> VmOutcome:
        return next(o for o in self.summary.vms if o.vm.name == name)

    def guest(self, name: str) -> LabGuest:
        return self.state.guest(name)


def _timing(what: str, started: float) -> None:
    print(f"\n[lab rollout timing] {what}: {time.monotonic() - started:.1f}s")


def _boot_id(guest: LabGuest) -> str:
    code, output = lab.ssh_run(guest, "cat /proc/sys/kernel/random/boot_id", timeout=30)
    assert code == 0, output
    return output.strip()


def _release_when_apt_waits(guest: LabGuest, facts_path: Path, done: threading.Event) -> LockWatch:
    """Once pw-lab-3's patch intent is recorded, wait until apt is seen running behind the lock
    (demo-app still 1.0), then release the lock. Always releases (also on timeout or failure)."""
    from orchestrator.facts.store import FactStore

    seen, version = False, ""
    store = FactStore(facts_path)
    try:

        def patching() -> bool:
            return done.is_set() or any(
                r.action == "patch" and r.phase == "intent" and r.target.endswith(f"/{LOCKED}")
                for r in store.step_history(RUN)
            )

        wait_until(patching, timeout=600, interval=0.5, what=f"{LOCKED}'s patch intent")

        def apt_waiting() -> str | None:
            if done.is_set():
                return ""
            code, output = lab.ssh_run(guest, APT_WAITING, timeout=30)
            return output.strip() if code == 0 else None

        if not done.is_set():
            version = wait_until(apt_waiting, timeout=120, interval=0.5, what="apt waiting for the lock")
            seen = bool(version)
            time.sleep(3)  # let apt sit behind the lock a little longer: it must keep waiting, not fail
    finally:
        store.close()
        _code, log = lab.ssh_run(
            guest, f"touch {RELEASE}; sleep 0.5; cat /tmp/dpkg-lock-holder.log", timeout=30
        )
    return LockWatch(seen_waiting=seen, version_while_held=version, holder_log=log)


def _print_outcomes(summary: RunSummary, state: LabState) -> None:
    """Each VM's outcome in full (an assertion's message truncates it) and, for a VM whose reboot
    went wrong, the end of its console log (systemd names a stop job that hangs there)."""
    for outcome in summary.vms:
        print(f"[lab rollout] {outcome.vm.name}: {outcome.status.value} {outcome.error}")
        if "reboot" in outcome.error:
            console = Path(state.guest(outcome.vm.name).console_log)
            tail = console.read_text(errors="replace").splitlines()[-40:] if console.exists() else []
            print(f"[lab rollout] {console} (last {len(tail)} lines):", *tail, sep="\n  ")


@pytest.fixture(scope="module")
def rollout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    state_dir = tmp_path_factory.mktemp("lab-rollout")
    started = time.monotonic()
    state = lab.up(state_dir, guests=3)
    _timing("lab up (3 guests)", started)
    print(f"[lab rollout timing] breakdown: {state.timings}")
    try:
        lab.publish(state_dir, "good")
        state = lab.publish(state_dir, "breaking", guest=BREAKING)
        settings = load_settings(CONFIG, state_dir=state_dir)
        settings = replace(
            settings, temporal=replace(settings.temporal, address=f"127.0.0.1:{unused_port()}")
        )
        boots = {g.name: _boot_id(g) for g in state.guests}
        records = {g.name: lab.reboot_records(g) for g in state.guests}
        known_hosts = Path(state.known_hosts).read_text()
        code, output = lab.ssh_run(state.guest(LOCKED), HOLD_DPKG_LOCK)
        assert (code, output.strip()) == (0, "locked"), output
        started = time.monotonic()
        summary, lock, channels = asyncio.run(_run(settings, state))
        _timing("rollout through the orchestrator (3 guests)", started)
        _print_outcomes(summary, state)
        yield Rollout(
            state, settings, summary, settings.state.facts_path, boots, records, known_hosts, lock, channels
        )
    finally:
        started = time.monotonic()
        lab.down(state_dir)
        _timing("lab down", started)


async def _run(settings: Settings, state: LabState) -> tuple[RunSummary, LockWatch, dict[str, str]]:
    done = threading.Event()
    async with Session(settings) as running:
        assert running.engine.embedded_server is not None and running.engine.embedded_server.owned
        releaser = asyncio.create_task(
            asyncio.to_thread(_release_when_apt_waits, state.guest(LOCKED), settings.state.facts_path, done)
        )
        try:
            handle = await start_run(running.client, RunRequest(RUN, settings.digest, requested_by="e2e"))
            summary = await watch(handle, lambda progress: None, interval_s=1.0)
        finally:
            done.set()
            lock = await releaser
        inventory = {vm.ref.name: vm for vm in running.context.provider("lab").inventory().vms}
        channels = {}
        for guest in state.guests:
            channel = running.context.guest_channel(inventory[guest.name].ref, inventory[guest.name])
            channels[guest.name] = channel.name
            if isinstance(channel, SshChannel):  # how it is reached: host keys checked, never TOFU
                assert channel.target.known_hosts == Path(state.known_hosts)
                assert channel.target.trust_on_first_use is False
            channel.close()
    return summary, lock, channels


# ------------------------------------------------------------------------------------------ tests


def test_the_run_rolls_back_exactly_the_broken_guest(rollout: Rollout) -> None:
    statuses = {o.vm.name: o.status for o in rollout.summary.vms}
    assert statuses == {
        "pw-lab-1": StepStatus.SUCCEEDED,
        "pw-lab-2": StepStatus.ROLLED_BACK,
        "pw-lab-3": StepStatus.SUCCEEDED,
    }, [(o.vm.name, o.status, o.error) for o in rollout.summary.vms]
    assert rollout.summary.status == "failed"  # a rollback is reported, not hidden


def test_both_channels_are_exercised_and_ssh_host_keys_are_verified(rollout: Rollout) -> None:
    assert rollout.channels == {"pw-lab-1": "agent", "pw-lab-2": "ssh", "pw-lab-3": "ssh"}
    # Verified against the lab's known_hosts, nothing appended (trust on first use would add keys).
    assert Path(rollout.state.known_hosts).read_text() == rollout.known_hosts_before
    for name in ("pw-lab-1", "pw-lab-2", "pw-lab-3"):
        assert rollout.vm(name).packages_changed == 1, rollout.vm(name)


def test_the_good_patch_is_applied_and_kept_with_its_snapshot_until_the_ttl(rollout: Rollout) -> None:
    from orchestrator.facts.store import FactStore

    store = FactStore(rollout.session_facts_path)
    conn = domain.connect(rollout.state.uri)
    try:
        records = {r.vm.name: r for r in store.snapshots(run_id=RUN)}
        for name in ("pw-lab-1", "pw-lab-3"):
            outcome, guest = rollout.vm(name), rollout.guest(name)
            assert lab.installed_version(guest) == "1.1"
            assert lab.health_ok(guest), f"{guest.health_url} is not ok"
            assert store.outcome(RUN, outcome.step_id).status is StepStatus.SUCCEEDED
            record = records[name]
            assert (record.state, record.snapshot_id) == ("kept", outcome.snapshot_id)
            assert record.expires_at > record.created_at  # cleaned after the TTL (24h), not now
            assert outcome.snapshot_id in conn.lookupByName(name).snapshotListNames(0)
            checks = [r for r in store.step_history(RUN, outcome.step_id) if r.action == "verify_health"]
            assert checks and checks[-1].ok
    finally:
        conn.close()
        store.close()


def test_the_breaking_patch_is_rolled_back_to_the_old_version_and_is_healthy(rollout: Rollout) -> None:
    from orchestrator.facts.store import FactStore

    outcome, guest = rollout.vm(BREAKING), rollout.guest(BREAKING)
    assert "unhealthy after patching" in outcome.error, outcome.error
    store = FactStore(rollout.session_facts_path)
    try:
        assert store.outcome(RUN, outcome.step_id).status is StepStatus.ROLLED_BACK
        assert store.snapshot(RUN, outcome.step_id).state == "reverted"
        history = store.step_history(RUN, outcome.step_id)
        patched = [r for r in history if r.action == "patch" and r.phase == "result" and r.ok]
        assert patched and isinstance(patched[-1].detail, PatchDetail)
        assert patched[-1].detail.installed == {"demo-app": "1.2"}  # it was really applied
    finally:
        store.close()
    code, output = lab.ssh_run(guest, "dpkg-query -W demo-app")  # a new session: the old ones died
    assert (code, output.split()) == (0, ["demo-app", "1.0"])
    assert lab.health_ok(guest)
    assert lab.reboot_records(guest) == rollout.reboot_records_before[BREAKING]  # no reboot for 1.2


def test_reboot_required_triggers_exactly_one_reboot(rollout: Rollout) -> None:
    from orchestrator.facts.store import FactStore

    store = FactStore(rollout.session_facts_path)
    try:
        for name in ("pw-lab-1", "pw-lab-3"):
            outcome, guest = rollout.vm(name), rollout.guest(name)
            assert outcome.rebooted
            history = store.step_history(RUN, outcome.step_id)
            patch = next(r for r in history if r.action == "patch" and r.phase == "result")
            assert isinstance(patch.detail, PatchDetail)
            assert patch.detail.reboot_required is True  # demo-app 1.1's postinst asked for it
            reboots = [r for r in history if r.action == "reboot"]
            assert [(r.phase, r.ok) for r in reboots] == [("intent", None), ("result", True)]
            assert reboots[0].detail == RebootDetail(rollout.boots_before[name])
            assert isinstance(reboots[1].detail, RebootDetail)
            assert reboots[1].detail.boot_id == _boot_id(guest) != rollout.boots_before[name]
            assert lab.reboot_records(guest) == rollout.reboot_records_before[name] + 1  # wtmp: one boot
            code, _ = lab.ssh_run(guest, "test ! -e /var/run/reboot-required")
            assert code == 0, "the reboot cleared the reboot-required flag"
    finally:
        store.close()


def test_a_held_dpkg_lock_is_waited_for_not_failed_on(rollout: Rollout) -> None:
    from orchestrator.facts.store import FactStore

    lock = rollout.lock
    assert lock.seen_waiting and lock.version_while_held == "1.0", lock
    assert lock.holder_log.split() == ["locked", "released"], lock
    outcome = rollout.vm(LOCKED)
    assert outcome.status is StepStatus.SUCCEEDED and lab.installed_version(rollout.guest(LOCKED)) == "1.1"
    store = FactStore(rollout.session_facts_path)
    try:
        intents = [r for r in store.step_history(RUN, outcome.step_id) if r.action == "patch"]
        assert [(r.phase, r.ok) for r in intents] == [("intent", None), ("result", True)]  # one attempt
    finally:
        store.close()


def test_the_lab_host_is_assessed_read_only_and_never_put_into_maintenance(rollout: Rollout) -> None:
    from orchestrator.facts.store import FactStore

    [host] = rollout.summary.hosts
    assert isinstance(host, HostOutcome) and host.status is StepStatus.SUCCEEDED
    assert host.detail.startswith("report only:") and not host.rebooted, host
    store = FactStore(rollout.session_facts_path)
    try:
        assert store.hosts_in_maintenance() == []
        actions = [(r.action, r.phase) for r in store.step_history(RUN, host.step_id)]
        assert actions == [("host_assess", "result")], actions  # no host_patch intent: nothing applied
        plan = store.run_plan(RUN)
        assert plan is not None
        assert [w.code for w in plan.warnings if w.target == str(host.host)] == ["report_only"]
    finally:
        store.close()
