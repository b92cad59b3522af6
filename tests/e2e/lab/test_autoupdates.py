"""Automatic security updates on the real Debian guest lab: unattended-upgrades configured by
``orchestrator.autoupdates``, selecting the lab repository's security pocket only, drift, and the
pause/restore a run wraps around patching a VM.

One lab guest for the module (pw-lab-1; the image has unattended-upgrades installed with its
apt-daily timers masked, like a hardened image). The lab repository has two pockets with Release
files (``patchwave_lab/repo.py``): main (``Origin: patchwave-lab``, ``Suite: bookworm``) and
security (``Label: patchwave-lab-Security``, ``Suite: bookworm-security``); ``[autoupdates] origins``
adds :data:`patchwave_lab.repo.SECURITY_ORIGIN_PATTERN`. The tests run in file order and build on
each other (apply first). Timings are printed (run with ``-s``). Run it alone, under the lab lock:
``flock /tmp/patchwave-lab.lock .venv/bin/python -m pytest tests/e2e/lab/test_autoupdates.py``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from orchestrator import autoupdates as au
from orchestrator.autoupdates import AutoUpdatePolicy, UpdaterBusy
from orchestrator.autoupdates.change import MARKER
from orchestrator.cli import main as cli_main
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.config.loader import load_settings
from orchestrator.facts.autoupdates import AutoUpdateJournal
from orchestrator.facts.store import FactStore
from orchestrator.guests.osinfo import OsInfo, detect_os
from orchestrator.guests.ssh import SshChannel
from patchwave_lab import control as lab
from patchwave_lab import domain, repo
from patchwave_lab import guest_clock as agent
from patchwave_lab.state import LabGuest, LabState
from providers.timing import wait_until
from tests.support.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
UU_DRY_RUN = "apt-get -q update >/dev/null 2>&1 && unattended-upgrade --dry-run -d 2>&1"


def _timing(what: str, started: float) -> None:
    print(f"\n[lab timing] {what}: {time.monotonic() - started:.1f}s")


@pytest.fixture(scope="module")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state_dir = tmp_path_factory.mktemp("lab-autoupdates")
    started = time.monotonic()
    state = lab.up(state_dir, guests=1)
    _timing("lab up (1 guest)", started)
    yield state
    lab.down(state_dir)


@pytest.fixture(scope="module")
def guest(lab_state: LabState) -> LabGuest:
    return lab_state.guests[0]


@pytest.fixture
def channel(guest: LabGuest) -> Iterator[SshChannel]:
    ch = SshChannel(lab.ssh_target(guest))
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def os_info(guest: LabGuest) -> OsInfo:
    ch = SshChannel(lab.ssh_target(guest))
    try:
        return detect_os(ch)
    finally:
        ch.close()


def policy(*, pins: tuple[str, ...] = (), mode: str = "coexist") -> AutoUpdatePolicy:
    settings = AutoUpdateSettings(mode=mode, origins=(repo.SECURITY_ORIGIN_PATTERN,))
    return au.resolve_policy(settings, now=datetime.now(UTC), group="lab", pins=pins)


def run(guest: LabGuest, command: str, *, timeout: float = 240) -> str:
    code, output = lab.ssh_run(guest, command, timeout=timeout)
    assert code == 0, f"{command!r} exited {code}:\n{output}"
    return output


def timer_states(guest: LabGuest) -> dict[str, tuple[str, str]]:
    found = {}
    for timer in TIMERS:
        enabled = lab.ssh_run(guest, f"systemctl is-enabled {timer}")[1].strip()
        active = lab.ssh_run(guest, f"systemctl is-active {timer}")[1].strip()
        found[timer] = (enabled, active)
    return found


# ------------------------------------------------------------------------------ apply
def test_apply_configures_unattended_upgrades_and_a_second_apply_changes_nothing(
    guest: LabGuest, channel: SshChannel, os_info: OsInfo
) -> None:
    assert timer_states(guest) == {t: ("masked", "inactive") for t in TIMERS}  # as the image ships
    change = au.plan(os_info, policy())
    started = time.monotonic()
    report = au.apply(channel, change)
    _timing("apply (unmask, 5 files, daemon-reload, start timers)", started)
    assert "/etc/apt/apt.conf.d/90patchwave-unattended-upgrades" in report.changed
    assert "/etc/apt/apt.conf.d/20auto-upgrades" in report.unchanged  # the package's own, byte for byte
    assert {"unmasked apt-daily-upgrade.timer", "unmasked apt-daily-upgrade.service", "daemon-reload",
            "started apt-daily-upgrade.timer"} <= set(report.units)  # fmt: skip
    assert not report.installed  # already in the image
    for file in change.files:
        assert (
            run(guest, f"sha256sum < {file.path}").split()[0]
            == hashlib.sha256(file.content.encode()).hexdigest()
        )
    assert timer_states(guest) == {t: ("enabled", "active") for t in TIMERS}
    again = au.apply(channel, change)
    assert not again.changed_anything and set(again.unchanged) == {f.path for f in change.files}


def test_unattended_upgrade_dry_run_selects_the_lab_security_origin_and_not_main(
    lab_state: LabState, guest: LabGuest
) -> None:
    state_dir = Path(lab_state.state_dir)
    try:
        lab.publish(state_dir, "good", pocket="security")  # 1.1 in the security pocket
        lab.publish(state_dir, "breaking")  # 1.2 in main: apt's candidate, but not an allowed origin
        started = time.monotonic()
        output = run(guest, UU_DRY_RUN)
        _timing("apt-get update + unattended-upgrade --dry-run -d", started)
        assert (
            "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security, "
            "origin=patchwave-lab,codename=bookworm-security,label=patchwave-lab-Security"
        ) in output
        assert "a=bookworm,c=,v=,o=patchwave-lab,l=patchwave-lab arch=" in output  # main ...
        assert "with -32768 pin" in output  # ... marked not allowed
        assert "adjusting candidate version: demo-app=1.1" in output
        assert "Packages that will be upgraded: demo-app" in output
        assert "/security/pw-lab-1/./demo-app_1.1_all.deb" in output and "demo-app_1.2" not in output

        lab.publish(state_dir, "none", pocket="security")
        lab.publish(state_dir, "good")  # an update in main only: not for unattended-upgrades
        output = run(guest, UU_DRY_RUN)
        assert "No packages found that can be upgraded unattended" in output
        assert lab.installed_version(guest) == "1.0"  # a dry run changes nothing
    finally:
        lab.publish(state_dir, "none")
        lab.publish(state_dir, "none", pocket="security")


def test_coexist_holds_a_pinned_package_away_from_unattended_upgrades(
    lab_state: LabState, guest: LabGuest, channel: SshChannel, os_info: OsInfo
) -> None:
    state_dir = Path(lab_state.state_dir)
    try:
        report = au.apply(channel, au.plan(os_info, policy(pins=("demo-app=1.0",))))
        assert report.changed == ("/etc/apt/apt.conf.d/90patchwave-unattended-upgrades",)
        lab.publish(state_dir, "good", pocket="security")
        output = run(guest, UU_DRY_RUN)
        assert "Initial blacklist: ^demo-app$" in output
        assert "No packages found that can be upgraded unattended" in output
        # patchwave's own pinned install is not blocked (an `apt-mark hold` would block it)
        run(guest, "apt-get -q -o DPkg::Lock::Timeout=60 install -y --simulate demo-app=1.1")
    finally:
        lab.publish(state_dir, "none", pocket="security")
        au.apply(channel, au.plan(os_info, policy()))


# ------------------------------------------------------------------------------ status
def test_status_reports_installed_enabled_no_drift_then_the_drift_of_a_manual_change(
    guest: LabGuest, channel: SshChannel, os_info: OsInfo
) -> None:
    wanted = policy()
    found = au.status(channel, wanted, os_info=os_info)
    assert (found.installed, found.enabled, found.active, found.drift, found.paused) == (
        True,
        True,
        True,
        (),
        None,
    )
    assert found.version.startswith("2.9")
    try:
        run(guest, "echo 'Unattended-Upgrade::Automatic-Reboot \"true\";' > /etc/apt/apt.conf.d/99local-reboot; "
                   "systemctl disable --now apt-daily-upgrade.timer")  # fmt: skip
        drifted = au.status(channel, wanted, os_info=os_info)
        assert {d.item for d in drifted.drift} == {
            "Unattended-Upgrade::Automatic-Reboot",
            "apt-daily-upgrade.timer",
        }
        assert not drifted.enabled
        au.apply(channel, au.plan(os_info, wanted))  # fixes the timer; a later file still wins:
        assert [d.item for d in au.status(channel, wanted, os_info=os_info).drift] == [
            "Unattended-Upgrade::Automatic-Reboot"
        ]
    finally:
        run(guest, "rm -f /etc/apt/apt.conf.d/99local-reboot")
    assert au.status(channel, wanted, os_info=os_info).compliant


# ------------------------------------------------------------------------------ pause / restore
def test_pause_stops_the_timers_behind_a_marker_and_restore_brings_back_exactly_what_ran(
    guest: LabGuest, channel: SshChannel, os_info: OsInfo
) -> None:
    run(guest, "systemctl stop apt-daily.timer")  # inactive before the pause: must stay so
    started = time.monotonic()
    paused = au.pause(channel, "run-a", "vm:lab:pw-lab-1", os_info=os_info)
    _timing("pause (marker, stop timers, nothing running)", started)
    assert paused.state == "new" and paused.stopped == ("apt-daily-upgrade.timer",)
    assert {(u.unit, u.active) for u in paused.marker.units} >= {("apt-daily.timer", "inactive"),
                                                                 ("apt-daily-upgrade.timer", "active")}  # fmt: skip
    assert timer_states(guest) == {t: ("enabled", "inactive") for t in TIMERS}
    assert "run_id=run-a" in run(guest, f"cat {MARKER}")
    assert au.pause(channel, "run-a", "vm:lab:pw-lab-1", os_info=os_info).state == "kept"  # twice = once
    # the guard: a timer firing now (or after a reboot) does not start the updater
    run(guest, "systemctl start apt-daily-upgrade.service")
    assert run(guest, "systemctl show -p ConditionResult --value apt-daily-upgrade.service").strip() == "no"
    status = au.status(channel, policy(), os_info=os_info)
    assert status.paused is not None and status.paused.run_id == "run-a" and status.compliant
    with pytest.raises(au.AutoUpdateError) as refused:
        au.apply(channel, au.plan(os_info, policy()))
    assert refused.value.code == "paused"

    started = time.monotonic()
    restored = au.restore(channel, "run-a")
    _timing("restore", started)
    assert restored.restored and restored.started == ("apt-daily-upgrade.timer",)
    assert timer_states(guest) == {
        "apt-daily.timer": ("enabled", "inactive"),
        "apt-daily-upgrade.timer": ("enabled", "active"),
    }
    assert run(guest, f"test -e {MARKER} && echo present || echo gone").strip() == "gone"
    assert not au.restore(channel, "run-a").restored  # twice = once
    run(guest, "systemctl start apt-daily.timer")


def test_a_dead_runs_pause_is_adopted_by_the_next_run_and_only_doctor_may_restore_it_otherwise(
    channel: SshChannel, os_info: OsInfo
) -> None:
    au.pause(channel, "run-dead", "vm:lab:pw-lab-1", os_info=os_info)
    with pytest.raises(au.AutoUpdateError) as other:
        au.restore(channel, "run-next")
    assert other.value.code == "paused_by_other_run"
    adopted = au.pause(channel, "run-next", "vm:lab:pw-lab-1", os_info=os_info)
    assert adopted.state == "adopted" and adopted.marker.adopted_from == ("run-dead",)
    assert {u.unit: u.active for u in adopted.marker.units}[
        "apt-daily-upgrade.timer"
    ] == "active"  # the original
    assert au.paused_by(channel) == adopted.marker
    restored = au.restore(channel, "someone", any_run=True)  # what doctor does for a dead run
    assert restored.restored and set(restored.started) >= set(TIMERS)


def test_the_pause_survives_a_reset_of_the_guest(lab_state: LabState, guest: LabGuest, channel: SshChannel,
                                                 os_info: OsInfo) -> None:  # fmt: skip
    """A hard reset right after the pause (the worst reboot: nothing is shut down, nothing flushed
    but what the pause flushed itself) boots a guest that is still paused. A reset, not a graceful
    reboot: a graceful shutdown's stop jobs under TCG took from 20 s to over 300 s (CI, stop 22);
    graceful reboots through the agent are covered by test_lab.py and the rollouts."""
    au.pause(channel, "run-reboot", "vm:lab:pw-lab-1", os_info=os_info)
    channel.close()
    conn = domain.connect(lab_state.uri)
    try:
        dom = conn.lookupByName(guest.name)

        def boot_id() -> str:
            return agent.agent_exec(
                dom, ["cat", "/proc/sys/kernel/random/boot_id"], timeout=10
            ).stdout.strip()

        before = boot_id()
        started = time.monotonic()
        dom.reset()
        wait_until(lambda: agent.agent_ping(dom, timeout=1) and boot_id() not in ("", before), timeout=300,
                   interval=0.5, what="pw-lab-1 back from its reset")  # fmt: skip
        wait_until(lambda: lab.ssh_answers(guest), timeout=120, interval=0.5, what="ssh after reset")
        _timing("reset while paused", started)
    finally:
        conn.close()
    # enabled timers come back with the boot, the marker stays, and the guard keeps the updater off
    assert timer_states(guest) == {t: ("enabled", "active") for t in TIMERS}
    assert "run_id=run-reboot" in run(guest, f"cat {MARKER}")
    run(guest, "systemctl start apt-daily-upgrade.service")
    assert run(guest, "systemctl show -p ConditionResult --value apt-daily-upgrade.service").strip() == "no"
    fresh = SshChannel(lab.ssh_target(guest))
    try:
        assert au.restore(fresh, "run-reboot").restored
    finally:
        fresh.close()


def test_pause_waits_for_a_running_unattended_upgrade_and_never_kills_it(
    lab_state: LabState, guest: LabGuest, channel: SshChannel, os_info: OsInfo
) -> None:
    state_dir = Path(lab_state.state_dir)
    lab.publish(state_dir, "good", pocket="security")
    try:
        run(guest, "apt-get -q update >/dev/null 2>&1; rm -f /var/lib/apt/periodic/*upgrade*stamp; "
                   "systemctl start --no-block apt-daily-upgrade.service")  # fmt: skip
        wait_until(lambda: "bin/unattended-upgrade" in lab.ssh_run(guest, "ps -eo args 2>/dev/null || "
                                                                          "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")[1],
                   timeout=60, interval=0.5, what="unattended-upgrade running")  # fmt: skip
        with pytest.raises(UpdaterBusy) as busy:  # a short wait gives up (retryable), never kills
            au.pause(channel, "run-busy", "vm:lab:pw-lab-1", os_info=os_info, wait_s=2)
        assert busy.value.retryable and "apt-daily-upgrade.service" in busy.value.busy
        started = time.monotonic()
        paused = au.pause(channel, "run-busy", "vm:lab:pw-lab-1", os_info=os_info, wait_s=300)
        _timing("pause waiting for a running unattended-upgrade", started)
        assert paused.state == "kept" and paused.waited_s > 0
        assert run(guest, "systemctl is-active apt-daily-upgrade.service || true").strip() == "inactive"
        assert run(guest, "systemctl show -p Result --value apt-daily-upgrade.service").strip() == "success"
        assert lab.installed_version(guest) == "1.1"  # it finished its work
        last = au.status(channel, policy(), os_info=os_info).last_run
        assert (last.result, last.packages) == ("upgraded", ("demo-app",))
        assert au.restore(channel, "run-busy").restored
    finally:
        lab.publish(state_dir, "none", pocket="security")


# ------------------------------------------------------------------------------ the command line
def test_the_cli_applies_and_reports_through_the_guest_agent_and_journals_it(
    lab_state: LabState, tmp_path: Path
) -> None:
    config = tmp_path / "patchwave.toml"
    config.write_text(
        (REPO / "patchwave_lab" / "configs" / "lab.toml").read_text()
        + f'\n[autoupdates]\nmode = "security"\nmail = "root"\norigins = ["{repo.SECURITY_ORIGIN_PATTERN}"]\n'
    )
    base = ["-c", str(config), "--state-dir", lab_state.state_dir, "autoupdates"]
    started = time.monotonic()
    try:
        assert cli_main([*base, "plan"]) == 0
        assert cli_main([*base, "apply", "--vm", "pw-lab-1"]) == 0  # pw-lab-1 is reached through qemu-ga
        assert cli_main([*base, "status"]) == 0
    finally:
        structlog.reset_defaults()  # the in-process CLI configured logging onto pytest's streams
    _timing("CLI plan + apply + status (agent channel)", started)
    settings = load_settings(config, state_dir=Path(lab_state.state_dir))
    facts = FactStore(settings.state.facts_path)
    try:
        journal = AutoUpdateJournal(facts)
        status = journal.latest("status")
        assert [(r.vm.name, r.mode, r.ok, r.detail["drift"]) for r in status] == [
            ("pw-lab-1", "security", True, [])
        ]
        applied = [r for r in journal.of_vm(status[0].vm) if r.action in ("intent", "applied")]
        assert [r.action for r in reversed(applied)] == ["intent", "applied"]
        assert "/etc/apt/apt.conf.d/90patchwave-unattended-upgrades" in applied[-1].detail["files"]
        assert applied[0].detail["changed"] == ["/etc/apt/apt.conf.d/90patchwave-unattended-upgrades"]
    finally:
        facts.close()
