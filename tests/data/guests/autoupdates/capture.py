"""Re-create the autoupdates captures in this folder (provenance record; not run by the tests).

    flock /tmp/patchwave-lab.lock .venv/bin/python tests/data/guests/autoupdates/capture.py

Brings up the real Debian lab (one guest, pw-lab-1: the image with unattended-upgrades 2.9.1+nmu3,
its apt-daily timers masked), runs the commands ``orchestrator.autoupdates`` builds through SSH in a
fixed sequence (fresh image -> apply -> drift -> pause/restore -> a real unattended-upgrade run that
a pause waits for -> a run that fails on a held dpkg lock -> a dry run -> off) and writes one case
per step: stdout.txt, stderr.txt (empty: SSH merges nothing, the commands fold stderr into their
sections), case.json (command, exit status, parser, the OS and policy the parser is given, ``now``,
source) and expected.json (written by the current parser, then reviewed by hand). Outputs are
written as they came. ``rhel/status-not-installed`` is the dnf-automatic status command run in the
same Debian guest: real systemd, shell and journalctl output of a machine without dnf-automatic.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from orchestrator import autoupdates as au
from orchestrator.autoupdates.change import apply_command
from orchestrator.autoupdates.pause import pause_command, restore_command
from orchestrator.autoupdates.status import status_command
from orchestrator.autoupdates.units import updater_for
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.guests.osinfo import OsInfo, detect_os
from orchestrator.guests.ssh import SshChannel
from orchestrator.windows import WindowSpec
from patchwave_lab import control as lab
from patchwave_lab import repo
from providers.base import ExecResult
from providers.errors import ProviderError

SOURCE = (
    "real Debian 12 lab guest pw-lab-1 (patchwave_lab image with unattended-upgrades 2.9.1+nmu3), over SSH"
)
NIGHTLY = WindowSpec("nightly", "0 2 * * *", 4 * 3600, "Europe/Berlin")
HOLD_LOCK = (  # waits for the lock (F_SETLKW): a restored timer may have started an update meanwhile
    "nohup perl -MFcntl -e '"
    '$| = 1; open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die "open: $!"; '
    'my $lock = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0); '
    'fcntl($f, F_SETLKW, $lock) or die "lock: $!"; print "locked\\n"; '
    "sleep 300' </dev/null >/tmp/lock.log 2>&1 & for i in $(seq 1200); do grep -q locked /tmp/lock.log && break; sleep 0.1; done; "
    "cat /tmp/lock.log"
)


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Capture:
    def __init__(self, channel: SshChannel, os_info: OsInfo) -> None:
        self.channel, self.os_info = channel, os_info

    def case(self, family: str, name: str, command: str, parser: str, *, policy: au.AutoUpdatePolicy | None = None,
             timeout: float = 600) -> ExecResult:  # fmt: skip
        result = self.channel.run(command, timeout=timeout)
        now = datetime.now(UTC)
        meta = {"command": command, "exit_code": result.exit_code, "parser": parser, "source": SOURCE,
                "now": now.isoformat(timespec="seconds"), "os": dataclasses.asdict(self.os_info)}  # fmt: skip
        if policy is not None:
            meta["policy"] = dataclasses.asdict(policy)
        write(HERE / family / name, result, meta)
        print(f"{family}/{name}: exit {result.exit_code}", flush=True)
        return result


def write(case: Path, result: ExecResult, meta: dict[str, Any]) -> None:
    from tests.unit.autoupdates.test_captures import parse  # the same dispatch the tests use

    case.mkdir(parents=True, exist_ok=True)
    (case / "stdout.txt").write_text(result.stdout)
    (case / "stderr.txt").write_text(result.stderr)
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    try:
        expected: dict[str, Any] = {"result": plain(parse(meta, result))}
    except ProviderError as exc:
        expected = {"error": {"code": exc.code, "retryable": exc.retryable}}
    (case / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


def policy(mode: str = "coexist", **kw: Any) -> au.AutoUpdatePolicy:
    settings = AutoUpdateSettings(mode=mode, origins=(repo.SECURITY_ORIGIN_PATTERN,), **kw)
    window = NIGHTLY if kw.get("reboot") == "window" else None
    return au.resolve_policy(settings, now=datetime.now(UTC), group="lab", window=window)


def sequence(cap: Capture, guest: Any, state_dir: Path) -> None:
    os_info, updater = cap.os_info, updater_for(cap.os_info)
    coexist = policy(reboot="window")
    status = status_command(os_info)
    cap.case("debian", "status-fresh-image", status, "status", policy=policy("unmanaged"))
    cap.case("debian", "status-fresh-image-coexist", status, "status", policy=coexist)
    cap.case("debian", "apply-first", apply_command(au.plan(os_info, coexist)), "apply")
    cap.case("debian", "apply-unchanged", apply_command(au.plan(os_info, coexist)), "apply")
    cap.case("debian", "status-compliant", status, "status", policy=coexist)
    lab.ssh_run(guest, "echo 'Unattended-Upgrade::Automatic-Reboot \"true\";' > /etc/apt/apt.conf.d/99local; "
                       "systemctl disable --now apt-daily-upgrade.timer")  # fmt: skip
    cap.case("debian", "status-drift", status, "status", policy=coexist)
    lab.ssh_run(guest, "rm -f /etc/apt/apt.conf.d/99local")
    au.apply(cap.channel, au.plan(os_info, coexist))
    cap.case("debian", "pause-new", pause_command(updater, "run-a", "vm:lab:1", wait_s=60), "pause")
    cap.case("debian", "pause-kept", pause_command(updater, "run-a", "vm:lab:1", wait_s=60), "pause")
    cap.case("debian", "status-paused", status, "status", policy=coexist)
    cap.case("debian", "apply-while-paused", apply_command(au.plan(os_info, coexist)), "apply")
    cap.case("debian", "restore-other-run", restore_command("run-b"), "restore")
    cap.case("debian", "pause-adopted", pause_command(updater, "run-b", "vm:lab:1", wait_s=60), "pause")
    cap.case("debian", "restore-done", restore_command("run-b"), "restore")
    cap.case("debian", "restore-nothing", restore_command("run-b"), "restore")
    real_run(cap, guest, state_dir, coexist)
    failed_run(cap, guest, coexist)
    lab.ssh_run(guest, "apt-get -q update >/dev/null 2>&1; unattended-upgrade --dry-run >/dev/null 2>&1")
    cap.case("debian", "status-after-dry-run", status, "status", policy=coexist)
    off = policy("off")
    cap.case("debian", "apply-off", apply_command(au.plan(os_info, off)), "apply")
    cap.case("debian", "status-off", status, "status", policy=off)
    rocky = OsInfo("rocky", "9.4", "rhel", "Rocky Linux 9.4 (Blue Onyx)")
    cap.os_info = rocky
    cap.case("rhel", "status-not-installed", status_command(rocky), "status", policy=policy("security"))


def real_run(cap: Capture, guest: Any, state_dir: Path, coexist: au.AutoUpdatePolicy) -> None:
    """A real unattended-upgrade run (demo-app 1.1 from the security pocket) that a pause waits for."""
    updater = updater_for(cap.os_info)
    lab.publish(state_dir, "good", pocket="security")
    lab.ssh_run(
        guest, "apt-get -q update >/dev/null 2>&1; systemctl start --no-block apt-daily-upgrade.service"
    )
    for _ in range(120):
        if "bin/unattended-upgrade" in lab.ssh_run(guest, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")[1]:
            break
        time.sleep(0.5)
    cap.case("debian", "status-running", status_command(cap.os_info), "status", policy=coexist)
    cap.case("debian", "pause-busy", pause_command(updater, "run-c", "vm:lab:1", wait_s=2), "pause")
    cap.case("debian", "pause-waited", pause_command(updater, "run-c", "vm:lab:1", wait_s=300), "pause")
    au.restore(cap.channel, "run-c")
    cap.case("debian", "status-after-upgrade", status_command(cap.os_info), "status", policy=coexist)
    lab.publish(state_dir, "none", pocket="security")


def failed_run(cap: Capture, guest: Any, coexist: au.AutoUpdatePolicy) -> None:
    """unattended-upgrade while another process holds the dpkg frontend lock (an fcntl lock, as apt
    takes it): it logs "Lock could not be acquired". Started directly: apt-daily-upgrade.service
    only runs it when its periodic stamps say so, and it writes the same log either way."""
    assert lab.ssh_run(guest, HOLD_LOCK)[1].strip() == "locked"
    lab.ssh_run(guest, "unattended-upgrade; echo exit=$?")
    cap.case("debian", "status-after-failed-run", status_command(cap.os_info), "status", policy=coexist)
    lab.ssh_run(guest, "kill $(pidof perl) 2>/dev/null; true")


def main() -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="pw-au-capture-"))
    state = lab.up(state_dir, guests=1)
    guest = state.guests[0]
    channel = SshChannel(lab.ssh_target(guest))
    try:
        sequence(Capture(channel, detect_os(channel)), guest, state_dir)
    finally:
        channel.close()
        lab.down(state_dir)


if __name__ == "__main__":
    main()
