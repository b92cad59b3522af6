"""Bad input at the command line: exit code 2, one clear line on stderr, never a traceback.

The CLI runs as a real process (``python -m orchestrator.cli``) against the libvirt test driver.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from orchestrator.cli.errors import run_guarded
from tests.support.loopback import unused_port
from tests.support.paths import REPO

TESTDRIVER = REPO / "patchwave_lab" / "configs" / "testdriver.toml"


def patchwave(*args: str, cwd: Path, env_config: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "PYTHONPATH": str(REPO)}
    if env_config is not None:
        env["PATCHWAVE_CONFIG"] = env_config
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_bad_input(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith(("config error:", "error:"))]
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_missing_config_file_is_bad_input(tmp_path: Path) -> None:
    done = patchwave("-c", str(tmp_path / "nope.toml"), "plan", cwd=tmp_path)
    assert_bad_input(done, "config error:", "nope.toml", "cannot read the file", "fix:")


def test_the_default_config_comes_from_the_environment(tmp_path: Path) -> None:
    done = patchwave("plan", cwd=tmp_path, env_config=str(tmp_path / "from-env.toml"))
    assert_bad_input(done, "from-env.toml")


def test_invalid_toml_is_bad_input_naming_the_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[state]\ndir = "x"\n[providers.test\nkind = "libvirt"\n')
    done = patchwave("-c", str(config), "inventory", cwd=tmp_path)
    assert_bad_input(done, "config error:", "broken.toml", "not valid TOML", "line 3")


def test_an_unknown_vm_name_is_bad_input_with_the_names_that_exist(tmp_path: Path) -> None:
    done = patchwave(
        "-c", str(TESTDRIVER), "--state-dir", str(tmp_path / "state"), "plan", "--vm", "tset", cwd=tmp_path
    )
    assert_bad_input(done, "'tset'", "'test'")


def test_run_refuses_an_unknown_vm_before_starting_anything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = patchwave(
        "-c", str(TESTDRIVER), "--state-dir", str(state), "run", "--vm", "no-such-vm", cwd=tmp_path
    )
    assert_bad_input(done, "'no-such-vm'")
    assert not (state / "temporal.db").exists(), "no Temporal server may be started for a bad selection"


def test_a_dry_run_refuses_an_unknown_vm_and_creates_no_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = patchwave(
        "-c", str(TESTDRIVER), "--state-dir", str(state), "run", "--dry-run", "--vm", "tset", cwd=tmp_path
    )
    assert_bad_input(done, "'tset'", "'test'")
    assert not state.exists()


def test_an_unreachable_temporal_address_is_bad_input(tmp_path: Path) -> None:
    address = f"127.0.0.1:{unused_port()}"
    done = patchwave(
        "-c",
        str(TESTDRIVER),
        "--state-dir",
        str(tmp_path / "state"),
        "--temporal-address",
        address,
        "run",
        cwd=tmp_path,
    )
    assert_bad_input(done, address, "fix:")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--log-format", "yaml", "plan"), "--log-format"),
        (("snapshots", "cleanup", "--all"), "--all needs --run"),
        (("run", "--output", "json"), "--dry-run"),
        (("run", "--dry-run", "--output", "yaml"), "--output"),
        (("serve", "--site", "nowhere"), "no such site: nowhere"),
        (("serve", "--no-central"), "nothing to serve"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    done = patchwave("-c", str(TESTDRIVER), "--state-dir", str(tmp_path / "state"), *args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert fragment in done.stderr


def test_status_of_an_unknown_run_is_bad_input(tmp_path: Path) -> None:
    done = patchwave(
        "-c", str(TESTDRIVER), "--state-dir", str(tmp_path / "state"), "status", "run-nope", cwd=tmp_path
    )
    assert_bad_input(done, "run-nope", "patchwave status")


def test_resuming_with_a_changed_configuration_is_bad_input(tmp_path: Path) -> None:
    from orchestrator.facts.store import FactStore
    from orchestrator.model import Plan

    state = tmp_path / "state"
    facts = FactStore(state / "facts.db")
    plan = Plan(
        plan_id="p1",
        created_at="2026-11-26T00:00:00+00:00",
        sites=("test",),
        host_phase=(),
        waves=(),
        blocked=(),
        failure_budget=0,
    )
    facts.create_run("run-old", plan=plan, config_digest="0" * 64, requested_by="test")
    facts.close()
    done = patchwave("-c", str(TESTDRIVER), "--state-dir", str(state), "resume", "run-old", cwd=tmp_path)
    assert_bad_input(done, "run-old", "planned with config 000000000000", "fix:")
    assert not (state / "temporal.db").exists()


def test_an_inline_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = tmp_path / "inline.toml"
    config.write_text(
        '[providers.vc]\nkind = "vsphere"\nhost = "vc.example"\nuser = "admin"\npassword = "hunter2-Secret!"\n'
        '[targets]\nnames = ["*"]\n'
    )
    done = patchwave("-c", str(config), "plan", cwd=tmp_path)
    assert_bad_input(done, "config error:", "password")
    assert "hunter2" not in done.stderr + done.stdout


def test_snapshots_cleanup_reports_an_unreachable_provider_in_one_line(tmp_path: Path) -> None:
    """The library's ProviderError reaches the CLI as itself (not a Temporal ApplicationError)."""
    from orchestrator.facts.store import FactStore
    from providers.base import VmRef

    config = tmp_path / "down.toml"
    down = f'uri = "qemu+tcp://127.0.0.1:{unused_port()}/system"'  # libvirtd not running there
    config.write_text(TESTDRIVER.read_text().replace('uri = "test:///default"', down))
    state = tmp_path / "state"
    facts = FactStore(state / "facts.db")
    vm = VmRef("test", "6695eb01-f6a4-8304-79aa-97f2502e193f", "test")
    facts.register_snapshot_intent(
        "run-old", "vm:test:1", vm, "pw-run-old", expires_at="2026-01-01T00:00:00+00:00"
    )
    facts.register_snapshot_created("run-old", "vm:test:1", "pw-run-old")
    facts.close()
    done = patchwave("-c", str(config), "--state-dir", str(state), "snapshots", "cleanup", cwd=tmp_path)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines == [lines[0]] and lines[0].startswith("error: ProviderUnavailable: "), done.stderr
    assert "127.0.0.1" in lines[0] and "ApplicationError" not in done.stderr

    from orchestrator.config.loader import load_settings
    from orchestrator.operations import cleanup
    from providers.errors import ProviderUnavailable

    settings = load_settings(config, state_dir=state)
    with pytest.raises(ProviderUnavailable):  # the library's own error, retry meaning intact
        cleanup(settings)


def test_a_typer_error_that_cannot_print_itself_is_one_line_with_its_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail() -> None:
        raise typer.TyperException("the option --x needs a value")

    assert run_guarded(fail) == typer.TyperException.exit_code
    assert capsys.readouterr().err == "error: the option --x needs a value\n"
