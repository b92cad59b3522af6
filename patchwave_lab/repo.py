"""The lab's local apt repository: the ``demo-app`` packages, their index, and a tiny HTTP server.

Three versions of ``demo-app`` are built with ``dpkg-deb`` (byte-reproducible: fixed mtimes,
``SOURCE_DATE_EPOCH``, ``--root-owner-group``):

* ``1.0`` — preinstalled in the guest image. A systemd unit runs ``busybox httpd`` on :8080;
  ``GET /health`` answers ``ok``.
* ``1.1`` — the **good** update: ``/health`` stays ``ok``; its postinst touches
  ``/var/run/reboot-required`` (and lists itself in ``reboot-required.pkgs``).
* ``1.2`` — the **breaking** update: it drops ``/health``, so the check answers 404.
* ``1.3`` — the **slow** update: good, asks for a reboot, but its postinst sleeps 60 s (dpkg sits
  half-configured meanwhile): a patch that outlives ``patch_timeout``, a run killed mid-apt.
* ``1.4`` — the **no-return** update: good and asks for a reboot, but its postinst masks
  ``qemu-guest-agent`` and ``ssh`` (symlinks to /dev/null, no reload: the running boot keeps them),
  so the guest does not answer after its reboot. A revert of the (pre-patch) snapshot undoes it.
* ``1.5`` — the **sleepy** update: good, no reboot, its postinst sleeps 15 s (the crash campaign's
  lab injections kill the worker while dpkg sits there).

Which update a guest *sees* is chosen per guest: ``updates/<update>/`` holds ``1.0`` plus the
update's package (``none`` holds ``1.0`` only) and its ``Packages``/``Packages.gz`` index. A
*stacked* update (:data:`STACKED`, e.g. ``good+slow``) holds several: ``1.0``, ``1.1`` and ``1.3``,
like an archive that keeps the older versions — the newest is apt's candidate, ``demo-app=1.1`` stays
installable (pinned promotion). The
server serves ``www/``, where ``www/views/<guest>`` is a symlink to one of those update directories;
:func:`publish` swaps a guest's symlink atomically, so that guest's next ``apt-get update`` sees
exactly the published set, while another guest can be offered a different update in the same
rollout. A guest's main apt source is ``deb [trusted=yes] http://10.0.2.2:<port>/views/<guest>/ ./``
(slirp maps 10.0.2.2 to the host's loopback).

Two *pockets* (:data:`POCKETS`), like a distribution's main and security archives, so that
unattended-upgrades can tell them apart: ``main`` (``updates/<update>/``, served as ``/views/<guest>/``)
and ``security`` (``security/<update>/``, served as ``/security/<guest>/``: the guest's
``sources.list.d/patchwave-lab-security.list``). Each carries an unsigned flat ``Release`` file
(accepted with ``[trusted=yes]``; it lists the index hashes, apt refuses one without, and a fixed
past ``Date``) whose ``Origin``/``Label``/``Suite``/``Codename`` unattended-upgrades matches its
``Origins-Pattern`` against: :data:`SECURITY_ORIGIN_PATTERN` selects the security pocket only.

The server runs detached (``python -m patchwave_lab.repo serve ...``) so it outlives ``lab up``.
It ignores ``If-Modified-Since``: views are built in the same second, and a 304 would let apt
keep the previous view's index after a publish.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import http.server
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from orchestrator.environment import child_environment
from patchwave_lab.command import run_command
from patchwave_lab.errors import LabError

#: Fixed timestamp for every file in the packages (reproducible .debs -> stable image cache key).
SOURCE_DATE_EPOCH = 1_700_000_000
PACKAGE = "demo-app"
HEALTH_PORT = 8080  # inside the guest


@dataclass(frozen=True, slots=True)
class DemoVersion:
    version: str
    healthy: bool  # ships www/health
    reboot_required: bool  # postinst asks for a reboot
    postinst_sleep_s: int = 0  # postinst sleeps this long while configuring (the "slow" update)
    no_return: bool = False  # postinst masks the agent and sshd for the next boot ("no-return")


BASE = DemoVersion("1.0", healthy=True, reboot_required=False)
#: update name -> the version it publishes (``none`` publishes nothing beyond the base)
UPDATES: dict[str, DemoVersion | None] = {
    "none": None,
    "good": DemoVersion("1.1", healthy=True, reboot_required=True),
    "breaking": DemoVersion("1.2", healthy=False, reboot_required=False),
    "slow": DemoVersion("1.3", healthy=True, reboot_required=True, postinst_sleep_s=60),
    "no-return": DemoVersion("1.4", healthy=True, reboot_required=True, no_return=True),
    "sleepy": DemoVersion("1.5", healthy=True, reboot_required=False, postinst_sleep_s=15),
}

#: stacked update name -> the updates it publishes together (apt's candidate: the newest version)
STACKED: dict[str, tuple[str, ...]] = {"good+slow": ("good", "slow")}


def update_versions(update: str) -> list[str]:
    """The demo-app versions ``update`` publishes beyond the base (oldest first)."""
    names = STACKED.get(update, (update,))
    return [spec.version for spec in (UPDATES[n] for n in names) if spec is not None]


def newest_version(update: str) -> str | None:
    """The version apt's candidate is once ``update`` is published (None: the base only)."""
    versions = update_versions(update)
    return versions[-1] if versions else None


#: Release-file fields per pocket (unattended-upgrades' origin, label, archive (Suite) and codename).
POCKETS: dict[str, dict[str, str]] = {
    "main": {
        "Origin": "patchwave-lab",
        "Label": "patchwave-lab",
        "Suite": "bookworm",
        "Codename": "bookworm",
    },
    "security": {
        "Origin": "patchwave-lab",
        "Label": "patchwave-lab-Security",
        "Suite": "bookworm-security",
        "Codename": "bookworm-security",
    },
}
#: The ``Unattended-Upgrade::Origins-Pattern`` entry that selects the lab's security pocket only.
SECURITY_ORIGIN_PATTERN = (
    "origin=patchwave-lab,codename=${distro_codename}-security,label=patchwave-lab-Security"
)
_POCKET_DIRS = {"main": "updates", "security": "security"}
_POCKET_WWW = {"main": "views", "security": "security"}

_UNIT = f"""\
[Unit]
Description=patchwave lab demo service (busybox httpd on :{HEALTH_PORT})
After=network.target

[Service]
ExecStart=/bin/busybox httpd -f -p {HEALTH_PORT} -h /usr/lib/demo-app/www
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

# `enable --no-reload` on first install only (a daemon-reload costs ~2 s under TCG); reload only when
# systemd says the unit changed on disk; restart only when systemd runs (not in the image chroot).
_POSTINST = """\
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if [ -z "$2" ]; then
        systemctl enable --no-reload demo-app.service >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
        if [ "$(systemctl show -P NeedDaemonReload demo-app.service)" = yes ]; then
            systemctl daemon-reload
        fi
        systemctl restart demo-app.service
    fi
{reboot}fi
"""

_REBOOT = """\
    touch /var/run/reboot-required
    echo demo-app >> /var/run/reboot-required.pkgs
"""

_PRERM = """\
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop demo-app.service || true
fi
"""

_POSTRM = """\
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    systemctl disable --no-reload demo-app.service >/dev/null 2>&1 || true
fi
"""


# Masks take effect at the next boot only (no daemon-reload); the snapshot revert removes them.
_NO_RETURN = """\
    for unit in qemu-guest-agent.service ssh.service ssh.socket; do
        ln -sf /dev/null /etc/systemd/system/$unit
    done
"""


def _postinst(spec: DemoVersion) -> str:
    """demo-app's postinst; 1.0's text (and so its bytes, the image cache key) never changes."""
    extra = _REBOOT if spec.reboot_required else ""
    if spec.postinst_sleep_s:
        extra += f"    sleep {spec.postinst_sleep_s}\n"
    if spec.no_return:
        extra += _NO_RETURN
    return _POSTINST.format(reboot=extra)


def deb_name(version: str) -> str:
    return f"{PACKAGE}_{version}_all.deb"


def build_deb(spec: DemoVersion, out_dir: Path) -> Path:
    """Build ``demo-app_<version>_all.deb`` into ``out_dir``; the same spec gives the same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pw-deb-") as tmp:
        root = Path(tmp) / "pkg"
        control = f"""\
Package: {PACKAGE}
Version: {spec.version}
Architecture: all
Maintainer: patchwave lab <lab@patchwave.invalid>
Depends: busybox
Section: misc
Priority: optional
Description: patchwave lab demo service
 busybox httpd on port {HEALTH_PORT}; /health answers "ok" while the service is healthy.
"""
        files = {
            "DEBIAN/control": (control, 0o644),
            "DEBIAN/postinst": (_postinst(spec), 0o755),
            "DEBIAN/prerm": (_PRERM, 0o755),
            "DEBIAN/postrm": (_POSTRM, 0o755),
            "usr/lib/systemd/system/demo-app.service": (_UNIT, 0o644),
            "usr/lib/demo-app/www/index.html": (f"<p>demo-app {spec.version}</p>\n", 0o644),
            "usr/lib/demo-app/www/version": (f"{spec.version}\n", 0o644),
        }
        if spec.healthy:
            files["usr/lib/demo-app/www/health"] = ("ok\n", 0o644)
        for rel, (text, mode) in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)
        target = out_dir / deb_name(spec.version)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        run_command(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)], env=env)
    return target


def build_repo(repo_dir: Path, guests: Sequence[str], initial: str = "none") -> Path:
    """Build all packages, one directory per (pocket, update), and a view per guest and pocket
    publishing ``initial`` in main and ``none`` in security."""
    debs = repo_dir / "debs"
    built = {spec.version: build_deb(spec, debs) for spec in [BASE, *filter(None, UPDATES.values())]}
    for pocket, directory in _POCKET_DIRS.items():
        for update in [*UPDATES, *STACKED]:
            target = repo_dir / directory / update
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for version in [BASE.version, *update_versions(update)]:
                os.link(built[version], target / deb_name(version))
            _index(target, POCKETS[pocket])
    shutil.rmtree(repo_dir / "www", ignore_errors=True)
    for www in _POCKET_WWW.values():
        (repo_dir / "www" / www).mkdir(parents=True)
    publish(repo_dir, initial, guests)
    publish(repo_dir, "none", guests, pocket="security")
    return repo_dir


def view_path(guest: str, pocket: str = "main") -> str:
    """The URL path of ``guest``'s view of ``pocket`` on the repo server."""
    return f"/{_POCKET_WWW[pocket]}/{guest}/"


def _index(view: Path, fields: dict[str, str]) -> None:
    packages = run_command(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=view)
    (view / "Packages").write_text(packages)
    with gzip.GzipFile(view / "Packages.gz", "wb", mtime=0) as fh:
        fh.write(packages.encode())
    (view / "Release").write_text(release_text(view, fields))


def release_text(view: Path, fields: dict[str, str]) -> str:
    """A flat repository's ``Release``: the pocket's fields, a fixed date, the index hashes."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(SOURCE_DATE_EPOCH))
    lines = [f"{name}: {value}" for name, value in fields.items()] + [f"Date: {date}"]
    for title, algorithm in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{title}:")
        for name in ("Packages", "Packages.gz"):
            data = (view / name).read_bytes()
            lines.append(f" {hashlib.new(algorithm, data).hexdigest()} {len(data):>8} {name}")
    return "\n".join(lines) + "\n"


def publish(repo_dir: Path, update: str, guests: Sequence[str], *, pocket: str = "main") -> None:
    """Offer ``update`` (a key of :data:`UPDATES` or :data:`STACKED`) to each of ``guests`` in ``pocket``.
    Atomic per guest."""
    if update not in UPDATES and update not in STACKED:
        known = ", ".join([*UPDATES, *STACKED])
        raise LabError(f"unknown update {update!r}; use one of: {known}", code="bad_update")
    if pocket not in POCKETS:
        raise LabError(f"unknown pocket {pocket!r}; use one of: {', '.join(POCKETS)}", code="bad_argument")
    directory, www = _POCKET_DIRS[pocket], _POCKET_WWW[pocket]
    if not (repo_dir / directory / update).is_dir() or not (repo_dir / "www" / www).is_dir():
        raise LabError(f"repo {repo_dir} is incomplete; run `lab up` first", code="not_found")
    for guest in guests:
        if not guest or "/" in guest or guest.startswith("."):
            raise LabError(f"bad guest name {guest!r}", code="bad_argument")
        link = repo_dir / "www" / www / guest
        tmp = link.with_name(f".{guest}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("..", "..", directory, update))
        os.replace(tmp, link)


def published(repo_dir: Path, pocket: str = "main") -> dict[str, str]:
    """guest -> the update its view of ``pocket`` offers now."""
    views = repo_dir / "www" / _POCKET_WWW[pocket]
    if not views.is_dir():
        return {}
    return {
        link.name: Path(os.readlink(link)).name
        for link in sorted(views.iterdir())
        if link.is_symlink() and not link.name.startswith(".")
    }


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def send_head(self) -> io.BytesIO | BinaryIO | None:
        del self.headers["If-Modified-Since"]  # always send the currently published file
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(root: Path, port: int, port_file: Path | None) -> None:
    """Serve ``root`` (resolved per request, so a swapped symlink takes effect) until SIGTERM."""
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(httpd.server_address[1]))
        os.replace(tmp, port_file)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()


@dataclass(frozen=True, slots=True)
class RepoServer:
    pid: int
    port: int


def start_server(repo_dir: Path, log_path: Path, *, timeout: float = 15.0) -> RepoServer:
    """Start ``serve`` as a detached process (its own session) that outlives the caller."""
    port_file = repo_dir / "server.port"
    port_file.unlink(missing_ok=True)
    package_root = Path(__file__).resolve().parents[1]  # the directory holding ``patchwave_lab/``
    env = child_environment(
        {"PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")]))}
    )
    argv = [
        sys.executable,
        "-m",
        "patchwave_lab.repo",
        "serve",
        "--root",
        str(repo_dir / "www"),
        "--port-file",
        str(port_file),
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd="/", start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if proc.poll() is not None:
            raise LabError(f"repo server exited with {proc.returncode}; see {log_path}", code="repo_server")
        if time.monotonic() > deadline:
            proc.kill()
            raise LabError(
                f"repo server did not start within {timeout:.0f}s; see {log_path}", code="repo_server"
            )
        time.sleep(0.05)
    return RepoServer(pid=proc.pid, port=int(port_file.read_text()))


def _serves(pid: int, repo_dir: Path | None) -> bool:
    """``pid`` is a repo server (of ``repo_dir`` when given), judged by its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"patchwave_lab.repo" not in argv or b"serve" not in argv:
        return False
    return repo_dir is None or str(repo_dir / "www").encode() in argv


def server_alive(pid: int) -> bool:
    return _serves(pid, None)


def stop_servers(repo_dir: Path, *, timeout: float = 5.0) -> list[int]:
    """Stop every server of ``repo_dir`` (found by command line, so a lost lab.json does not matter)."""
    pids = [
        int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _serves(int(p.name), repo_dir)
    ]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _serves(pid, repo_dir) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _serves(pid, repo_dir):
            _signal(pid, signal.SIGKILL)
        _reap(pid)
    return pids


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # exited on its own meanwhile


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by an earlier `lab up` process)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m patchwave_lab.repo")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="serve a directory over HTTP on 127.0.0.1")
    srv.add_argument("--root", type=Path, required=True)
    srv.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    srv.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    args = parser.parse_args(argv)
    serve(args.root, args.port, args.port_file)


if __name__ == "__main__":
    main()
