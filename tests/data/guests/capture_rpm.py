"""Re-create the *local* dnf and zypper captures (provenance record; not run by the tests).

    apt-get install dnf zypper createrepo-c rpm     # Debian 12 ships dnf 4.14.0 and zypper 1.14.42
    /opt/pw-venv/bin/python tests/data/guests/capture_rpm.py /tmp/pw-cap

Builds noarch RPMs with rpmbuild (pw-demo 1.0/1.1, pw-tool 2.0/2.1), a ``base`` and an ``updates``
rpm-md repository (createrepo_c) and attaches an updateinfo.xml to ``updates`` (modifyrepo_c) with a
security advisory (PWSA-2026:0001, Important, two CVEs, reboot suggested) and a bugfix advisory.
dnf runs with ``--installroot`` and zypper with ``--root`` (the ``root=`` option of our builders), so
this machine's own package state is never touched. The real Debian-packaged tools print everything
in these cases; nothing is edited. Captures found in public repositories live next to these, see
SOURCES.md in each folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "apt"))
from capture import _plain
from orchestrator.guests.dnf import Dnf
from orchestrator.guests.zypper import Zypper

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages import UpdateSelection
from providers.base import ExecResult

HERE = Path(__file__).resolve().parent
SPEC = """Name: {name}
Version: {version}
Release: 1
Summary: patchwave test package {name}
License: MIT
BuildArch: noarch
%description
patchwave test package {name} {version}
%install
mkdir -p %{{buildroot}}/usr/share/doc/{name}
echo {version} > %{{buildroot}}/usr/share/doc/{name}/VERSION
%files
/usr/share/doc/{name}/VERSION
"""
UPDATEINFO = HERE / "dnf" / "updateinfo.xml"  # the advisories attached to the updates repo


def write_case(
    folder: str, name: str, pm: object, command: str, result: ExecResult, parser: str, source: str
) -> None:
    case = HERE / folder / name
    case.mkdir(parents=True, exist_ok=True)
    (case / "stdout.txt").write_text(result.stdout)
    (case / "stderr.txt").write_text(result.stderr)
    meta = {"command": command, "exit_code": result.exit_code, "parser": parser, "source": source}
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    try:
        expected = {"result": _plain(getattr(pm, f"parse_{parser}")(result))}
    except PackageManagerError as exc:
        expected = {"error": {"code": exc.code, "retryable": exc.retryable}}
    (case / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    print(f"{folder}: {name}: exit {result.exit_code}: {json.dumps(expected)[:150]}")


def build_repos(work: Path) -> tuple[Path, Path]:
    top = work / "rpmbuild"
    shutil.rmtree(top, ignore_errors=True)
    for sub in ("SPECS", "RPMS", "BUILD", "SOURCES", "SRPMS"):
        (top / sub).mkdir(parents=True)
    repos = {"base": work / "repo-base", "updates": work / "repo-updates"}
    for repo in repos.values():
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir()
    for name, version, repo in (
        ("pw-demo", "1.0", "base"),
        ("pw-tool", "2.0", "base"),
        ("pw-demo", "1.1", "updates"),
        ("pw-tool", "2.1", "updates"),
    ):
        spec = top / "SPECS" / f"{name}-{version}.spec"
        spec.write_text(SPEC.format(name=name, version=version))
        subprocess.run(
            ["rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec)], check=True, capture_output=True
        )
        shutil.copy(top / "RPMS/noarch" / f"{name}-{version}-1.noarch.rpm", repos[repo])
    for repo in repos.values():
        subprocess.run(["createrepo_c", "-q", str(repo)], check=True)
    subprocess.run(
        ["modifyrepo_c", "--mdtype=updateinfo", str(UPDATEINFO), str(repos["updates"] / "repodata")],
        check=True,
        capture_output=True,
    )
    return repos["base"], repos["updates"]


def dnf_cases(work: Path, base: Path, updates: Path) -> None:
    root = work / "dnfroot"
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc/yum.repos.d").mkdir(parents=True)
    (root / "etc/yum.repos.d/pw.repo").write_text(
        f"[pw-base]\nname=patchwave base\nbaseurl=file://{base}\ngpgcheck=0\n"
        f"[pw-updates]\nname=patchwave updates\nbaseurl=file://{updates}\ngpgcheck=0\n"
    )
    ch = LocalChannel()
    pm = Dnf(root=str(root), lock_timeout=600)
    ch.run(f"dnf -y -q --installroot={root} install pw-demo-1.0-1 pw-tool-2.0-1", timeout=300)
    src = "dnf 4.14.0 (Debian 12 package) with --installroot; local rpm-md repos built by capture_rpm.py"
    run = lambda cmd: (cmd, ch.run(cmd, timeout=300))
    write_case("dnf", "list-updates-local", pm, *run(pm.list_updates_command()), "updates", src)
    # dnf's lock is a pid file; a live pid in it is "held" (dnf/lock.py ProcessLock). A sleeping
    # process stands in for the other dnf.
    holder = subprocess.Popen(["sleep", "120"])
    try:
        for lock in (root / "var/cache/dnf/metadata_lock.pid", root / "var/lib/dnf/rpmdb_lock.pid"):
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(str(holder.pid))
        short = Dnf(root=str(root), lock_timeout=3)
        write_case(
            "dnf",
            "list-updates-locked",
            short,
            *run(short.list_updates_command()),
            "updates",
            src + "; lock pid files held by a live process during the run",
        )
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait()
        for lock in (root / "var/cache/dnf/metadata_lock.pid", root / "var/lib/dnf/rpmdb_lock.pid"):
            lock.unlink(missing_ok=True)
    write_case(
        "dnf",
        "apply-pinned-missing",
        pm,
        *run(pm.apply_command(UpdateSelection("pinned", ("pw-tool-9.9-1.noarch",)))),
        "apply",
        src,
    )
    write_case("dnf", "apply-security", pm, *run(pm.apply_command(UpdateSelection("security"))), "apply", src)
    write_case(
        "dnf", "apply-security-nothing", pm, *run(pm.apply_command(UpdateSelection("security"))), "apply", src
    )
    write_case(
        "dnf",
        "apply-pinned",
        pm,
        *run(pm.apply_command(UpdateSelection("pinned", ("pw-tool-2.1-1.noarch",)))),
        "apply",
        src,
    )
    write_case("dnf", "apply-all-nothing", pm, *run(pm.apply_command(UpdateSelection("all"))), "apply", src)
    write_case(
        "dnf",
        "installed-some-missing",
        pm,
        *run(pm.installed_command(["pw-demo", "pw-tool", "nope"])),
        "installed",
        src,
    )


def zypper_cases(work: Path, base: Path, updates: Path) -> None:
    root = work / "zroot"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    # libzypp's global lock is /run/zypp.pid; keep ours inside the throwaway root.
    env = f"export ZYPP_LOCKFILE_ROOT={root}; "
    ch = LocalChannel()
    for alias, repo in (("pw-base", base), ("pw-updates", updates)):
        ch.run(f"{env}zypper --root {root} -n ar -G file://{repo} {alias}", timeout=120)
    ch.run(
        f"{env}zypper --root {root} -n --gpg-auto-import-keys ref && "
        f"zypper --root {root} -n in pw-demo-1.0-1 pw-tool-2.0-1",
        timeout=300,
    )
    pm = Zypper(root=str(root), lock_timeout=600)
    src = "zypper 1.14.42 (Debian 12 package) with --root; local rpm-md repos built by capture_rpm.py"
    run = lambda cmd: (cmd, ch.run(env + cmd, timeout=300))
    write_case("zypper", "list-updates-local", pm, *run(pm.list_updates_command()), "updates", src)
    write_case(
        "zypper", "lu-table-local", pm, *run(f"zypper --root {root} -n list-updates"), "list_updates", src
    )
    # A real zypper holds the lock: `zypper shell` keeps its zypp instance (and lock) while open.
    holder = subprocess.Popen(
        ["sh", "-c", f"sleep 60 | zypper --root {root} shell"],
        env={**os.environ, "ZYPP_LOCKFILE_ROOT": str(root)},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ch.run("sleep 3", timeout=10)
        short = Zypper(root=str(root), lock_timeout=2)
        write_case(
            "zypper",
            "list-updates-locked",
            short,
            *run(short.list_updates_command()),
            "updates",
            src + "; lock held by a concurrent `zypper shell`",
        )
    finally:
        os.killpg(holder.pid, signal.SIGTERM)
        holder.wait()
    write_case(
        "zypper",
        "apply-pinned-missing",
        pm,
        *run(pm.apply_command(UpdateSelection("pinned", ("pw-tool-9.9-1.noarch",)))),
        "apply",
        src,
    )
    write_case(
        "zypper", "apply-security", pm, *run(pm.apply_command(UpdateSelection("security"))), "apply", src
    )
    write_case(
        "zypper",
        "reboot-required-after-security",
        pm,
        *run(pm.reboot_required_command()),
        "reboot_required",
        src + "; run as root on the capture machine, so /run is the host's",
    )
    write_case(
        "zypper",
        "apply-pinned",
        pm,
        *run(pm.apply_command(UpdateSelection("pinned", ("pw-tool-2.1-1.noarch",)))),
        "apply",
        src,
    )
    write_case(
        "zypper", "apply-all-nothing", pm, *run(pm.apply_command(UpdateSelection("all"))), "apply", src
    )
    write_case(
        "zypper",
        "installed-some-missing",
        pm,
        *run(pm.installed_command(["pw-demo", "pw-tool", "nope"])),
        "installed",
        src,
    )


if __name__ == "__main__":
    work = Path(sys.argv[1])
    base, updates = build_repos(work)
    dnf_cases(work, base, updates)
    zypper_cases(work, base, updates)
