"""Re-create the apt captures in this folder (provenance record; not run by the tests).

    mmdebstrap --variant=apt --mode=root bookworm /tmp/pw-cap/chroot
    /opt/pw-venv/bin/python tests/data/guests/apt/capture.py /tmp/pw-cap/chroot

Everything except the ``host-*`` cases runs inside that throwaway chroot (its own dpkg database),
against three flat file: repositories built here with dpkg-deb: ``main``, ``updates`` and a
``security`` one whose Release file carries Debian's security labels (Origin Debian,
Label Debian-Security, Suite stable-security), so apt prints a genuine security origin for it.
The ``host-*`` cases are read-only commands (``apt-get -s``, ``apt list``) on this Debian 12 machine
against the real Debian mirrors. Outputs are written as they came; expected.json is written by the
current parser and was reviewed by hand.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Self

from orchestrator.guests.apt import Apt

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages import UpdateSelection
from providers.base import ExecResult

HERE = Path(__file__).resolve().parent

PACKAGES = {  # repo -> [(name, version, postinst)]
    "main": [("pw-demo", "1.0", ""), ("pw-tool", "2.0", ""), ("libodd++1", "1.0", "")],
    "updates": [("pw-tool", "2.1", ""), ("libodd++1", "1.1", "")],
    "security": [
        (
            "pw-demo",
            "1.1",
            "touch /var/run/reboot-required\necho pw-demo >> /var/run/reboot-required.pkgs\n",
        )
    ],
}
RELEASE = {
    "main": {
        "Origin": "Debian",
        "Label": "Debian",
        "Suite": "stable",
        "Codename": "bookworm",
        "Version": "12.12",
    },
    "updates": {
        "Origin": "Debian",
        "Label": "Debian",
        "Suite": "stable-updates",
        "Codename": "bookworm-updates",
    },
    "security": {
        "Origin": "Debian",
        "Label": "Debian-Security",
        "Suite": "stable-security",
        "Codename": "bookworm-security",
        "Version": "12",
    },
}


def build_deb(out: Path, name: str, version: str, postinst: str) -> None:
    root = out / f"build-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "VERSION").write_text(version + "\n")
    (root / "DEBIAN/control").write_text(
        textwrap.dedent(
            f"""\
            Package: {name}
            Version: {version}
            Architecture: all
            Maintainer: patchwave tests <tests@example.invalid>
            Description: patchwave test package {name}
            """
        )
    )
    if postinst:
        script = root / "DEBIAN/postinst"
        script.write_text("#!/bin/sh\nset -e\n" + postinst)
        script.chmod(0o755)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(out / f"{name}_{version}_all.deb")],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(root)


def build_repo(repo: Path, kind: str) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    for name, version, postinst in PACKAGES[kind]:
        build_deb(repo, name, version, postinst)
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (repo / "Packages").write_text(packages)
    digest = hashlib.sha256(packages.encode()).hexdigest()
    fields = "".join(f"{k}: {v}\n" for k, v in RELEASE[kind].items())
    (repo / "Release").write_text(
        f"{fields}Date: Thu, 26 Nov 2026 00:00:00 UTC\nSHA256:\n {digest} {len(packages.encode())} Packages\n"
    )


def write_case(group: str, name: str, command: str, result: ExecResult, parser: str, source: str) -> None:
    case = HERE / name
    case.mkdir(exist_ok=True)
    (case / "stdout.txt").write_text(result.stdout)
    (case / "stderr.txt").write_text(result.stderr)
    meta = {"command": command, "exit_code": result.exit_code, "parser": parser, "source": source}
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    pm = Apt()
    try:
        parsed = getattr(pm, f"parse_{parser}")(result)
        expected = {"result": _plain(parsed)}
    except PackageManagerError as exc:
        expected = {"error": {"code": exc.code, "retryable": exc.retryable}}
    (case / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(f"{group}: {name}: exit {result.exit_code}: {json.dumps(expected)[:160]}")


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}  # type: ignore[arg-type]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class HeldLock:
    """Holds an apt/dpkg lock file the way apt does (fcntl F_SETLK write lock; flock(1) would not do)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)

    def __enter__(self) -> Self:
        fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def main(chroot: Path) -> None:
    srv = chroot / "srv/pw-repo"
    shutil.rmtree(srv, ignore_errors=True)
    for kind in PACKAGES:
        build_repo(srv / kind, kind)
    (chroot / "etc/apt/sources.list").write_text("")
    for f in (chroot / "etc/apt/sources.list.d").glob("*"):
        f.unlink()
    (chroot / "etc/apt/sources.list.d/pw.list").write_text(
        "".join(f"deb [trusted=yes] file:/srv/pw-repo/{kind} ./\n" for kind in PACKAGES)
    )
    for f in ("var/run/reboot-required", "var/run/reboot-required.pkgs"):
        (chroot / f).unlink(missing_ok=True)
    ch = LocalChannel(root=chroot)
    pm = Apt(lock_timeout=600)
    ch.run(
        "apt-get -q update && apt-get -q -y --allow-downgrades install pw-demo=1.0 pw-tool=2.0 libodd++1=1.0",
        timeout=300,
    )
    src = "throwaway bookworm chroot (mmdebstrap --variant=apt), local file: repos built by capture.py"
    run = lambda cmd: (cmd, ch.run(cmd, timeout=300))

    write_case("apt", "list-updates-chroot", *run(pm.list_updates_command()), "updates", src)
    write_case("apt", "apt-list-upgradable-chroot", *run("apt list --upgradable"), "updates", src)
    write_case(
        "apt",
        "installed-some-missing",
        *run(pm.installed_command(["pw-demo", "pw-tool", "no-such-pkg"])),
        "installed",
        src,
    )
    write_case("apt", "reboot-required-no", *run(pm.reboot_required_command()), "reboot_required", src)
    with HeldLock(chroot / "var/lib/dpkg/lock-frontend"):
        short = Apt(lock_timeout=3)
        write_case(
            "apt",
            "apply-lock-frontend-held",
            *run(short.apply_command(UpdateSelection("all"))),
            "apply",
            src + "; lock-frontend held by a python fcntl lock during the run",
        )
    with HeldLock(chroot / "var/lib/apt/lists/lock"):
        short = Apt(lock_timeout=3)
        write_case(
            "apt",
            "list-updates-lists-lock-held",
            *run(short.list_updates_command()),
            "updates",
            src + "; /var/lib/apt/lists/lock held by a python fcntl lock during the run",
        )
    write_case(
        "apt",
        "apply-pinned-missing-version",
        *run(pm.apply_command(UpdateSelection("pinned", ("pw-tool=9.9",)))),
        "apply",
        src,
    )
    write_case("apt", "apply-security", *run(pm.apply_command(UpdateSelection("security"))), "apply", src)
    write_case("apt", "reboot-required-yes", *run(pm.reboot_required_command()), "reboot_required", src)
    write_case(
        "apt", "apply-security-nothing", *run(pm.apply_command(UpdateSelection("security"))), "apply", src
    )
    write_case(
        "apt",
        "apply-pinned",
        *run(pm.apply_command(UpdateSelection("pinned", ("libodd++1=1.1",)))),
        "apply",
        src,
    )
    write_case("apt", "apply-all", *run(pm.apply_command(UpdateSelection("all"))), "apply", src)
    write_case("apt", "apply-all-nothing", *run(pm.apply_command(UpdateSelection("all"))), "apply", src)
    write_case("apt", "needs-restart-not-installed", *run(pm.needs_restart_command()), "needs_restart", src)

    host = LocalChannel()

    def hrun(cmd: str) -> tuple[str, ExecResult]:
        return cmd, host.run(cmd, timeout=120)

    hsrc = "this Debian 12 machine (read-only simulation against the real Debian mirrors)"
    write_case(
        "apt",
        "host-apt-get-s-upgrade",
        *hrun(Apt(refresh=False).list_updates_command()),
        "updates",
        hsrc,
    )
    write_case(
        "apt",
        "host-apt-list-upgradable",
        *hrun("apt list --upgradable"),
        "updates",
        hsrc,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
