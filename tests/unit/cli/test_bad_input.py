"""Bad input is bad input: exit code 2 and one line naming the field (or name) and the fix.

Each case runs the real CLI as a process (``python -m orchestrator.cli``) on libvirt's test driver,
like tests/unit/cli/test_cli.py; what a run recorded is written with the fact store's own API, so
no engine is needed to set the scene. A refused command must start nothing (no temporal.db).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.testbed import DriverBed, GuestSpec, build

SECRET_URL = "tgram://S3cretBotTokenXyz/12345"  # a Telegram URL whose bot token is malformed


def patchwave(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def one_error(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The one error line; bad input (exit 2) always names the fix."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.startswith(("config error:", "error:"))]
    assert len(lines) == 1, done.stderr
    for fragment in (*fragments, "(fix: ") if code == 2 else fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def bed(tmp_path: Path) -> DriverBed:
    specs = (GuestSpec("pw-web-1"), GuestSpec("pw-web-2"))
    return build(tmp_path / "bed", specs, port=unused_port())


def edit(bed: DriverBed, old: str, new: str) -> Path:
    text = bed.config.read_text()
    assert old in text, old
    bed.config.write_text(text.replace(old, new, 1))
    return bed.config


def record_run(bed: DriverBed, run_id: str, *, snapshotted: tuple[str, ...] = (), status: str = "") -> None:
    """A run of the bed's plan in the fact store: ``snapshotted`` VMs have a snapshot, the others
    were skipped (unhealthy before patching)."""
    from orchestrator.config.loader import load_settings
    from orchestrator.facts.store import FactStore
    from orchestrator.model import StepStatus, VmOutcome
    from orchestrator.operations import plan

    settings = load_settings(bed.config)
    made = plan(settings)
    facts = FactStore(settings.state.facts_path)
    try:
        facts.create_run(run_id, plan=made, config_digest=settings.digest, requested_by="test")
        for step in made.vm_steps:
            if step.vm.name in snapshotted:
                facts.register_snapshot_intent(run_id, step.step_id, step.vm, f"pw-{run_id}", expires_at="")
                facts.register_snapshot_created(run_id, step.step_id, f"snap-{step.vm.name}")
                facts.set_outcome(run_id, VmOutcome(step.step_id, step.vm, StepStatus.SUCCEEDED))
            else:
                why = "unhealthy before patching: demo-app: exit 1"
                facts.set_outcome(run_id, VmOutcome(step.step_id, step.vm, StepStatus.SKIPPED, error=why))
        if status:
            facts.set_run_status(run_id, status)
    finally:
        facts.close()


# ------------------------------------------------------------------------------ durations


def test_a_patch_timeout_that_would_overflow_is_refused_before_anything_starts(bed: DriverBed) -> None:
    """``patch_timeout = "25d"`` killed the first attempt with OverflowError (select/poll take a C int
    of milliseconds) after apt had already started: now the configuration is refused at load."""
    edit(bed, 'patch_timeout = "2m"', 'patch_timeout = "25d"')
    done = patchwave("-c", str(bed.config), "run", cwd=bed.root)
    one_error(done, 2, str(bed.config), "policy.patch_timeout", "at most 24d")
    assert not (bed.state / "temporal.db").exists()
    assert [g.upgrades() for g in bed.guests.values()] == [0, 0]


# ------------------------------------------------------------------------------ run ids


@pytest.mark.parametrize("command", ["status", "approve", "rollback", "resume"])
def test_an_unknown_run_is_bad_input_for_every_command(bed: DriverBed, command: str) -> None:
    record_run(bed, "run-known", snapshotted=("pw-web-1",))
    done = patchwave("-c", str(bed.config), command, "run-nope", cwd=bed.root)
    one_error(done, 2, "run-nope", "patchwave status")
    assert not (bed.state / "temporal.db").exists()


@pytest.mark.parametrize("command", ["status", "approve", "rollback", "resume"])
@pytest.mark.parametrize("run_id", ["run 1", "run/1", "x" * 201, "ünïcode", "run;rm -rf /"])
def test_a_run_id_outside_the_grammar_is_bad_input(bed: DriverBed, command: str, run_id: str) -> None:
    done = patchwave("-c", str(bed.config), command, run_id, cwd=bed.root)
    one_error(done, 2, "run id", "letters, digits")
    assert not (bed.state / "temporal.db").exists()


def test_a_finished_run_id_is_not_reused(bed: DriverBed) -> None:
    record_run(bed, "run-done", snapshotted=("pw-web-1", "pw-web-2"), status="succeeded")
    done = patchwave("-c", str(bed.config), "run", "--run-id", "run-done", cwd=bed.root)
    one_error(done, 2, "run run-done already exists (succeeded)", "leave out --run-id")
    assert "started" not in done.stderr
    assert not (bed.state / "temporal.db").exists()
    assert [g.upgrades() for g in bed.guests.values()] == [0, 0]


def test_run_refuses_an_invalid_run_id_before_starting(bed: DriverBed) -> None:
    done = patchwave("-c", str(bed.config), "run", "--run-id", "my run", cwd=bed.root)
    one_error(done, 2, "'my run'")
    assert not (bed.state / "temporal.db").exists()


def test_approving_a_finished_run_is_bad_input(bed: DriverBed) -> None:
    record_run(bed, "run-done", snapshotted=("pw-web-1",), status="succeeded")
    done = patchwave("-c", str(bed.config), "approve", "run-done", cwd=bed.root)
    one_error(done, 2, "run run-done is not running (succeeded)")


# ------------------------------------------------------------------------------ rollback


def test_rollback_of_a_vm_the_run_never_snapshotted_is_bad_input(bed: DriverBed) -> None:
    """pw-web-2 is in the run's plan but was skipped: there is nothing to revert, and saying so with
    exit 0 and an empty table would read as a successful rollback."""
    record_run(bed, "run-half", snapshotted=("pw-web-1",))
    done = patchwave("-c", str(bed.config), "rollback", "run-half", "--vm", "pw-web-2", cwd=bed.root)
    one_error(done, 2, "no snapshot to revert for 'pw-web-2'", "skipped", "snapshots list --run run-half")
    assert not (bed.state / "temporal.db").exists()


def test_rollback_of_a_run_without_snapshots_is_bad_input(bed: DriverBed) -> None:
    record_run(bed, "run-none")
    done = patchwave("-c", str(bed.config), "rollback", "run-none", cwd=bed.root)
    one_error(done, 2, "run run-none has no snapshot to revert", "recorded no snapshot")
    assert not (bed.state / "temporal.db").exists()


# ------------------------------------------------------------------------------ configuration


def test_a_notification_url_apprise_cannot_parse_is_refused_at_load(bed: DriverBed) -> None:
    """Accepted at load, such a URL made every notification fail silently during runs."""
    config = edit(bed, "[hosts]", '[notifications]\nurls = [{ env = "PATCHWAVE_NOTIFY_URL" }]\n\n[hosts]')
    done = patchwave("-c", str(config), "plan", cwd=bed.root, env={"PATCHWAVE_NOTIFY_URL": SECRET_URL})
    line = one_error(done, 2, str(config), "notifications.urls[0]", "apprise cannot use it", "tgram://")
    assert "S3cretBotToken" not in done.stdout + done.stderr, line


def test_a_notification_url_apprise_accepts_loads(bed: DriverBed) -> None:
    config = edit(bed, "[hosts]", '[notifications]\nurls = [{ env = "PATCHWAVE_NOTIFY_URL" }]\n\n[hosts]')
    done = patchwave("-c", str(config), "snapshots", "list", cwd=bed.root,
                     env={"PATCHWAVE_NOTIFY_URL": "json://127.0.0.1:9/hook"})  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("namespace", ["Ünïcode", "my namespace", "a/b", "-lead", "n" * 256])
def test_an_invalid_temporal_namespace_is_refused_by_plan(bed: DriverBed, namespace: str) -> None:
    """A non-ASCII namespace was accepted by `plan`; `run` then failed with "something went wrong"."""
    config = edit(bed, 'retention = "3d"', f'retention = "3d"\nnamespace = "{namespace}"')
    done = patchwave("-c", str(config), "plan", cwd=bed.root)
    one_error(done, 2, str(config), "temporal.namespace", "not a Temporal namespace name")


LIBVIRTD = pytest.mark.skipif(not Path("/var/run/libvirt/libvirt-sock").exists(),
                              reason="libvirtd is not running (its qemu driver refuses the URI)")  # fmt: skip


@pytest.mark.parametrize("uri", [pytest.param("qemu:///sytem", marks=LIBVIRTD),
                                 pytest.param("qemu:///system/", marks=LIBVIRTD),
                                 "test:///nonexistent/node.xml", "test://", "qemu:///system?mode=bogus"])  # fmt: skip
def test_a_libvirt_uri_libvirt_cannot_use_is_bad_input(bed: DriverBed, uri: str) -> None:
    """Refused by libvirt when connecting (decided by its error code and domain): exit 2, not 1."""
    config = edit(bed, f'uri = "{bed.libvirt_uri}"', f'uri = "{uri}"')
    done = patchwave("-c", str(config), "plan", cwd=bed.root)
    one_error(done, 2, "EndpointInvalid", "providers.td.uri", "correct the URI")


def test_a_libvirt_uri_that_is_no_uri_is_a_config_error(bed: DriverBed) -> None:
    config = edit(bed, f'uri = "{bed.libvirt_uri}"', 'uri = "qemu+tcp://[bad/system"')
    done = patchwave("-c", str(config), "plan", cwd=bed.root)
    one_error(done, 2, "config error:", "providers.td.uri", "not a libvirt connection URI")


def test_a_libvirt_daemon_that_does_not_answer_is_a_runtime_error(bed: DriverBed) -> None:
    config = edit(bed, f'uri = "{bed.libvirt_uri}"', 'uri = "qemu:///system?socket=/nonexistent/pw-sock"')
    done = patchwave("-c", str(config), "plan", cwd=bed.root)
    one_error(done, 1, "ProviderUnavailable", "/nonexistent/pw-sock")


# ------------------------------------------------------------------------------ a full state disk


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the state directory needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    """Write zeros into ``directory`` until its file system has no space left."""
    with open(directory / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass


def test_a_full_state_disk_is_named_with_the_fix(bed: DriverBed, small_disk: Path) -> None:
    """The fact store cannot be written (SQLite: "database or disk is full"): one line saying that the
    state directory's disk is full, its path and the fix — not an internal error."""
    state = small_disk / "state"
    state.mkdir()
    fill(small_disk)
    done = patchwave("-c", str(bed.config), "--state-dir", str(state), "snapshots", "list", cwd=bed.root)
    one_error(done, 1, f"the disk of the state directory {state} is full", "(fix: free space on that disk")
