"""The real Debian guest lab, tested at the lab level (no orchestrator): guests, repo, snapshots.

Needs libvirtd (qemu:///system) with the settings of .ci/setup-libvirt.sh and the packages of
.ci/setup-lab.sh. The first run builds the image (~30 s) and one golden state per guest (~12 s
each) into the lab cache; later runs restore the goldens. Timings are printed (run with ``-s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from orchestrator.guests.reboot import reboot_and_wait
from orchestrator.guests.ssh import SshChannel
from patchwave_lab import control as lab
from patchwave_lab import domain
from patchwave_lab import guest_clock as agent
from patchwave_lab.state import LabGuest, LabState
from providers.base import VmRef
from providers.errors import HostKeyRejected
from providers.timing import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.lab]

SNAPSHOT_XML = "<domainsnapshot><name>{name}</name><description>lab test</description></domainsnapshot>"
# Holds dpkg's frontend lock the way apt and dpkg take it: a POSIX record lock (fcntl). `flock(1)`
# takes a BSD flock(2) lock, which Linux keeps independent of fcntl locks, so apt would not wait.
HOLD_DPKG_LOCK = (
    "nohup perl -MFcntl -e '"
    '$| = 1; open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die "open: $!"; '
    'my $lock = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0); '
    'fcntl($f, F_SETLK, $lock) or die "lock: $!"; print "locked\\n"; sleep 15'
    "' >/tmp/dpkg-lock-holder.log 2>&1 &\n"
    "for i in $(seq 50); do grep -q locked /tmp/dpkg-lock-holder.log && break; sleep 0.1; done\n"
    "cat /tmp/dpkg-lock-holder.log"
)


def _timing(what: str, started: float) -> None:
    print(f"\n[lab timing] {what}: {time.monotonic() - started:.1f}s")


STAGES: list[str] = []  # what `lab up` told its live view (``on_stage``), in order


@pytest.fixture(scope="module")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state_dir = tmp_path_factory.mktemp("lab-state")
    started = time.monotonic()
    STAGES.clear()
    state = lab.up(state_dir, guests=2, on_stage=STAGES.append)
    _timing("lab up (2 guests)", started)
    print(f"[lab timing] breakdown: {state.timings}")
    yield state
    started = time.monotonic()
    lab.down(state_dir)
    _timing("lab down", started)
    conn = domain.connect(state.uri)
    try:
        leftovers = [d.name() for d in conn.listAllDomains(0) if domain.owner_of(d) == state.state_dir]
    finally:
        conn.close()
    assert leftovers == [], "lab down left domains behind"


@pytest.fixture
def conn(lab_state: LabState) -> Iterator[object]:
    connection = domain.connect(lab_state.uri)
    yield connection
    connection.close()


ssh_run = lab.ssh_run


def installed_version(guest: LabGuest) -> str:
    version = lab.installed_version(guest)
    assert version, f"demo-app is not installed in {guest.name}"
    return version


def test_guests_answer_the_agent_and_ssh_with_host_key_checking(lab_state: LabState, conn) -> None:
    known_hosts = Path(lab_state.known_hosts).read_text().splitlines()
    assert len(known_hosts) == len(lab_state.guests) == 2
    for guest in lab_state.guests:
        dom = conn.lookupByName(guest.name)
        assert agent.agent_ping(dom), f"{guest.name}: guest-ping got no answer"
        served = agent.agent_exec(dom, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"], timeout=10)
        assert f"[{guest.host}]:{guest.ssh_port} " + " ".join(served.stdout.split()[:2]) in known_hosts
        code, output = ssh_run(guest, "hostname; id -un")
        assert (code, output.split()) == (0, ["pw-lab", "root"])
    host_keys = {line.split()[2] for line in known_hosts}
    assert len(host_keys) == 2, "clones must not share a host key"


def test_ssh_refuses_a_guest_whose_host_key_is_not_known(lab_state: LabState, tmp_path: Path) -> None:
    guest = lab_state.guests[0]
    other = lab_state.guests[1]
    # guest 1's port paired with guest 2's host key: a man in the middle, as far as SSH can tell
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{guest.host}]:{guest.ssh_port} " + _known_key(lab_state, other) + "\n")
    with pytest.raises(HostKeyRejected) as changed:
        lab.ssh_client(replace(guest, known_hosts=str(wrong)))
    assert changed.value.code == "host_key_mismatch" and not changed.value.retryable
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected) as unknown:
        lab.ssh_client(replace(guest, known_hosts=str(empty)))
    assert unknown.value.code == "host_key_unknown"
    assert empty.read_text() == ""  # the lab never trusts on first use


def test_demo_app_is_healthy_in_each_guest(lab_state: LabState) -> None:
    for guest in lab_state.guests:
        assert lab.health_ok(guest), f"{guest.health_url} is not ok"
        code, output = ssh_run(guest, "wget -q -O- http://127.0.0.1:8080/health")
        assert (code, output.strip()) == (0, "ok")
        assert installed_version(guest) == "1.0"


def test_breaking_update_fails_health_and_a_snapshot_revert_restores_1_0(lab_state: LabState, conn) -> None:
    guest = lab_state.guests[0]
    dom = conn.lookupByName(guest.name)
    started = time.monotonic()
    snapshot = dom.snapshotCreateXML(SNAPSHOT_XML.format(name="lab-test-before-update"), 0)
    _timing("live internal snapshot", started)
    try:
        lab.publish(Path(lab_state.state_dir), "breaking")
        started = time.monotonic()
        code, output = ssh_run(guest, "apt-get update && apt-get install -y demo-app")
        _timing("apt-get update + install (breaking update)", started)
        assert code == 0, output
        assert installed_version(guest) == "1.2"
        assert not lab.health_ok(guest)
        code, _ = ssh_run(guest, "wget -q -O- http://127.0.0.1:8080/health")
        assert code != 0, "/health should fail after the breaking update"

        started = time.monotonic()
        dom.revertToSnapshot(snapshot, 0)
        agent.wait_agent(dom, timeout=60)
        agent.set_time(dom)
        wait_until(lambda: lab.health_ok(guest), timeout=60, interval=0.2, what="health after revert")
        _timing("revert + agent + setTime + health", started)
        assert installed_version(guest) == "1.0"  # a new SSH session: the old ones died with the revert
    finally:
        snapshot.delete(0)
        lab.publish(Path(lab_state.state_dir), "none")


def test_apt_waits_for_a_held_dpkg_lock_and_then_installs_the_good_update(lab_state: LabState) -> None:
    guest = lab_state.guests[1]
    lab.publish(Path(lab_state.state_dir), "good")
    try:
        code, output = ssh_run(guest, "apt-get update")
        assert code == 0, output
        code, output = ssh_run(guest, HOLD_DPKG_LOCK)
        assert output.strip() == "locked", output
        started = time.monotonic()
        code, output = ssh_run(guest, "apt-get -o DPkg::Lock::Timeout=60 install -y demo-app")
        _timing("apt-get install behind a held dpkg lock (held 15 s)", started)
        assert code == 0, output
        assert "Waiting for cache lock" in output and "lock-frontend" in output, output
        assert installed_version(guest) == "1.1"
        code, _ = ssh_run(
            guest, "test -f /var/run/reboot-required && grep -qx demo-app /var/run/reboot-required.pkgs"
        )
        assert code == 0, "the good update asks for a reboot"
        assert lab.health_ok(guest)
    finally:
        lab.publish(Path(lab_state.state_dir), "none")


def test_a_guest_rebooted_through_its_agent_comes_back_with_ssh_and_health(lab_state: LabState, conn) -> None:
    guest = lab_state.guests[1]
    dom = conn.lookupByName(guest.name)

    def boot_id() -> str:
        return agent.agent_exec(dom, ["cat", "/proc/sys/kernel/random/boot_id"], timeout=10).stdout.strip()

    before = boot_id()
    started = time.monotonic()
    dom.reboot(libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT)  # qemu-ga -> shutdown -r (needs logind/dbus)
    wait_until(
        lambda: agent.agent_ping(dom, timeout=1) and boot_id() not in ("", before),
        timeout=180,
        interval=0.5,
        what=f"{guest.name} back from reboot",
    )
    wait_until(lambda: lab.health_ok(guest), timeout=60, interval=0.5, what="health after reboot")
    wait_until(lambda: lab.ssh_answers(guest), timeout=60, interval=0.5, what="ssh after reboot")
    _timing("reboot through the agent -> agent, health and ssh back", started)
    code, output = ssh_run(guest, "test ! -e /var/run/reboot-required && cat /etc/apt/sources.list")
    assert code == 0, output  # /run is fresh; the host key (checked by ssh_run) and apt source persist
    assert output.strip() == f"deb [trusted=yes] {guest.repo_url} ./"
    assert guest.repo_url == f"{lab_state.repo_url_in_guest}views/{guest.name}/"


class _LostRequests:
    """A platform whose reboot requests get lost (as when logind drops qemu-ga's ``shutdown -r``):
    implements providers.capabilities.PowerOps and does nothing."""

    def __init__(self) -> None:
        self.asked: list[VmRef] = []

    def power_on(self, vm: VmRef) -> None: ...
    def shutdown(self, vm: VmRef, *, timeout: float) -> None: ...
    def power_off(self, vm: VmRef) -> None: ...

    def reboot_guest(self, vm: VmRef) -> None:
        self.asked.append(vm)


def test_a_reboot_request_that_was_lost_is_asked_again_through_ssh(lab_state: LabState) -> None:
    """The platform's request did nothing; a quarter into the wait the guest still answers with its
    old boot id over SSH, so the guarded request goes through SSH and the real guest reboots once."""
    guest = lab_state.guests[0]
    channel = SshChannel(lab.ssh_target(guest))
    power = _LostRequests()
    try:
        before = lab.reboot_records(guest)
        started = time.monotonic()
        outcome = reboot_and_wait(
            channel, timeout=120, power=power, vm=VmRef("lab", guest.name, guest.name), confirm_kernel=False
        )
        _timing("reboot asked again through SSH -> new boot id", started)
    finally:
        channel.close()
    assert len(power.asked) == 1 and outcome.boot_id_after != outcome.boot_id_before
    assert time.monotonic() - started >= 30  # asked again only at a quarter of 120 s
    wait_until(lambda: lab.health_ok(guest), timeout=60, interval=0.5, what="health after reboot")
    assert lab.reboot_records(guest) == before + 1  # one reboot, not two


def test_each_guest_is_offered_the_update_published_to_its_own_view(lab_state: LabState) -> None:
    first, second = lab_state.guests
    state_dir = Path(lab_state.state_dir)
    try:
        lab.publish(state_dir, "good", guest=first.name)
        state = lab.publish(state_dir, "breaking", guest=second.name)
        assert state.views == {first.name: "good", second.name: "breaking"}
        candidate = (
            "apt-get -q update >/dev/null 2>&1 && apt-cache policy demo-app | sed -n 's/ *Candidate: //p'"
        )
        assert [ssh_run(g, candidate) for g in (first, second)] == [(0, "1.1\n"), (0, "1.2\n")]
        lab.publish(state_dir, "none")  # every guest again
        assert lab.status(state_dir)["views"] == {first.name: "none", second.name: "none"}
        assert ssh_run(first, candidate) == (0, "1.0\n")
    finally:
        lab.publish(state_dir, "none")


def _known_key(state: LabState, guest: LabGuest) -> str:
    for line in Path(state.known_hosts).read_text().splitlines():
        host, key_type, key = line.split()
        if host == f"[{guest.host}]:{guest.ssh_port}":
            return f"{key_type} {key}"
    raise AssertionError(f"{guest.name} is not in known_hosts")


def test_lab_up_tells_its_live_view_each_stage_in_order(lab_state: LabState) -> None:
    assert STAGES[:4] == [
        "removing an earlier lab of this state directory",
        "guest image (debootstrap once, then cached)",
        "package repository",
        "golden guests (booted once per image, then cached)",
    ]
    assert [s.split(" (")[0] for s in STAGES[4:]] == ["starting pw-lab-1", "starting pw-lab-2"]
