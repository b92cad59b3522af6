"""``vm_restore_autoupdates`` writes the run's holds before it restores the updater (``coexist``).

The real activity runs in Temporal's ActivityEnvironment over a real SQLite fact store; the guest is
a ``/bin/sh`` whose root is a temporary directory (the scripts' absolute paths are rewritten there),
so the hold and restore scripts really run. What the journal says the run installed decides:
a later ring's pins + the versions it held back are held; a patch without pins releases the previous
run's holds; no patch intent leaves them alone; a guest where holds cannot be written is restored
anyway (never left paused).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from orchestrator.autoupdates import holds as h
from orchestrator.config.loader import parse_settings_text
from orchestrator.context import Context
from orchestrator.engine.activities.autoupdates import AutoUpdateActivities
from orchestrator.engine.payloads import VmTask
from orchestrator.facts.actions import Action
from orchestrator.facts.details import AutoUpdatePauseDetail, PatchIntent
from orchestrator.facts.pins import PinStore
from orchestrator.facts.store import FactStore
from orchestrator.model import VmPolicy, VmStep
from orchestrator.promotion.pins import HeldBack
from providers.base import ExecResult, VmRef

CONFIG = """
[providers.td]
kind = "libvirt"
uri = "test:///default"

[autoupdates]
mode = "{mode}"
origins = ["origin=patchwave-lab,codename=${{distro_codename}}-security,label=patchwave-lab-Security"]
"""
OS_RELEASE = 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'
RUN = "run-holds"
VM = VmRef("td", "1", "web1")
STEP = VmStep(
    "vm:td:1", VM, "default", "main", VmPolicy(), est_duration_s=60, est_rollback_s=60, channel="ssh"
)


class RootedShell:
    """A guest channel: ``sh -c`` with /etc and /var/lib/patchwave under ``root`` (no systemd)."""

    name = "local"

    def __init__(self, root: Path, *, os_release: str = OS_RELEASE) -> None:
        self.root = root
        (root / "etc" / "apt" / "apt.conf.d").mkdir(parents=True)
        (root / "var" / "lib" / "patchwave").mkdir(parents=True)
        (root / "etc" / "os-release").write_text(os_release)
        self.commands: list[str] = []

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        self.commands.append(command)
        rooted = command.replace("/var/lib/patchwave", f"{self.root}/var/lib/patchwave")
        rooted = rooted.replace("/etc/", f"{self.root}/etc/").replace("/usr/lib/os-release", "/nonexistent")
        done = subprocess.run(
            ["sh", "-c", rooted], check=False, capture_output=True, text=True, timeout=timeout
        )
        return ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    def ping(self, *, timeout: float) -> bool:
        return True

    def close(self) -> None:
        pass


class NoInventory:
    def get_vm(self, vm: VmRef) -> None:
        return None


def _activities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guest: RootedShell, mode: str = "coexist"
) -> tuple[AutoUpdateActivities, FactStore]:
    settings = parse_settings_text(
        CONFIG.format(mode=mode), file=tmp_path / "patchwave.toml", environ={}, state_dir=tmp_path / "state"
    )
    facts = FactStore(tmp_path / "facts.db")
    ctx = Context(settings, facts)
    monkeypatch.setattr(ctx, "provider", lambda site: NoInventory())
    monkeypatch.setattr(ctx, "guest_channel", lambda vm, info=None: guest)
    facts.record_intent(
        RUN, STEP.step_id, Action.AUTOUPDATES_PAUSE, target=str(VM), detail=AutoUpdatePauseDetail()
    )
    return AutoUpdateActivities(ctx), facts


def _restore(acts: AutoUpdateActivities, facts: FactStore) -> AutoUpdatePauseDetail:
    ActivityEnvironment().run(acts.vm_restore_autoupdates, VmTask(RUN, STEP, "2026-12-06T00:00:00+00:00"))
    [result] = [r for r in facts.step_history(RUN, STEP.step_id, action=Action.AUTOUPDATES_RESTORE)
                if r.phase == "result"]  # fmt: skip
    assert result.ok and isinstance(result.detail, AutoUpdatePauseDetail)
    return result.detail


def _patched(facts: FactStore, *, pins: tuple[str, ...], planned: dict[str, Any]) -> None:
    intent = PatchIntent("pinned" if pins else "all", job="j1", planned=planned, pins=pins)
    facts.record_intent(RUN, STEP.step_id, Action.PATCH, target=str(VM), detail=intent)


def test_a_later_rings_pins_and_held_back_versions_are_held_before_the_updater_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = RootedShell(tmp_path / "guest")
    acts, facts = _activities(tmp_path, monkeypatch, guest)
    _patched(facts, pins=("demo-app=1.1",), planned={"demo-app": "1.1"})
    PinStore(facts).record_held(RUN, STEP.step_id, vm=VM.name, os_key="debian-12",
                                held=[HeldBack("libssl3", "3.0.14", "3.0.16", "", "not tested")])  # fmt: skip
    detail = _restore(acts, facts)
    assert detail.holds == ("demo-app", "libssl3")
    held = h.parse_record((guest.root / "var/lib/patchwave/autoupdates.holds").read_text())
    assert held is not None and (held.run_id, held.packages) == (RUN, ("demo-app", "libssl3"))
    apt = (guest.root / "etc/apt/apt.conf.d/91patchwave-run-holds").read_text()
    assert '"^demo-app$";' in apt and '"^libssl3$";' in apt
    # the holds are written before the restore script runs (the updater never runs without them)
    hold_at = next(i for i, c in enumerate(guest.commands) if "91patchwave-run-holds" in c)
    restore_at = next(i for i, c in enumerate(guest.commands) if "nothing paused" in c)
    assert hold_at < restore_at


def test_a_patch_without_pins_releases_the_previous_runs_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = RootedShell(tmp_path / "guest")
    (guest.root / "var/lib/patchwave/autoupdates.holds").write_text("run_id=older\npackage=demo-app\n")
    (guest.root / "etc/apt/apt.conf.d/91patchwave-run-holds").write_text("// older\n")
    acts, facts = _activities(tmp_path, monkeypatch, guest)
    _patched(facts, pins=(), planned={"demo-app": "1.3"})
    assert _restore(acts, facts).holds == ()
    assert not (guest.root / "var/lib/patchwave/autoupdates.holds").exists()
    assert not (guest.root / "etc/apt/apt.conf.d/91patchwave-run-holds").exists()


def test_no_patch_intent_or_another_mode_leaves_the_holds_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = RootedShell(tmp_path / "guest")
    record = guest.root / "var/lib/patchwave/autoupdates.holds"
    record.write_text("run_id=older\npackage=demo-app\n")
    acts, facts = _activities(tmp_path, monkeypatch, guest)
    assert _restore(acts, facts).holds is None  # the run never reached the patch
    assert record.read_text() == "run_id=older\npackage=demo-app\n"

    off_guest = RootedShell(tmp_path / "off-guest")
    acts, facts = _activities(tmp_path / "off", monkeypatch, off_guest, mode="off")
    _patched(facts, pins=("demo-app=1.1",), planned={"demo-app": "1.1"})
    assert _restore(acts, facts).holds is None  # only coexist holds
    assert not any("91patchwave-run-holds" in c for c in off_guest.commands)


def test_a_guest_where_holds_cannot_be_written_is_restored_anyway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guest = RootedShell(tmp_path / "guest")
    (guest.root / "etc/apt/apt.conf.d").rmdir()
    (guest.root / "etc/apt/apt.conf.d").write_text("not a directory")
    acts, facts = _activities(tmp_path, monkeypatch, guest)
    _patched(facts, pins=("demo-app=1.1",), planned={"demo-app": "1.1"})
    detail = _restore(acts, facts)
    assert detail.holds is None and detail.state == "nothing"  # restored (nothing was paused here)
    assert any("nothing paused" in c for c in guest.commands)
