"""A guest whose baseline health check could not run is FAILED and not touched — never SKIPPED.

SKIPPED means "checked, found broken before patching, left alone" and does not fail a run; a guest
that could not be checked at all (its SSH host key does not match known_hosts, it is not in
known_hosts, nothing answers) must not pass as that: the run's exit code is non-zero.

PatchRun on Temporal's time-skipping test server with the real activities and workers, libvirt's
test driver and fake Debian guests (patchwave_lab/fakeguest). ``pw-web-1`` is reached through the real
``local`` channel; ``pw-web-2`` through the real SSH channel to a loopback SSH server (paramiko's
server, tests/simulators/pvesim/sshd.py) with its own host key, which runs what it receives inside
``pw-web-2``'s fake guest (chroot) — so with the right known_hosts entry it is patched over SSH like
any guest, and with a wrong one the server must never see a command.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from temporalio.testing import WorkflowEnvironment

from orchestrator.config.loader import load_settings
from orchestrator.context import Context
from orchestrator.engine.runs import start_run
from orchestrator.engine.workers import workers
from orchestrator.facts.store import FactStore
from orchestrator.guests.channel import LocalChannel
from orchestrator.model import ExitCode, RunRequest, RunSummary, StepStatus, VmOutcome
from patchwave_lab.fakeguest import FakeGuest
from providers.base import VmRef
from tests.simulators.pvesim.sshd import NodeSshServer, new_ed25519
from tests.support.loopback import unused_port
from tests.support.testbed import DriverBed, GuestSpec, build

pytestmark = pytest.mark.e2e

RUN_ID = "run-untrusted"
SSH_GUEST = "pw-web-2"


@dataclass
class GuestSshd:
    """A loopback SSH server in front of one fake guest; ``commands`` is everything it was asked."""

    server: NodeSshServer
    key_file: Path  # the client's private key (authorised by the server)
    commands: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def known_hosts_line(self, key: paramiko.PKey | None = None) -> str:
        key = key or self.server.host_key
        return f"[127.0.0.1]:{self.port} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture
def sshd_for(tmp_path: Path) -> Iterator:
    """``sshd_for(guest)``: start an SSH server that runs its commands inside ``guest``'s chroot."""
    started: list[NodeSshServer] = []

    def start(guest: FakeGuest) -> GuestSshd:
        host_key, _ = new_ed25519()
        client_key, client_text = new_ed25519()
        key_file = tmp_path / f"id_ed25519-{len(started)}"
        key_file.write_text(client_text)
        key_file.chmod(0o600)
        inside = LocalChannel(root=guest.root)

        def run(node: str, command: str) -> tuple[int, str, str]:
            sshd.commands.append(command)
            result = inside.run(command, timeout=120)
            return (result.exit_code if result.exit_code is not None else 255), result.stdout, result.stderr

        server = NodeSshServer(SSH_GUEST, host_key, lambda: [client_key], run, lambda node: True)
        sshd = GuestSshd(server, key_file)
        server.start()
        started.append(server)
        return sshd

    yield start
    for server in started:
        server.stop()


def reach_over_ssh(bed: DriverBed, name: str, sshd: GuestSshd, known_hosts: Path, *, port: int = 0) -> None:
    """Replace ``name``'s local-channel override by SSH to ``sshd`` (or 127.0.0.1:``port``)."""
    old = f'[guests.overrides."{name}"]\nlocal_root = "{bed.guests[name].root}"\n'
    new = (
        f'[guests.overrides."{name}"]\nchannel = "ssh"\n'
        f'ssh = {{ host = "127.0.0.1", port = {port or sshd.port}, user = "root", '
        f'key_file = "{sshd.key_file}", known_hosts = "{known_hosts}" }}\n'
    )
    text = bed.config.read_text()
    assert old in text
    bed.config.write_text(text.replace(old, new))


@dataclass
class Finished:
    summary: RunSummary
    facts: FactStore
    ctx: Context

    @property
    def outcomes(self) -> dict[str, VmOutcome]:
        return {o.vm.name: o for o in self.summary.vms}

    def snapshots_in_provider(self, bed: DriverBed, name: str) -> list:
        return self.ctx.provider("td").list_snapshots(VmRef("td", bed.uuids[name], name))


@pytest.fixture
def run_bed(env: WorkflowEnvironment) -> Iterator:
    """``await run_bed(bed)``: the whole PatchRun with workers for ``bed``; the stores stay open."""
    opened: list[tuple[FactStore, Context]] = []

    async def run(bed: DriverBed) -> Finished:
        settings = load_settings(bed.config)
        facts = FactStore(settings.state.facts_path)
        ctx = Context(settings, facts)
        opened.append((facts, ctx))
        request = RunRequest(run_id=RUN_ID, config_digest=settings.digest, requested_by="test")
        async with workers(env.client, ctx):
            summary = await (await start_run(env.client, request)).result()
        return Finished(summary, facts, ctx)

    yield run
    for facts, ctx in opened:
        ctx.close()
        facts.close()


def assert_not_touched(done: Finished, bed: DriverBed, name: str) -> None:
    """No snapshot (platform or fact store), no patch step, nothing installed in the guest."""
    outcome = done.outcomes[name]
    assert outcome.snapshot_id == "" and outcome.packages_changed == 0
    assert done.snapshots_in_provider(bed, name) == []
    assert [s for s in done.facts.snapshots(run_id=RUN_ID) if s.vm.name == name] == []
    actions = {r.action for r in done.facts.step_history(RUN_ID, outcome.step_id)}
    assert not actions & {"snapshot", "patch", "reboot", "revert"}, actions
    guest = bed.guests[name]
    assert guest.upgrades() == 0 and guest.patches() == []
    assert guest.installed() == {"demo-app": "1.0", "openssl": "3.0.11"}


# known_hosts for the SSH guest -> (its status, what its error must say).
CASES = {
    "the right key": (StepStatus.SUCCEEDED, ""),
    "another key": (StepStatus.FAILED, "HostKeyRejected: host key of 127.0.0.1:{port} does not match"),
    "no entry": (StepStatus.FAILED, "HostKeyRejected: host 127.0.0.1:{port} is not in"),
    "nothing listens": (StepStatus.FAILED, "GuestUnreachable: ssh connect failed"),
}


@pytest.mark.parametrize("known", list(CASES))
async def test_a_guest_whose_baseline_could_not_run_is_failed_untouched_and_fails_the_run(
    tmp_path: Path, sshd_for, run_bed, known: str
) -> None:
    bed = build(tmp_path / "bed", (GuestSpec("pw-web-1"), GuestSpec(SSH_GUEST)), port=unused_port(), budget=1)
    sshd = sshd_for(bed.guests[SSH_GUEST])
    known_hosts = tmp_path / "known_hosts"
    impostor, _ = new_ed25519()
    known_hosts.write_text({
        "the right key": sshd.known_hosts_line(),
        "another key": sshd.known_hosts_line(impostor),
        "no entry": f"[127.0.0.1]:{unused_port()} {impostor.get_name()} {impostor.get_base64()}\n",
        "nothing listens": sshd.known_hosts_line(),
    }[known])  # fmt: skip
    port = unused_port() if known == "nothing listens" else sshd.port
    reach_over_ssh(bed, SSH_GUEST, sshd, known_hosts, port=port)

    done = await run_bed(bed)

    status, says = CASES[known]
    outcome, other = done.outcomes[SSH_GUEST], done.outcomes["pw-web-1"]
    assert other.status is StepStatus.SUCCEEDED, other  # one FAILED VM is within the budget of 1
    assert outcome.status is status, outcome
    if status is StepStatus.SUCCEEDED:  # the control: the same guest over the same SSH server is patched
        assert bed.guests[SSH_GUEST].upgrades() == 1 and sshd.commands
        assert (done.summary.status, done.summary.exit_code) == ("succeeded", ExitCode.OK)
        return
    assert outcome.error.startswith("not touched: baseline health check could not run: "), outcome.error
    assert says.format(port=port) in outcome.error, outcome.error
    assert sshd.commands == []  # not even the health check reached the guest
    assert_not_touched(done, bed, SSH_GUEST)
    assert done.facts.outcome(RUN_ID, outcome.step_id).status is StepStatus.FAILED  # final: not redone
    assert (done.summary.status, done.summary.exit_code) == ("failed", ExitCode.SOME_FAILED)
    assert done.facts.get_run(RUN_ID).status == "failed"


async def test_an_untrusted_canary_counts_against_the_failure_budget_and_halts_the_rollout(
    tmp_path: Path, sshd_for, run_bed
) -> None:
    specs = (GuestSpec(SSH_GUEST, ring="canary"), GuestSpec("pw-web-1"))
    bed = build(tmp_path / "bed", specs, port=unused_port(), rings={"canary": "", "main": ""}, budget=0)
    sshd = sshd_for(bed.guests[SSH_GUEST])
    impostor, _ = new_ed25519()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line(impostor))
    reach_over_ssh(bed, SSH_GUEST, sshd, known_hosts)

    done = await run_bed(bed)

    canary, main = done.outcomes[SSH_GUEST], done.outcomes["pw-web-1"]
    assert canary.status is StepStatus.FAILED and "HostKeyRejected" in canary.error, canary
    assert done.summary.status == "halted" and done.summary.exit_code == ExitCode.HALTED
    halted = done.summary.halted_reason
    assert "failure budget exhausted" in halted and SSH_GUEST in halted, halted
    assert main.status is StepStatus.SKIPPED and "not attempted" in main.error, main
    assert sshd.commands == []
    for name in (SSH_GUEST, "pw-web-1"):
        assert_not_touched(done, bed, name)


async def test_a_guest_found_unhealthy_before_patching_is_still_skipped(tmp_path: Path, run_bed) -> None:
    """The baseline ran and said "broken": not patched, listed, and not a failure (exit 0)."""
    bed = build(tmp_path / "bed", (GuestSpec("pw-web-1"), GuestSpec("pw-web-2")), port=unused_port())
    (bed.guests["pw-web-2"].state / "broken").write_text("demo-app 1.0\n")  # broken before any patch

    done = await run_bed(bed)

    outcome = done.outcomes["pw-web-2"]
    assert outcome.status is StepStatus.SKIPPED, outcome
    assert outcome.error == "unhealthy before patching: demo-app: exit 1: demo-app: demo-app 1.0 is broken"
    assert_not_touched(done, bed, "pw-web-2")
    assert done.outcomes["pw-web-1"].status is StepStatus.SUCCEEDED
    assert (done.summary.status, done.summary.exit_code) == ("succeeded", ExitCode.OK)
