"""Build (when needed), start and stop patchwave's vcsim launcher (``tests/simulators/vcsim/main.go``).

    from tests.simulators.vcsim.launcher import start_vcsim
    with start_vcsim("-host", "4", "-vm", "8", "-balance") as sim:
        sim.url, sim.cert_file, sim.control     # https://127.0.0.1:PORT/sdk, PEM path, control URL
        sim.add_fault("method=CreateSnapshot_Task,fault=FileLocked,count=1")
        sim.stats()                             # {"CreateSnapshot_Task": 1, ...}

The binary is cached in ``$PATCHWAVE_CACHE/vcsim`` (default ``<repo>/.cache/vcsim``) and rebuilt when
a ``.go`` file is newer. The process runs with ``TMPDIR`` on ``/dev/shm`` (vcsim writes files per VM)
and is stopped with SIGTERM so it removes its datastore directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

SOURCE_DIR = Path(__file__).resolve().parent
GOPATH = "/usr/share/gocode"
USER = "patchwave"
PASSWORD = "vcsim-pass"


class VcsimUnavailable(RuntimeError):
    """The Go toolchain or Debian's govmomi sources are missing (run .ci/setup-vcsim.sh)."""


def cache_dir() -> Path:
    base = os.environ.get("PATCHWAVE_CACHE")
    return (Path(base) if base else REPO / ".cache") / "vcsim"


def binary_path() -> Path:
    return cache_dir() / "vcsim"


def build(*, force: bool = False) -> Path:
    """Build the launcher unless the cached binary is newer than every source file."""
    target = binary_path()
    sources = list(SOURCE_DIR.glob("*.go"))
    if not force and target.exists() and target.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return target
    go = shutil.which("go")
    if go is None or not Path(GOPATH, "src/github.com/vmware/govmomi/simulator").is_dir():
        raise VcsimUnavailable("needs golang-go and golang-github-vmware-govmomi-dev: run .ci/setup-vcsim.sh")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test processes may want the binary at once
        if (
            not force
            and target.exists()
            and target.stat().st_mtime >= max(p.stat().st_mtime for p in sources)
        ):
            return target
        env = {**os.environ, "GOPATH": GOPATH, "GO111MODULE": "off", "GOFLAGS": "",
               "GOCACHE": str(target.parent / "go-build")}  # fmt: skip
        tmp = target.with_suffix(".tmp")
        proc = subprocess.run(
            [go, "build", "-o", str(tmp), "."],
            cwd=SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"go build of the vcsim launcher failed:\n{proc.stderr}")
        tmp.replace(target)
    return target


@dataclass
class Vcsim:
    """A running launcher. ``control`` is ``https://HOST:PORT/vcsim-control``."""

    process: subprocess.Popen[str]
    url: str
    host: str
    port: int
    cert_file: Path
    control: str
    workdir: Path
    user: str = USER
    password: str = PASSWORD
    info: Mapping[str, Any] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)

    def provider_table(self, **overrides: Any) -> dict[str, Any]:
        """A ``[providers.<site>]`` table for this simulator (password as a plain string)."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "ca_file": str(self.cert_file), **overrides}  # fmt: skip

    # -- control endpoint ---------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        context = (
            ssl.create_default_context(cafile=str(self.cert_file))
            if self.control.startswith("https")
            else None
        )
        request = urllib.request.Request(f"{self.control}/{path}", data=body, method=method)
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def add_fault(self, rule: str | Mapping[str, Any]) -> Any:
        body = json.dumps(rule) if not isinstance(rule, str) else rule
        return self._request("POST", "faults", body.encode())

    def faults(self) -> list[dict[str, Any]]:
        return self._request("GET", "faults")

    def clear_faults(self) -> None:
        self._request("DELETE", "faults")

    def stats(self) -> dict[str, int]:
        return self._request("GET", "stats")["calls"]

    def reset_stats(self) -> None:
        self._request("DELETE", "stats")

    def maintenance(self, *, reset: bool = False) -> dict[str, Any]:
        return self._request("DELETE" if reset else "GET", "maintenance")

    def hosts(self) -> list[dict[str, Any]]:
        return self._request("GET", "hosts")

    def set_hook(self, url: str) -> None:
        """POST snapshot events to ``url`` before answering (see hooks.go); "" removes the hook."""
        if url:
            self._request("POST", "hook", url.encode())
        else:
            self._request("DELETE", "hook")

    def set_host_build(self, host: str, version: str, build: str) -> None:
        query = urllib.parse.urlencode({"host": host, "version": version, "build": build})
        self._request("POST", f"host-build?{query}")

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # should not happen; SIGKILL leaks the temp dirs
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.cert_file.parent, ignore_errors=True)


def start(*flags: str, listen: str = "127.0.0.1:0", ready_timeout: float = 120.0) -> Vcsim:
    """Start the launcher with ``flags`` (see README.md) and wait for its VCSIM_READY line."""
    binary = build()
    shm = Path("/dev/shm")
    workdir = Path(tempfile.mkdtemp(prefix="patchwave-vcsim-", dir=shm if shm.is_dir() else None))
    # The certificate lives outside the simulator's TMPDIR (where vcsim creates and deletes its
    # datastore and VM files): clients read it for as long as the simulator runs.
    cert = Path(tempfile.mkdtemp(prefix="patchwave-vcsim-cert-")) / "cert.pem"
    argv = [str(binary), "-l", listen, "-cert-out", str(cert), "-user", USER, "-pass", PASSWORD, *flags]
    env = {**os.environ, "TMPDIR": str(workdir)}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr_lines: list[str] = []
    threading.Thread(target=_drain, args=(process.stderr, stderr_lines), daemon=True).start()
    deadline = time.monotonic() + ready_timeout
    info: dict[str, Any] | None = None
    assert process.stdout is not None
    while info is None:
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=5)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(cert.parent, ignore_errors=True)
            raise RuntimeError(
                f"vcsim exited ({process.returncode}) before ready:\n" + "".join(stderr_lines[-20:])
            )
        if line.startswith("VCSIM_READY "):
            info = json.loads(line.split(" ", 1)[1])
        elif time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError("vcsim did not become ready in time")
    threading.Thread(target=_drain, args=(process.stdout, []), daemon=True).start()
    return Vcsim(
        process=process,
        url=info["url"],
        host=info["host"],
        port=int(info["port"]),
        cert_file=cert,
        control=info["control"],
        workdir=workdir,
        info=info,
        log_lines=stderr_lines,
    )


def _drain(stream: Any, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)
        del sink[:-200]  # keep the tail only


def start_or_skip(*flags: str, listen: str = "127.0.0.1:0") -> Vcsim:
    """``start`` for tests: where the launcher cannot be built (no Go/govmomi), skip with the reason."""
    import pytest

    try:
        return start(*flags, listen=listen)
    except VcsimUnavailable as exc:
        pytest.skip(f"vcsim launcher cannot be built here: {exc}")


@contextlib.contextmanager
def start_vcsim(*flags: str, listen: str = "127.0.0.1:0") -> Iterator[Vcsim]:
    sim = start(*flags, listen=listen)
    try:
        yield sim
    finally:
        sim.stop()


def open_vsphere(sim: Vcsim, site: str = "vcsim", **overrides: Any) -> Any:
    """Connect patchwave's vSphere provider to ``sim`` (settings overrides as in the config table)."""
    from providers.settings import Secret
    from providers.vsphere import open_provider
    from providers.vsphere.settings import parse_settings

    table = sim.provider_table(**overrides)
    for key in ("password", "guest_password"):
        if isinstance(table.get(key), str):
            table[key] = Secret(table[key])
    return open_provider(parse_settings(site, {k: v for k, v in table.items() if v is not None}))


if __name__ == "__main__":  # python3 tests/simulators/vcsim/launcher.py [--force]: build into the cache
    print(build(force="--force" in sys.argv[1:]))
