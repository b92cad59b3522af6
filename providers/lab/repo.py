"""The lab's local apt repository: the ``demo-app`` packages, their index, and a tiny HTTP server.

Three versions of ``demo-app`` are built with ``dpkg-deb`` (byte-reproducible: fixed mtimes,
``SOURCE_DATE_EPOCH``, ``--root-owner-group``):

* ``1.0`` — preinstalled in the guest image. A systemd unit runs ``busybox httpd`` on :8080;
  ``GET /health`` answers ``ok``.
* ``1.1`` — the **good** update: ``/health`` stays ``ok``; its postinst touches
  ``/var/run/reboot-required`` (and lists itself in ``reboot-required.pkgs``).
* ``1.2`` — the **breaking** update: it drops ``/health``, so the check answers 404.

Which update a guest *sees* is chosen per guest: ``updates/<update>/`` holds ``1.0`` plus the
update's package (``none`` holds ``1.0`` only) and its ``Packages``/``Packages.gz`` index. The
server serves ``www/``, where ``www/views/<guest>`` is a symlink to one of those update directories;
:func:`publish` swaps a guest's symlink atomically, so that guest's next ``apt-get update`` sees
exactly the published set, while another guest can be offered a different update in the same
rollout. A guest's only apt source is ``deb [trusted=yes] http://10.0.2.2:<port>/views/<guest>/ ./``
(slirp maps 10.0.2.2 to the host's loopback).

The server runs detached (``python -m providers.lab.repo serve ...``) so it outlives ``lab up``.
It ignores ``If-Modified-Since``: views are built in the same second, and a 304 would let apt
keep the previous view's index after a publish.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
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

from providers.lab.command import run_command
from providers.lab.errors import LabError

#: Fixed timestamp for every file in the packages (reproducible .debs -> stable image cache key).
SOURCE_DATE_EPOCH = 1_700_000_000
PACKAGE = "demo-app"
HEALTH_PORT = 8080  # inside the guest


@dataclass(frozen=True, slots=True)
class DemoVersion:
    version: str
    healthy: bool  # ships www/health
    reboot_required: bool  # postinst asks for a reboot


BASE = DemoVersion("1.0", healthy=True, reboot_required=False)
#: update name -> the version it publishes (``none`` publishes nothing beyond the base)
UPDATES: dict[str, DemoVersion | None] = {
    "none": None,
    "good": DemoVersion("1.1", healthy=True, reboot_required=True),
    "breaking": DemoVersion("1.2", healthy=False, reboot_required=False),
}

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
            "DEBIAN/postinst": (_POSTINST.format(reboot=_REBOOT if spec.reboot_required else ""), 0o755),
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
    """Build all packages, one directory per update, and a view per guest publishing ``initial``."""
    debs = repo_dir / "debs"
    built = {spec.version: build_deb(spec, debs) for spec in [BASE, *filter(None, UPDATES.values())]}
    for update, spec in UPDATES.items():
        target = repo_dir / "updates" / update
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for version in [BASE.version] + ([spec.version] if spec else []):
            os.link(built[version], target / deb_name(version))
        _index(target)
    shutil.rmtree(repo_dir / "www", ignore_errors=True)
    (repo_dir / "www" / "views").mkdir(parents=True)
    publish(repo_dir, initial, guests)
    return repo_dir


def view_path(guest: str) -> str:
    """The URL path of ``guest``'s view on the repo server."""
    return f"/views/{guest}/"


def _index(view: Path) -> None:
    packages = run_command(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=view)
    (view / "Packages").write_text(packages)
    with gzip.GzipFile(view / "Packages.gz", "wb", mtime=0) as fh:
        fh.write(packages.encode())


def publish(repo_dir: Path, update: str, guests: Sequence[str]) -> None:
    """Offer ``update`` (a key of :data:`UPDATES`) to each of ``guests``. Atomic per guest."""
    if update not in UPDATES:
        raise LabError(f"unknown update {update!r}; use one of: {', '.join(UPDATES)}", code="bad_update")
    if not (repo_dir / "updates" / update).is_dir() or not (repo_dir / "www" / "views").is_dir():
        raise LabError(f"repo {repo_dir} is incomplete; run `lab up` first", code="not_found")
    for guest in guests:
        if not guest or "/" in guest or guest.startswith("."):
            raise LabError(f"bad guest name {guest!r}", code="bad_argument")
        link = repo_dir / "www" / "views" / guest
        tmp = link.with_name(f".{guest}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("..", "..", "updates", update))
        os.replace(tmp, link)


def published(repo_dir: Path) -> dict[str, str]:
    """guest -> the update its view offers now."""
    views = repo_dir / "www" / "views"
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
    def send_head(self):  # type: ignore[no-untyped-def]
        del self.headers["If-Modified-Since"]  # always send the currently published file
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(root: Path, port: int, port_file: Path | None) -> None:
    """Serve ``root`` (resolved per request, so a swapped symlink takes effect) until SIGTERM."""

    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)  # type: ignore[arg-type]
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
    package_root = Path(__file__).resolve().parents[2]  # the directory holding ``providers/``
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")])),
    }
    argv = [
        sys.executable,
        "-m",
        "providers.lab.repo",
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
    if b"providers.lab.repo" not in argv or b"serve" not in argv:
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
    parser = argparse.ArgumentParser(prog="python -m providers.lab.repo")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="serve a directory over HTTP on 127.0.0.1")
    srv.add_argument("--root", type=Path, required=True)
    srv.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    srv.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    args = parser.parse_args(argv)
    serve(args.root, args.port, args.port_file)


if __name__ == "__main__":
    main()
