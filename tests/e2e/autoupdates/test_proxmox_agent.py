"""The autoupdates verbs through a Proxmox guest agent (the PVE simulator over real HTTPS).

``orchestrator.autoupdates`` reaches a Proxmox VM the way a run does: ``AgentChannel`` ->
``ProxmoxProvider.guest_exec`` -> PVE's ``agent/exec`` + ``exec-status`` polling. The simulator's
guests have no systemd or unattended-upgrades (see tests/simulators/pvesim/commands.py), so each
guest answers with the *real* output captured on the lab guest for the same command
(tests/data/guests/autoupdates, ``debian/*``): what is checked here is the platform path — the
scripts reach the guest intact (several KiB through the API's ``command`` array), the outputs and
exit statuses (3 "paused", 75 "busy") come back intact, and the verbs read them as on the lab.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from orchestrator import autoupdates as au
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.guests.channel import AgentChannel
from orchestrator.guests.osinfo import OsInfo
from providers.base import ExecResult, VmRef
from providers.proxmox.provider import ProxmoxProvider, open_provider
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.pvesim.harness import settings_for
from tests.support.paths import DATA
from tests.unit.autoupdates.test_captures import parse

pytestmark = pytest.mark.e2e

WEB = VmRef("pve", "qemu/100", "web-1")
CASES = DATA / "guests" / "autoupdates" / "debian"
DEBIAN = OsInfo("debian", "12", "debian", "Debian GNU/Linux 12 (bookworm)")


@pytest.fixture
def channel() -> Iterator[tuple[Simulator, AgentChannel]]:
    with Simulator(SimConfig(task_duration=0.05), ssh=False) as sim:
        provider: ProxmoxProvider = open_provider(settings_for(sim))
        try:
            yield sim, AgentChannel(provider, WEB)
        finally:
            provider.close()


def answer(sim: Simulator, case: str, match: str) -> dict:
    """Make the simulated guest answer a command containing ``match`` with ``case``'s real output."""
    meta = json.loads((CASES / case / "case.json").read_text())
    sim.script_guest(100, match, exitcode=meta["exit_code"], stdout=(CASES / case / "stdout.txt").read_text())
    return meta


def test_status_through_the_pve_agent_reads_what_the_lab_guest_said(channel) -> None:  # type: ignore[no-untyped-def]
    sim, ch = channel
    meta = answer(sim, "status-drift", "### patchwave:reboot-timer")
    policy = au.AutoUpdatePolicy(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["policy"].items()}
    )
    found = au.status(ch, policy, os_info=DEBIAN, now=datetime.fromisoformat(meta["now"]))
    assert {d.item for d in found.drift} == {
        "Unattended-Upgrade::Automatic-Reboot",
        "apt-daily-upgrade.timer",
    }
    assert found == parse(meta, result("status-drift"))


def test_pause_busy_paused_and_restore_exit_statuses_survive_the_api(channel) -> None:  # type: ignore[no-untyped-def]
    sim, ch = channel
    answer(sim, "pause-busy", "marker kept")
    with pytest.raises(au.UpdaterBusy) as busy:
        au.pause(ch, "run-c", "vm:pve:qemu/100", os_info=DEBIAN, wait_s=2)
    assert busy.value.retryable and busy.value.busy == ("apt-daily-upgrade.service", "process")
    answer(sim, "apply-while-paused", "paused-by")
    policy = au.resolve_policy(AutoUpdateSettings(mode="coexist"), now=datetime.now(UTC))
    with pytest.raises(au.AutoUpdateError) as paused:
        au.apply(ch, au.plan(DEBIAN, policy))  # the whole apply script (~4 KiB) goes through the API
    assert paused.value.code == "paused"
    meta = answer(sim, "restore-done", "nothing paused")
    assert au.restore(ch, "run-b") == parse(meta, result("restore-done"))


def result(case: str) -> ExecResult:
    meta = json.loads((CASES / case / "case.json").read_text())
    return ExecResult(exit_code=meta["exit_code"], stdout=(CASES / case / "stdout.txt").read_text())
