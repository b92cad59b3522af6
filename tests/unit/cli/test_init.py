"""``patchwave init``: connect, discover, write a starter file that ``plan`` accepts as it is.

Run as the real CLI (``python -m orchestrator.cli``) against libvirt's test driver and the PVE
simulator (an API token by environment variable: it must reach the file only as a reference).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.config import starter
from orchestrator.config.loader import parse_settings_text
from orchestrator.errors import ConfigError
from providers.base import Capability, HostInfo, HostRef, HostState, Inventory, PowerState, VmInfo, VmRef
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.vcsim.launcher import start_or_skip
from tests.support.paths import REPO

PVE_TOKEN = "pve-init-token-5f3a9c1e"
VC_PASSWORD = "vc-init-pw-8d2b7e41"


def patchwave(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "PYTHONPATH": str(REPO), "TZ": "UTC"}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


@pytest.fixture
def pvesim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02)) as sim:
        sim.auth.add_token("root@pam", "pwinit", PVE_TOKEN)
        yield sim


def test_init_on_libvirt_writes_a_file_plan_accepts_as_it_is(tmp_path: Path) -> None:
    config = tmp_path / "patchwave.toml"
    done = patchwave("-c", str(config), "init", "--provider", "libvirt", "--uri", "test:///default",
                     "--site", "kvm", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "1 VM(s)" in done.stdout and "canary: test" in done.stdout
    raw = tomllib.loads(config.read_text())
    assert raw["providers"]["kvm"] == {"kind": "libvirt", "uri": "test:///default"}
    assert raw["targets"]["names"] == ["kvm/*"]
    assert raw["groups"][0]["match"]["names"] == ["kvm/test"]
    assert raw["windows"]["weekly"]["timezone"] == "UTC"
    assert raw["hosts"]["patch"] == "none"  # a starter never patches hypervisors until told to
    assert [h["name"] for h in raw["health"]] == ["guest-responds"]

    planned = patchwave("-c", str(config), "--state-dir", str(tmp_path / "state"), "plan", "--output", "json",
                        cwd=tmp_path)  # fmt: skip
    assert planned.returncode == 0, planned.stderr
    # test:///default offers no guest agent: the VM is planned over SSH and blocked until its address is known
    assert "no IP address is known for kvm/test" in planned.stdout and "Traceback" not in planned.stderr


def test_init_refuses_to_replace_a_file_unless_forced(tmp_path: Path) -> None:
    config = tmp_path / "patchwave.toml"
    config.write_text("# mine\n")
    args = ("-c", str(config), "init", "--provider", "libvirt", "--uri", "test:///default")
    refused = patchwave(*args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "exists already" in refused.stderr and "--force" in refused.stderr
    assert config.read_text() == "# mine\n"
    forced = patchwave(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "[providers.libvirt]" in config.read_text()


def test_init_on_proxmox_keeps_the_token_a_reference(tmp_path: Path, pvesim: Simulator) -> None:
    config = tmp_path / "pve.toml"
    env = {"PVE_TOKEN": PVE_TOKEN}
    done = patchwave(
        "-c", str(config), "init", "--provider", "proxmox", "--site", "pve", "--host", "127.0.0.1",
        "--port", str(pvesim.port), "--user", "root@pam", "--token-name", "pwinit", "--token-env", "PVE_TOKEN",
        "--ca-file", str(pvesim.ca_file), "--canary", "1", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert PVE_TOKEN not in text + done.stdout + done.stderr
    table = tomllib.loads(text)["providers"]["pve"]
    assert table["token_value"] == {"env": "PVE_TOKEN"} and table["verify_ssl"] is True
    assert len(tomllib.loads(text)["groups"][0]["match"]["names"]) == 1
    planned = patchwave(
        "-c", str(config), "--state-dir", str(tmp_path / "state"), "plan", cwd=tmp_path, env=env
    )
    assert planned.returncode == 0, planned.stderr


def test_init_on_vsphere_connects_to_vcsim_and_plans_over_ssh(tmp_path: Path) -> None:
    sim = start_or_skip("-host", "2", "-vm", "3", "-pass", VC_PASSWORD, listen="127.0.0.2:0")
    try:
        table = sim.provider_table()
        config = tmp_path / "vc.toml"
        env = {"VC_PASSWORD": VC_PASSWORD}
        done = patchwave(
            "-c", str(config), "init", "--provider", "vsphere", "--site", "vc", "--host", str(table["host"]),
            "--port", str(table["port"]), "--user", str(table["user"]), "--password-env", "VC_PASSWORD",
            "--ca-file", str(table["ca_file"]), cwd=tmp_path, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        text = config.read_text()
        assert VC_PASSWORD not in text + done.stdout + done.stderr
        raw = tomllib.loads(text)
        assert raw["providers"]["vc"]["password"] == {"env": "VC_PASSWORD"}
        assert raw["providers"]["vc"]["insecure"] is False  # TLS verified against the CA given
        assert raw["guests"]["channel"] == "ssh"  # VMware Tools guest operations need guest credentials
        assert len(raw["groups"][0]["match"]["names"]) == 2
        planned = patchwave(
            "-c", str(config), "--state-dir", str(tmp_path / "state"), "plan", cwd=tmp_path, env=env
        )
        assert planned.returncode == 0, planned.stderr
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--provider", "xen"), "--provider"),
        (("--provider", "libvirt"), "--uri"),
        (("--provider", "proxmox", "--host", "pve1", "--user", "u@pam"), "--token-name"),
        (("--provider", "vsphere", "--host", "vc", "--user", "u"), "--password-env"),
        (("--provider", "libvirt", "--uri", "test:///default", "--site", "a.b"), "--site"),
    ],
)
def test_init_bad_options_exit_2_naming_the_option(tmp_path: Path, args: tuple[str, ...], field: str) -> None:
    done = patchwave("-c", str(tmp_path / "x.toml"), "init", *args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert field in done.stderr and "fix:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.toml").exists()


def test_render_quotes_odd_names_and_lists_suggestions_per_vm_with_an_address() -> None:
    host = HostInfo(HostRef("s", "h1", "h1"), HostState.CONNECTED, "h1")
    vms = (
        VmInfo(VmRef("s", "1", 'we"ird\\vm'), PowerState.RUNNING, ip_addresses=("10.0.0.5",)),
        VmInfo(VmRef("s", "2", "b-stopped"), PowerState.STOPPED),
        VmInfo(VmRef("s", "3", "a-running"), PowerState.RUNNING, unsupported=(Capability.GUEST_EXEC,)),
    )
    text = starter.render(
        site="s", table={"kind": "libvirt", "uri": "test:///default"}, inventory=Inventory("s", (host,), vms),
        canary=2, channel="agent", timezone="Europe/Berlin", written_at=datetime(2026, 12, 4).astimezone(),
    )  # fmt: skip
    raw = tomllib.loads(text)
    assert raw["groups"][0]["match"]["names"] == [
        "s/a-running",
        's/we"ird\\vm',
    ]  # running ones first, by name
    assert '# address = "{ip}:22"' in text and "10.0.0.5" in text
    settings = parse_settings_text(text, file=Path("/nonexistent/patchwave.toml"), environ={})
    assert settings.windows[0].name == "weekly"
    assert {o.name: o.channel for o in settings.guests.overrides} == {"s/a-running": "ssh"}  # no agent there


def test_provider_table_writes_secrets_only_as_references() -> None:
    table = starter.provider_table(
        starter.Connection(kind="vsphere", host="vc", user="u", password_file="/etc/pw", insecure=True)
    )
    assert table == {
        "kind": "vsphere",
        "host": "vc",
        "user": "u",
        "password": {"file": "/etc/pw"},
        "insecure": True,
    }
    with pytest.raises(ConfigError, match="not both"):
        starter.provider_table(
            starter.Connection(
                kind="proxmox", host="p", user="u", password_env="A", token_name="t", token_env="B"
            )
        )


def test_shell_completion_is_typers_for_the_patchwave_command(tmp_path: Path) -> None:
    done = patchwave("--show-completion", "bash", cwd=tmp_path, env={"SHELL": "/bin/bash"})
    assert done.returncode == 0, done.stderr
    assert "_PATCHWAVE_COMPLETE=complete_bash" in done.stdout and "complete " in done.stdout
