"""Configured secrets never leave patchwave's memory: not in logs, the fact store, Temporal's database,
reports, exception texts or CLI output. State files are private. TLS and SSH identities are verified.

Real runs through the real CLI (``python -m orchestrator.cli``, embedded Temporal, in-process workers):
* vSphere (our vcsim launcher started with a distinctive password, given by ``env``), JSON logs,
  one guest whose upgrade breaks (reverted; its fake guest stays broken, so FAILED), one whose
  snapshot fails permanently (an exception
  rendered into its outcome), and an apprise notification URL carrying a token (``env``) that points
  at a closed port (every delivery fails and is recorded);
* Proxmox (the PVE simulator, an API token given by ``file``), console logs;
* a run against vcsim with the wrong CA file (exit 1, "certificate verify failed", no traceback).
Then every byte is scanned — CLI stdout/stderr, every file under the state directories (facts.db,
temporal.db and their WAL files, raw), rendered reports — for each secret in plain text and base64.
(There is no SSH key passphrase setting yet, so none is scanned.)

SSH: a guest reached over SSH whose known_hosts entry holds another key is refused before anything
is snapshotted or patched: FAILED with the host-key reason in its outcome, and the run exits 1.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.facts.store import FactStore
from orchestrator.logs import log_file_of
from orchestrator.model import StepStatus
from tests.simulators.pvesim import SimConfig, Simulator
from tests.simulators.vcsim.launcher import Vcsim, start_or_skip
from tests.support.paths import REPO
from tests.support.platformbed import PlatformBed, build_platform_bed, unused_port

pytestmark = pytest.mark.e2e

VC_PASSWORD = f"vc-pw-{secrets.token_hex(8)}"
PVE_TOKEN = f"pve-token-{secrets.token_hex(8)}"
NOTIFY_TOKEN = f"hook-token-{secrets.token_hex(8)}"
SECRETS = (VC_PASSWORD, PVE_TOKEN, NOTIFY_TOKEN)
VMS = ("DC0_C0_RP0_VM0", "DC0_C0_RP0_VM1", "DC0_C0_RP0_VM2")


def encodings(secret: str) -> list[bytes]:
    """The secret's bytes, and its base64 forms at every alignment inside a longer base64 text."""
    raw = secret.encode()
    forms = [raw]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        skip = (offset * 4 + 2) // 3  # characters that still depend on the padding bytes
        forms.append(encoded[skip + 1 : -3])  # drop the edges that depend on neighbours
    return forms


def leaks(blob: bytes) -> list[str]:
    return [f"{s[:6]}...({form[:12]!r})" for s in SECRETS for form in encodings(s) if form and form in blob]


def scan_tree(root: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hits = leaks(path.read_bytes())
        if hits:
            found[str(path)] = hits
    return found


def cli(
    config: Path, *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "-c", str(config), *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def vcsim() -> Iterator[Vcsim]:
    sim = start_or_skip("-host", "2", "-vm", "3", "-balance", "-pass", VC_PASSWORD, listen="127.0.0.2:0")
    sim.password = VC_PASSWORD
    yield sim
    sim.stop()


@pytest.fixture
def pvesim() -> Iterator[Simulator]:
    with Simulator(SimConfig(task_duration=0.02)) as sim:
        sim.auth.add_token("root@pam", "pwscan", PVE_TOKEN)
        yield sim


def vsphere_bed(root: Path, sim: Vcsim, *, ca_file: Path | None = None) -> PlatformBed:
    table = sim.provider_table()
    provider = (
        f'kind = "vsphere"\nhost = "{table["host"]}"\nport = {table["port"]}\nuser = "{table["user"]}"\n'
        f'password = {{ env = "PW_SCAN_VC" }}\nca_file = "{ca_file or table["ca_file"]}"'
    )
    notify = '[notifications]\nurls = [{ env = "PW_SCAN_NOTIFY" }]\ntimeout = "2s"\n'
    return build_platform_bed(root, site="vc", provider_toml=provider, vms=VMS, broken=(VMS[2],), budget=2,
                              extra=notify)  # fmt: skip


def test_no_secret_reaches_logs_state_payloads_reports_or_output(tmp_path: Path, vcsim, pvesim) -> None:
    env = {
        "PW_SCAN_VC": VC_PASSWORD,
        "PW_SCAN_NOTIFY": f"json://127.0.0.1:{unused_port()}/hook?token={NOTIFY_TOKEN}",
    }
    outputs: list[str] = []

    # vSphere: one VM patched, one rolled back, one failing with a permanent snapshot fault.
    vc = vsphere_bed(tmp_path / "vc", vcsim)
    vcsim.add_fault(f"method=CreateSnapshot_Task,target={VMS[1]},fault=InvalidState,count=100")
    done = cli(vc.config, "--log-format", "json", "run", "--run-id", "run-scan-vc", env=env)
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 1, done.stderr[-3000:]
    facts = FactStore(vc.state / "facts.db")
    try:
        outcomes = {o.vm.name: o for o in facts.outcomes("run-scan-vc")}
    finally:
        facts.close()
    assert [outcomes[n].status for n in VMS] == [StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.FAILED]
    # VM2 was reverted in vCenter; its fake guest's "disk" is not vCenter's, so it stays broken.
    assert "still unhealthy after revert" in outcomes[VMS[2]].error
    assert "InvalidState" in outcomes[VMS[1]].error  # an exception was rendered into the record
    assert '"event": "run_finished"' in done.stderr  # the JSON logs were produced and are scanned

    # Proxmox: an API token from a file; console logs.
    token_file = tmp_path / "pve.token"
    token_file.write_text(PVE_TOKEN + "\n")
    token_file.chmod(0o600)
    provider = (
        f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {pvesim.port}\nca_file = "{pvesim.ca_file}"\n'
        f'user = "root@pam"\ntoken_name = "pwscan"\ntoken_value = {{ file = "{token_file}" }}\n'
        "poll_interval = 0.02"
    )
    pve = build_platform_bed(tmp_path / "pve", site="pve", provider_toml=provider, vms=("web-1", "app-1"))
    done = cli(pve.config, "--log-format", "console", "-v", "run", "--run-id", "run-scan-pve", env=env)
    outputs += [done.stdout, done.stderr, log_file_of(pve.state).read_text()]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "run_finished" in done.stderr

    # Reports and status listings render what the fact store holds.
    for bed in (vc, pve):
        for fmt in ("json", "html"):
            report = cli(
                bed.config, "report", "--format", fmt, "-o", str(bed.state / f"report.{fmt}"), env=env
            )
            assert report.returncode == 0, report.stderr
        outputs += [
            cli(bed.config, "status", env=env).stdout,
            cli(bed.config, "snapshots", "list", env=env).stdout,
        ]

    assert not [leaks(text.encode()) for text in outputs if leaks(text.encode())]
    for bed in (vc, pve):
        assert (bed.state / "temporal.db").stat().st_size > 0 and (bed.state / "report.html").exists()
        assert scan_tree(bed.state) == {}

    # State files are private: the directory 0700, the databases (and SQLite's side files) 0600.
    for bed in (vc, pve):
        assert stat.S_IMODE(bed.state.stat().st_mode) == 0o700
        for path in bed.state.iterdir():
            if path.name.startswith(("facts.db", "temporal.db")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_wrong_ca_file_fails_the_run_with_a_clear_tls_error(tmp_path: Path, vcsim) -> None:
    other = start_or_skip("-host", "1", "-vm", "1")  # a valid certificate that is not our server's
    try:
        bed = vsphere_bed(tmp_path / "tls", vcsim, ca_file=other.cert_file)
        done = cli(bed.config, "--log-format", "json", "run", "--run-id", "run-tls",
                   env={"PW_SCAN_VC": VC_PASSWORD, "PW_SCAN_NOTIFY": "json://127.0.0.1:1/x"})  # fmt: skip
    finally:
        other.stop()
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "certificate verify failed" in line.lower() or "tls verification failed" in line.lower(), line
    assert all(g.patches() == [] for g in bed.guests.values())
    assert not leaks((done.stdout + done.stderr).encode())


def test_a_guest_with_a_wrong_known_hosts_entry_is_refused_before_any_patch(tmp_path: Path, pvesim) -> None:
    """The guest's SSH endpoint is a PVE simulator node's SSH server; known_hosts names another key."""
    import paramiko

    server = next(iter(pvesim.ssh_servers.values()))
    key_file = pvesim.client_key(tmp_path / "id_ed25519")
    wrong = paramiko.ECDSAKey.generate()  # any valid key that is not the server's
    entry = f"{wrong.get_name()} {wrong.get_base64()}"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{server.port} {entry}\n")
    token_file = tmp_path / "pve.token"
    token_file.write_text(PVE_TOKEN)
    provider = (
        f'kind = "proxmox"\nhost = "127.0.0.1"\nport = {pvesim.port}\nca_file = "{pvesim.ca_file}"\n'
        f'user = "root@pam"\ntoken_name = "pwscan"\ntoken_value = {{ file = "{token_file}" }}\n'
        "poll_interval = 0.02"
    )
    ssh = (
        f'[guests.overrides."app-1"]\nchannel = "ssh"\n'
        f'ssh = {{ host = "127.0.0.1", port = {server.port}, user = "root", key_file = "{key_file}", '
        f'known_hosts = "{known_hosts}" }}\n'
    )
    bed = build_platform_bed(tmp_path / "ssh", site="pve", provider_toml=provider, vms=("web-1",), extra=ssh)
    text = bed.config.read_text().replace('names = ["web-1"]', 'names = ["web-1", "app-1"]')
    bed.config.write_text(text)
    done = cli(bed.config, "--log-format", "json", "run", "--run-id", "run-hostkey", env={})
    assert "Traceback" not in done.stdout + done.stderr
    facts = FactStore(bed.state / "facts.db")
    try:
        outcomes = {o.vm.name: o for o in facts.outcomes("run-hostkey")}
        refused = outcomes["app-1"]
        assert outcomes["web-1"].status is StepStatus.SUCCEEDED, outcomes["web-1"]
        assert refused.status is StepStatus.FAILED, refused  # not checked is not "skipped": never green
        assert refused.error.startswith("not touched: baseline health check could not run: HostKeyRejected")
        assert "host key" in refused.error.lower(), refused.error
        assert facts.snapshots(run_id="run-hostkey") == [] or all(
            s.vm.name != "app-1" for s in facts.snapshots(run_id="run-hostkey")
        )
        assert not any(r.action == "patch" for r in facts.step_history("run-hostkey", refused.step_id))
    finally:
        facts.close()
    # A guest that could not be checked fails the run (exit codes in docs/ARCHITECTURE.md); web-1 is
    # still patched (failure_budget 1).
    assert done.returncode == 1, done.stderr[-3000:]
    assert "HostKeyRejected" in done.stderr and "does not match" in done.stderr
