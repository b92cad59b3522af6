"""The dry run's pure parts: what a VM's policy would apply, the SSH trust it turns off, its tables."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from orchestrator.cli.render import dry_run_tables
from orchestrator.dry_run import DryRun, VmPreview, selected_updates, without_first_use
from orchestrator.facts.records import SnapshotRecord
from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.guests.ssh import SshChannel, SshTarget
from orchestrator.model import Plan, UpdateMode, VmPolicy, VmStep, Wave
from providers.base import VmRef

VM = VmRef("dc1", "uuid-1", "web-[1]")
UPDATES = (
    PendingUpdate("openssl", "3.0.11", "3.0.15", security=True),
    PendingUpdate("tzdata", "2024a", "2025b", security=False),
    PendingUpdate("kernel", "5.14.0-1.el9", "5.14.0-2.el9", security=False),
)


def step(mode: UpdateMode = UpdateMode.ALL, pins: tuple[str, ...] = ()) -> VmStep:
    policy = VmPolicy(update_mode=mode, pins=pins, snapshot_ttl_s=7200, health_deadline_s=90)
    return VmStep(step_id="vm:dc1:uuid-1", vm=VM, group="web", ring="main", policy=policy,
                  est_duration_s=60, est_rollback_s=60, channel="ssh")  # fmt: skip


def test_the_policy_decides_what_of_the_pending_updates_a_run_applies() -> None:
    assert selected_updates(step(), "apt", UPDATES) == UPDATES
    assert [u.name for u in selected_updates(step(UpdateMode.SECURITY), "apt", UPDATES)] == ["openssl"]
    pinned = step(UpdateMode.PINNED, ("tzdata=2025b", "absent=1.0"))
    assert [u.name for u in selected_updates(pinned, "apt", UPDATES)] == ["tzdata"]
    nevra = step(UpdateMode.PINNED, ("kernel-5.14.0-2.el9.x86_64", "not a nevra"))
    assert [u.name for u in selected_updates(nevra, "dnf", UPDATES)] == ["kernel"]


def test_an_ssh_channel_that_trusts_on_first_use_does_not_in_a_dry_run() -> None:
    trusting = SshChannel(SshTarget("10.0.0.7", trust_on_first_use=True))
    careful = without_first_use(trusting, clock=None)  # type: ignore[arg-type]
    assert isinstance(careful, SshChannel) and careful is not trusting
    assert careful.target == SshTarget("10.0.0.7", trust_on_first_use=False)
    strict = SshChannel(SshTarget("10.0.0.8"))
    local = LocalChannel()
    assert without_first_use(strict, clock=None) is strict  # type: ignore[arg-type]
    assert without_first_use(local, clock=None) is local  # type: ignore[arg-type]


def test_the_tables_show_updates_notes_and_the_snapshots_a_cleanup_would_delete() -> None:
    assessed = step()
    failed = replace(assessed, step_id="vm:dc1:uuid-2", vm=VmRef("dc1", "uuid-2", "db-1"))
    wave = Wave(wave_id="main:0", ring="main", index=0, vms=(assessed, failed), concurrency=1, soak_s=600)
    plan = Plan(plan_id="abc", created_at="2026-01-01T00:00:00+00:00", sites=("dc1",), host_phase=(),
                waves=(wave,), blocked=(), failure_budget=0)  # fmt: skip
    expired = SnapshotRecord("run-1", "vm:dc1:uuid-1", VM, "pw-run-1", "snap-9", "kept", "", "2026-01-01", "")
    dry = DryRun(
        plan=plan,
        vms=(VmPreview(assessed, True, "Debian 12", "apt", UPDATES, UPDATES),
             VmPreview(failed, False, note="not assessed: guest unreachable [dc1/db-1]")),
        expired_snapshots=(expired,),
        notes=("no fact store at /x/facts.db yet",),
    )  # fmt: skip
    out = io.StringIO()
    console = Console(file=out, width=400, highlight=False)
    for table in dry_run_tables(dry):
        console.print(table)
    text = out.getvalue()
    assert "dc1/web-[1]" in text and "3 (1 security)" in text and "openssl 3.0.11->3.0.15" in text
    assert "not assessed: guest unreachable [dc1/db-1]" in text  # brackets are text, not markup
    assert "snapshot (kept 2h)" in text and "check health (<= 90s)" in text
    assert "soak 10m, then check the ring's health" in text
    assert "delete expired snapshots: dc1/web-[1] snap-9 (run run-1, expired 2026-01-01)" in text
    assert "no fact store at /x/facts.db yet" in text
