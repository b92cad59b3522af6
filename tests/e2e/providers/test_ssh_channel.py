"""Guest channels against real services, and GuestPatcher against a real (throwaway) Debian.

* SshChannel against a real OpenSSH server that the fixture starts on 127.0.0.1:<unused port> with a
  temporary host key and authorized_keys (tests/e2e/providers/openssh.py; the client underneath,
  providers.ssh, has its own tests in test_ssh_client.py).
* LocalChannel against this machine.
* GuestPatcher with LocalChannel(root=<chroot>) inside a bookworm chroot made by mmdebstrap, against
  local apt repositories built here with dpkg-deb; this machine's own dpkg state is never touched.

Needs root, openssh-server and mmdebstrap (``.ci/setup-guests.sh`` installs them).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.errors import GuestUnreachable, PackageManagerError, PackageManagerLocked
from orchestrator.guests.packages.base import PackageChange, UpdateSelection
from orchestrator.guests.patcher import GuestPatcher
from orchestrator.guests.ssh import SshChannel, SshTarget
from providers.errors import AuthenticationFailed, HostKeyRejected, ProviderTimeout
from tests.e2e.providers.openssh import SshServer, keygen, require_root
from tests.support.loopback import unused_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def channel(sshd: SshServer, known_hosts: Path) -> Iterator[SshChannel]:
    ch = SshChannel(sshd.target(known_hosts))
    yield ch
    ch.close()


# -- SshChannel ------------------------------------------------------------------------------


def test_ssh_runs_commands_with_output_exit_status_and_stdin(channel: SshChannel) -> None:
    ok = channel.run("echo out; echo err >&2", timeout=30)
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "out\n", "err\n")
    assert channel.run("exit 7", timeout=30).exit_code == 7
    assert channel.run("tr a-z A-Z", timeout=30, stdin="hello").stdout == "HELLO"
    big = channel.run("head -c 300000 /dev/zero | tr '\\0' x", timeout=60)
    assert big.stdout == "x" * 300000 and not big.stdout_truncated
    assert channel.ping(timeout=10) is True and channel.name == "ssh"


def test_ssh_sets_the_guest_environment_inside_the_command(channel: SshChannel) -> None:
    # sshd drops client environment (pitfall 11); the command exports it itself.
    out = channel.run('echo "$PATH|$LC_ALL|$DEBIAN_FRONTEND|$0"', timeout=30).stdout.strip()
    assert out == "/usr/sbin:/usr/bin:/sbin:/bin|C|noninteractive|/bin/sh"


def test_ssh_timeout_raises_and_the_channel_stays_usable(channel: SshChannel) -> None:
    with pytest.raises(ProviderTimeout):
        channel.run("sleep 30", timeout=1)
    assert channel.run("echo again", timeout=30).stdout == "again\n"


def test_unknown_host_key_is_refused_by_default(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected) as info:
        SshChannel(sshd.target(empty)).run("true", timeout=30)
    assert info.value.code == "host_key_unknown" and not info.value.retryable
    assert empty.read_text() == ""


@pytest.mark.parametrize("tofu", [False, True])
def test_wrong_host_key_is_refused_even_with_trust_on_first_use(
    sshd: SshServer, tmp_path: Path, tofu: bool
) -> None:
    other = keygen(tmp_path / "other_ed25519")
    wrong = tmp_path / "known_hosts"
    wrong.write_text(sshd.known_hosts_line(other))
    with pytest.raises(HostKeyRejected) as info:
        SshChannel(sshd.target(wrong, trust_on_first_use=tofu)).run("true", timeout=30)
    assert info.value.code == "host_key_mismatch"
    assert wrong.read_text() == sshd.known_hosts_line(other)  # nothing was overwritten


def test_trust_on_first_use_records_the_key_and_then_verifies_it(sshd: SshServer, tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "known_hosts"
    first = SshChannel(sshd.target(path, trust_on_first_use=True))
    assert first.run("echo first", timeout=30).stdout == "first\n"
    first.close()
    assert path.read_text() == sshd.known_hosts_line()
    assert path.stat().st_mode & 0o777 == 0o600
    strict = SshChannel(sshd.target(path))
    assert strict.run("echo verified", timeout=30).stdout == "verified\n"
    strict.close()


def test_wrong_client_key_fails_authentication(sshd: SshServer, known_hosts: Path, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    target = SshTarget(
        "127.0.0.1", sshd.port, "root", key_file=tmp_path / "stranger", known_hosts=known_hosts
    )
    with pytest.raises(AuthenticationFailed) as info:
        SshChannel(target).run("true", timeout=30)
    assert info.value.code == "auth"


def test_closed_port_is_unreachable_and_transient(known_hosts: Path, sshd: SshServer) -> None:
    target = SshTarget(
        "127.0.0.1",
        unused_port(),
        "root",
        key_file=sshd.client_key,
        known_hosts=known_hosts,
        connect_timeout=2,
    )
    channel = SshChannel(target)
    with pytest.raises(GuestUnreachable) as info:
        channel.run("true", timeout=10)
    assert info.value.retryable
    assert channel.ping(timeout=5) is False


def test_reconnects_after_the_server_restarts(sshd: SshServer, channel: SshChannel) -> None:
    before = channel.run("echo $PPID", timeout=30)
    assert before.ok
    sshd.stop()  # kills the listener and our live session, like a snapshot revert
    with pytest.raises(GuestUnreachable):
        channel.run("true", timeout=10)  # nothing listens now
    sshd.start()
    after = channel.run("echo back", timeout=30)
    assert after.stdout == "back\n"
    # A restart between two calls (the cached session is dead, nobody told us): reconnect silently.
    sshd.stop()
    sshd.start()
    assert channel.run("echo transparent", timeout=30).stdout == "transparent\n"


# -- LocalChannel ----------------------------------------------------------------------------


def test_local_channel_runs_with_the_guest_environment_only() -> None:
    ch = LocalChannel()
    out = ch.run(
        'echo "$PATH|$LC_ALL|$DEBIAN_FRONTEND|${HOME:-unset}"; cat >&2; exit 4', timeout=30, stdin="x"
    )
    assert out.stdout == "/usr/sbin:/usr/bin:/sbin:/bin|C|noninteractive|unset\n"
    assert (out.stderr, out.exit_code, out.signal) == ("x", 4, None)
    assert ch.ping(timeout=10) is True and ch.name == "local"


def test_local_channel_reports_signals() -> None:
    result = LocalChannel().run("kill -TERM $$", timeout=30)
    assert (result.exit_code, result.signal) == (None, signal.SIGTERM)


def test_local_channel_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    with pytest.raises(ProviderTimeout):
        LocalChannel().run(f"sleep 60 & echo $! > {pidfile}; wait", timeout=1)
    child = int(pidfile.read_text())
    for _ in range(100):  # bounded: reaped by init within moments
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"background child {child} survived the timeout")


# -- GuestPatcher in a throwaway Debian --------------------------------------------------------

REPOS = {
    "main": (
        {"Origin": "Debian", "Label": "Debian", "Suite": "stable", "Codename": "bookworm"},
        [("pw-demo", "1.0", ""), ("pw-tool", "2.0", ""), ("libodd++1", "1.0", "")],
    ),
    "updates": (
        {"Origin": "Debian", "Label": "Debian", "Suite": "stable-updates", "Codename": "bookworm-updates"},
        [("pw-tool", "2.1", ""), ("libodd++1", "1.1", "")],
    ),
    "security": (
        {
            "Origin": "Debian",
            "Label": "Debian-Security",
            "Suite": "stable-security",
            "Codename": "bookworm-security",
        },
        [
            (
                "pw-demo",
                "1.1",
                "touch /var/run/reboot-required\necho pw-demo >> /var/run/reboot-required.pkgs\n",
            )
        ],
    ),
}


def build_deb(out: Path, name: str, version: str, postinst: str) -> None:
    root = out / f"build-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: patchwave <t@example.invalid>\n"
        f"Description: patchwave test package\n"
    )
    if postinst:
        (root / "DEBIAN/postinst").write_text("#!/bin/sh\nset -e\n" + postinst)
        (root / "DEBIAN/postinst").chmod(0o755)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(out / f"{name}_{version}_all.deb")],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(root)


def build_repo(repo: Path, release: dict[str, str], packages: list[tuple[str, str, str]]) -> None:
    repo.mkdir(parents=True)
    for name, version, postinst in packages:
        build_deb(repo, name, version, postinst)
    index = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=repo, check=True, capture_output=True
    ).stdout
    (repo / "Packages").write_bytes(index)
    fields = "".join(f"{k}: {v}\n" for k, v in release.items())
    (repo / "Release").write_text(
        f"{fields}SHA256:\n {hashlib.sha256(index).hexdigest()} {len(index)} Packages\n"
    )


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_root("mmdebstrap", "dpkg-deb", "dpkg-scanpackages", "chroot")
    root = tmp_path_factory.mktemp("guest") / "root"
    built = subprocess.run(
        ["mmdebstrap", "--variant=apt", "--mode=root", "--quiet", "bookworm", str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if built.returncode != 0:
        pytest.fail(f"mmdebstrap could not build the throwaway Debian: {built.stderr[-1500:]}")
    for kind, (release, packages) in REPOS.items():
        build_repo(root / "srv/pw-repo" / kind, release, packages)
    (root / "etc/apt/sources.list").write_text("")
    for f in (root / "etc/apt/sources.list.d").glob("*"):
        f.unlink()
    (root / "etc/apt/sources.list.d/pw.list").write_text(
        "".join(f"deb [trusted=yes] file:/srv/pw-repo/{kind} ./\n" for kind in REPOS)
    )
    setup = LocalChannel(root=root).run(
        "apt-get -q update && apt-get -q -y install pw-demo=1.0 pw-tool=2.0 libodd++1=1.0", timeout=600
    )
    assert setup.ok, setup.stderr
    yield root
    mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [m for m in mounted if m.startswith(str(root))], "something is mounted inside the chroot"
    shutil.rmtree(root)


class HeldLock:
    """An fcntl write lock, the kind apt takes (flock(1) would be invisible to apt)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def test_patcher_reports_a_held_dpkg_lock_as_retryable(debian_root: Path) -> None:
    lock = HeldLock(debian_root / "var/lib/dpkg/lock-frontend")
    try:
        with pytest.raises(PackageManagerLocked) as info:
            GuestPatcher(LocalChannel(root=debian_root), lock_timeout=2).apply(
                UpdateSelection("all"), timeout=120
            )
    finally:
        lock.release()
    assert info.value.retryable and info.value.code == "lock_timeout"
    assert "lock-frontend" in info.value.output


def test_patcher_assesses_and_applies_security_pinned_and_all(debian_root: Path) -> None:
    patcher = GuestPatcher(LocalChannel(root=debian_root), lock_timeout=120)
    assert (patcher.os_info().id, patcher.os_info().family) == ("debian", "debian")

    assessment = patcher.assess()
    assert {(u.name, u.current, u.candidate, u.security) for u in assessment.updates} == {
        ("pw-demo", "1.0", "1.1", True),
        ("pw-tool", "2.0", "2.1", False),
        ("libodd++1", "1.0", "1.1", False),
    }
    assert not assessment.reboot_required
    assert assessment.kernel == os.uname().release

    security = patcher.apply(UpdateSelection("security"), timeout=600)
    assert security.changed == (PackageChange("pw-demo", "1.0", "1.1"),)
    assert security.reboot_required  # the package's postinst flagged /var/run/reboot-required
    assert patcher.installed(["pw-demo", "pw-tool", "absent"]) == {"pw-demo": "1.1", "pw-tool": "2.0"}

    pinned = patcher.apply(UpdateSelection("pinned", ("libodd++1=1.1",)), timeout=600)
    assert pinned.changed == (PackageChange("libodd++1", "1.0", "1.1"),)

    with pytest.raises(PackageManagerError) as info:
        patcher.apply(UpdateSelection("pinned", ("pw-tool=9.9",)), timeout=600)
    assert info.value.code == "apt_failed" and "9.9" in info.value.output

    everything = patcher.apply(UpdateSelection("all"), timeout=600)
    assert everything.changed == (PackageChange("pw-tool", "2.0", "2.1"),)
    again = patcher.apply(UpdateSelection("all"), timeout=600)
    assert again.nothing_to_do and again.changed == ()
    assert patcher.assess().updates == ()
