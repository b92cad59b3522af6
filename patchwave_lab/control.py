"""Bring the real Debian guest lab up and down: ``up``, ``down``, ``status``, ``publish``.

``up(state_dir, guests)`` builds (or takes from the cache) the guest image, builds the apt repo
and starts its server as a detached process, creates any missing golden state (one cold boot per
guest slot, one after another), restores the guests ``pw-lab-1..n`` from them, and for each guest:
sets the clock, installs a fresh SSH host key and points apt at its own view of the live repo
(``/views/<guest>/``; both through the guest agent), records the host key it read back in ``known_hosts``, and waits until SSH (with
host-key checking) and demo-app's ``/health`` answer. Everything a consumer needs is in
``<state_dir>/lab/lab.json`` (see :mod:`patchwave_lab.state`). ``publish(state_dir, update,
guest=None)`` chooses the update one guest (or every guest) is offered, so one rollout can have a
guest whose update is good and one whose update breaks it.

One lab per host: guest names are fixed, and ``up`` refuses to touch a ``pw-lab-*`` domain that
another state dir owns. ``up`` replaces a lab already running in the same state dir.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from patchwave_lab import domain, image, keys, repo
from patchwave_lab import guest_clock as agent
from patchwave_lab.errors import LabError
from patchwave_lab.state import LabGuest, LabState, lab_dir, load, save, state_file
from providers.errors import ProviderError
from providers.ssh import SshClient, SshTarget
from providers.timing import utc_now_iso, wait_until

log = structlog.get_logger(__name__)

DEFAULT_URI = "qemu:///system"
NAME_PREFIX = "pw-lab-"
SSH_USER = "root"
FORWARD_HOST = "127.0.0.1"
READY_TIMEOUT = 60.0
#: sshd drops the client's environment (pitfall 11), so commands export it themselves.
_LAB_ENV = "export DEBIAN_FRONTEND=noninteractive LC_ALL=C; "

# Run through the agent with the new host key on stdin, the guest's repo view URL as $1 and its
# security-pocket view URL as $2; prints the public key.
_PREPARE_GUEST = """\
set -eu
umask 077
k=/etc/ssh/ssh_host_ed25519_key
cat > $k.new
ssh-keygen -y -f $k.new > $k.pub.new
chmod 644 $k.pub.new
mv $k.new $k
mv $k.pub.new $k.pub
echo "deb [trusted=yes] $1 ./" > /etc/apt/sources.list
echo "deb [trusted=yes] $2 ./" > /etc/apt/sources.list.d/patchwave-lab-security.list
kill -HUP "$(cat /run/sshd.pid)"  # re-exec with the new key (skips systemctl + sshd -t)
cat $k.pub
"""


# --------------------------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------------------------


def up(
    state_dir: Path,
    guests: int = 2,
    *,
    uri: str = DEFAULT_URI,
    cache: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> LabState:
    """Start a fresh lab with ``guests`` guests; returns what ``lab.json`` holds. ``on_stage`` is told
    each stage as it begins (the CLI's live view)."""
    if guests < 1:
        raise LabError(f"guests must be at least 1, not {guests}", code="bad_argument")
    stage = on_stage or (lambda _what: None)
    started = time.monotonic()
    stage("removing an earlier lab of this state directory")
    down(state_dir, uri=uri)
    cache = cache or image.cache_dir()
    root = lab_dir(state_dir)
    for sub in ("guests", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stage("guest image (debootstrap once, then cached)")
    img = image.ensure_image(cache)
    image_s = time.monotonic() - started
    stage("package repository")
    repo.build_repo(root / "repo", [f"{NAME_PREFIX}{i}" for i in range(1, guests + 1)])
    server = repo.start_server(root / "repo", root / "logs" / "repo-server.log")
    state = LabState(
        state_dir=str(Path(state_dir).resolve()),
        uri=uri,
        key_file=str(keys.ensure_client_key(cache)),
        known_hosts=str(root / "known_hosts"),
        repo_port=server.port,
        repo_pid=server.pid,
        repo_dir=str(root / "repo"),
        repo_url_in_guest=f"http://10.0.2.2:{server.port}/",
        published="none",
        views=repo.published(root / "repo"),
        updates={name: repo.newest_version(name) for name in [*repo.UPDATES, *repo.STACKED]},
        image_key=img.key,
        kernel_version=img.kernel_version,
        guests=(),
        timings={"image_s": round(image_s, 2), "image_build_s": img.build_seconds},
        created_at=utc_now_iso(),
    )
    save(state)  # from here on `down` can clean up whatever a failure leaves
    Path(state.known_hosts).write_text("")
    try:
        state = _start_guests(state, img, cache, guests, stage)
    except BaseException:
        down(state_dir, uri=uri)
        raise
    state = replace(state, timings={**state.timings, "up_s": round(time.monotonic() - started, 2)})
    save(state)
    log.info("lab_up", guests=guests, state=str(state_file(state_dir)), **state.timings)
    return state


def _spec(root: Path, owner: str, index: int) -> domain.GuestSpec:
    name = f"{NAME_PREFIX}{index}"
    return domain.GuestSpec(
        name=name,
        disk=root / "guests" / f"{name}.qcow2",
        ssh_port=_free_port(),
        health_port=_free_port(),
        console_log=root / "logs" / f"{name}.console.log",
        owner=owner,
        tags=("lab",),
        labels={"ring": "canary" if index == 1 else "main"},
    )


def _start_guests(
    state: LabState, img: image.GuestImage, cache: Path, count: int, stage: Callable[[str], None]
) -> LabState:
    conn = domain.connect(state.uri)
    try:
        root = Path(state.state_dir) / "lab"
        specs = [_spec(root, state.state_dir, i) for i in range(1, count + 1)]
        _refuse_foreign(conn, specs)
        golden_started = time.monotonic()
        with image.cache_lock(cache):  # golden boots happen one after another
            stage("golden guests (booted once per image, then cached)")
            goldens = [domain.ensure_golden(conn, img, spec) for spec in specs]
        timings = {
            **state.timings,
            "golden_s": round(time.monotonic() - golden_started, 2),
            "golden_created": sum(not g.cached for g in goldens),
        }
        for spec, golden in zip(specs, goldens, strict=True):
            guest_started = time.monotonic()
            stage(f"starting {spec.name} (restore, agent, clock, SSH host key)")
            guest = _start_guest(conn, golden, spec, state)
            timings[f"{spec.name}_ready_s"] = round(time.monotonic() - guest_started, 2)
            state = replace(state, guests=(*state.guests, guest), timings=timings)
            save(state)
        return state
    finally:
        conn.close()


def _refuse_foreign(conn: Any, specs: list[domain.GuestSpec]) -> None:
    """``down`` already removed this lab's domains; any left with our names belong to another lab.

    A lab domain whose owner's state file is gone is an orphan (its lab was deleted without ``lab down``,
    e.g. a killed test run whose temporary directory was cleaned): nobody can ``down`` it any more, so
    it is removed here, logged. Anything else with our names is refused."""
    names = {spec.name for spec in specs}
    for dom in conn.listAllDomains(0):
        if dom.name() not in names:
            continue
        owner = domain.owner_of(dom)
        if owner and not state_file(Path(owner)).exists():
            domain.destroy(conn, dom.name())
            log.warning("lab_orphan_removed", domain=dom.name(), owner=owner)
            continue
        raise LabError(
            f"domain {dom.name()} exists and belongs to {owner or 'something else'}", code="conflict"
        )


def _start_guest(conn: Any, golden: domain.Golden, spec: domain.GuestSpec, state: LabState) -> LabGuest:
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    dom = domain.restore(conn, golden, spec)
    phase("restore")
    agent.wait_agent(dom, timeout=READY_TIMEOUT, console_log=spec.console_log)
    phase("agent")
    agent.set_time(dom)
    phase("set_time")
    repo_url = state.repo_url_in_guest.rstrip("/") + repo.view_path(spec.name)
    security_url = state.repo_url_in_guest.rstrip("/") + repo.view_path(spec.name, "security")
    host_key = _prepare_guest(dom, repo_url, security_url)
    phase("prepare")
    with open(state.known_hosts, "a") as fh:
        fh.write(f"[{FORWARD_HOST}]:{spec.ssh_port} {host_key}\n")
    guest = LabGuest(
        name=spec.name,
        uuid=dom.UUIDString(),
        host=FORWARD_HOST,
        ssh_port=spec.ssh_port,
        health_port=spec.health_port,
        health_url=f"http://{FORWARD_HOST}:{spec.health_port}/health",
        user=SSH_USER,
        key_file=state.key_file,
        known_hosts=state.known_hosts,
        disk=str(spec.disk),
        console_log=str(spec.console_log),
        tags=spec.tags,
        labels=dict(spec.labels),
        repo_url=repo_url,
    )
    wait_until(lambda: ssh_answers(guest), timeout=READY_TIMEOUT, interval=0.2, what=f"ssh on {guest.name}")
    phase("ssh")
    wait_until(
        lambda: health_ok(guest), timeout=READY_TIMEOUT, interval=0.2, what=f"demo-app on {guest.name}"
    )
    phase("health")
    log.info("lab_guest_ready", name=spec.name, **phases)
    return guest


def _prepare_guest(dom: Any, repo_url: str, security_url: str) -> str:
    """Install a fresh host key and the guest's apt sources; return the host key the guest now serves."""
    private, public = keys.generate_ed25519(dom.name())
    result = agent.agent_exec(
        dom,
        ["sh", "-c", _PREPARE_GUEST, "prepare", repo_url, security_url],
        stdin=private.decode(),
        timeout=30,
    )
    served = " ".join(result.stdout.split()[:2])
    if not result.ok or served != " ".join(public.decode().split()[:2]):
        raise LabError(
            f"preparing {dom.name()} failed ({result.exit_code}): {result.stderr.strip()}", code="prepare"
        )
    return served


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((FORWARD_HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Reaching the guests
# --------------------------------------------------------------------------------------------


def ssh_target(guest: LabGuest, *, timeout: float = 10.0) -> SshTarget:
    """How a lab guest is reached: its forwarded port on 127.0.0.1, root's lab key, the host key
    checked against the lab's ``known_hosts`` (never trusted on first use), no ssh-agent."""
    return SshTarget(
        host=guest.host,
        port=guest.ssh_port,
        user=guest.user,
        key_file=Path(guest.key_file),
        known_hosts=Path(guest.known_hosts),
        connect_timeout=timeout,
    )


def ssh_client(guest: LabGuest, *, timeout: float = 10.0) -> SshClient:
    """A connected :class:`providers.ssh.SshClient`; a host key that is not the one in the lab's
    ``known_hosts`` is :class:`~providers.errors.HostKeyRejected` (``host_key_unknown`` /
    ``host_key_mismatch``). Close it (or use it as a context manager)."""
    client = SshClient(ssh_target(guest, timeout=timeout))
    try:
        return client.connect()
    except BaseException:
        client.close()
        raise


def ssh_run(guest: LabGuest, command: str, *, timeout: float = 240) -> tuple[int, str]:
    """Run ``command`` over SSH (host key checked against the lab's known_hosts): (exit, output),
    stderr merged into the output in the order it was written; -1 when killed by a signal."""
    with ssh_client(guest) as client:
        result = client.exec(_LAB_ENV + "exec 2>&1; " + command, timeout=timeout)
    code = result.exit_code if result.exit_code is not None else -1
    return code, result.stdout


def installed_version(guest: LabGuest, package: str = repo.PACKAGE) -> str:
    """The version of ``package`` dpkg has installed in ``guest`` ("" when it has none)."""
    code, output = ssh_run(guest, f"dpkg-query -W -f '${{Version}}' {package}", timeout=60)
    return output.strip() if code == 0 else ""


def reboot_records(guest: LabGuest) -> int:
    """How many boots wtmp recorded in ``guest`` (``last -x reboot``): a reboot adds exactly one."""
    code, output = ssh_run(guest, "last -x reboot | grep -c '^reboot '", timeout=30)
    if code != 0:
        raise LabError(f"cannot read {guest.name}'s boot records: {output.strip()}")
    return int(output.strip())


def ssh_answers(guest: LabGuest) -> bool:
    """SSH with host-key checking logs in and runs ``true``."""
    if not _ssh_banner(guest):  # not yet: spares paramiko's noisy "Error reading SSH protocol banner"
        return False
    try:
        with ssh_client(guest, timeout=5) as client:
            return client.exec("true", timeout=10).ok
    except ProviderError:
        return False


def _ssh_banner(guest: LabGuest) -> bool:
    """sshd sent its banner (slirp accepts the connection even when nothing listens; pitfall 8)."""
    try:
        with socket.create_connection((guest.host, guest.ssh_port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def health_ok(guest: LabGuest) -> bool:
    """demo-app's /health through the forwarded port; 1 s timeout (slirp accepts before the guest does)."""
    try:
        with urllib.request.urlopen(guest.health_url, timeout=1) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# publish, status, down
# --------------------------------------------------------------------------------------------


def publish(state_dir: Path, update: str, guest: str | None = None, *, pocket: str = "main") -> LabState:
    """Offer ``update`` (``none`` | ``good`` | ``breaking``) to ``guest``, or to every guest, in
    ``pocket`` (``main`` | ``security``; see :mod:`patchwave_lab.repo`). ``lab.json`` tracks main."""
    state = load(state_dir)
    names = [state.guest(guest).name] if guest else [g.name for g in state.guests]
    repo.publish(Path(state.repo_dir), update, names, pocket=pocket)
    if pocket != "main":
        log.info("lab_update_published", update=update, pocket=pocket, guests=names)
        return state
    state = replace(
        state,
        published=update if guest is None else state.published,
        views={**state.views, **dict.fromkeys(names, update)},
    )
    save(state)
    log.info("lab_update_published", update=update, version=state.updates[update], guests=names)
    return state


def status(state_dir: Path) -> dict[str, Any]:
    """What ``lab.json`` says plus what is true now: domain state, agent, health, repo server."""
    try:
        state = load(state_dir)
    except LabError:
        return {"up": False, "state_file": str(state_file(state_dir))}
    conn = domain.connect(state.uri)
    try:
        guests = {guest.name: _guest_status(conn, guest) for guest in state.guests}
    finally:
        conn.close()
    server = repo.server_alive(state.repo_pid)
    return {
        "up": server and all(g["running"] and g["agent"] and g["ssh"] for g in guests.values()),
        "state_file": str(state_file(state_dir)),
        "repo_server": server,
        "published": state.published,
        "views": repo.published(Path(state.repo_dir)),
        "guests": guests,
        "state": json.loads(state.to_json()),
    }


def _guest_status(conn: Any, guest: LabGuest) -> dict[str, bool]:
    import libvirt  # installed: ``conn`` is a libvirt connection (domain.connect)

    try:
        dom = conn.lookupByName(guest.name)
    except libvirt.libvirtError:
        return {"running": False, "agent": False, "ssh": False, "health": False}
    running = bool(dom.isActive())
    return {
        "running": running,
        "agent": running and agent.agent_ping(dom),
        "ssh": running and ssh_answers(guest),
        "health": running and health_ok(guest),
    }


def down(state_dir: Path, *, uri: str | None = None) -> list[str]:
    """Remove the lab in ``state_dir``: its domains (with snapshot metadata), the repo server,
    the overlays, ``lab.json``. Idempotent; the image cache and the logs stay. Returns the
    names of the domains removed."""
    root = lab_dir(state_dir)
    try:
        state: LabState | None = load(state_dir)
    except LabError:  # missing or unreadable: clean up by what is found, not by what was recorded
        state = None
    repo.stop_servers(root / "repo")
    removed = _remove_domains(uri or (state.uri if state else DEFAULT_URI), str(root.parent))
    for path in (root / "guests", root / "repo"):
        shutil.rmtree(path, ignore_errors=True)
    for path in (root / "known_hosts", root / "guests.toml", root / "lab.json"):
        path.unlink(missing_ok=True)
    if removed or state is not None:
        log.info("lab_down", state_dir=str(root.parent), removed=removed)
    return removed


def _remove_domains(uri: str, owner: str) -> list[str]:
    """Every domain whose lab metadata names ``owner``, running or not."""
    conn = domain.connect(uri)
    try:
        ours = [dom.name() for dom in conn.listAllDomains(0) if domain.owner_of(dom) == owner]
        return [name for name in ours if domain.destroy(conn, name)]
    finally:
        conn.close()
