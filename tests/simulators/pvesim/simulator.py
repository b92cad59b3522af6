"""The simulator façade: cluster + auth + HTTPS frontend + per-node SSH servers + fault injection."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import uuid
from pathlib import Path
from typing import Any, Self

import paramiko

from tests.simulators.pvesim.api import Api, Auth, Response
from tests.simulators.pvesim.commands import run_node
from tests.simulators.pvesim.server import HttpFrontend, json_response
from tests.simulators.pvesim.sshd import NodeSshServer, new_ed25519
from tests.simulators.pvesim.state import Cluster, SimConfig, Snapshot
from tests.simulators.pvesim.storage import default_storages
from tests.simulators.pvesim.tls import make_certs

ROOT_PASSWORD = "pvesim-root-password"
TOKEN_ID = "patchwave"
RESTRICTED_TOKEN_ID = "readonly"
FAULT_KINDS = (
    "task_fail",
    "task_hang",
    "stale_lock",
    "expire_tickets",
    "agent_not_ready",
    "agent_down",
    "zfs_rollback",
    "http_error",
    "guest_exec_disabled",
    "migrate_skip",
    "storage_full",
)


def populate(cl: Cluster) -> None:
    """Three nodes, four guests of each flavour the adapter must handle, one template, and three
    storages: ``local`` (dir, per node: backups, ISOs), ``local-zfs`` (guest disks), ``backup-nfs``
    (shared, backups only)."""
    cl.storages.update(default_storages())
    for name in ("pve1", "pve2", "pve3"):
        cl.add_node(
            name,
            packages={
                "proxmox-ve": ["9.1.0", "9.1.0"],
                "pve-manager": ["9.1.3", "9.1.4"],
                "proxmox-kernel-6.14": ["6.14.8-2", "6.14.11-1"],
                "openssl": ["3.5.1-1", "3.5.1-1+deb13u1"],
            },
        )
    cl.add_guest(100, "qemu", "web-1", "pve1", tags=["web", "ring-canary"])
    cl.add_guest(101, "qemu", "db-1", "pve2", tags=["db"], ha_managed=True)
    cl.add_guest(102, "lxc", "cache-1", "pve1", tags=["cache"])
    cl.add_guest(103, "qemu", "app-1", "pve3", tags=["app"])
    cl.add_guest(104, "qemu", "legacy-1", "pve2", status="stopped", agent=False, tags=["no-patch"])
    cl.add_guest(9000, "qemu", "tmpl-debian", "pve1", status="stopped", template=True)


class Simulator:
    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        tls: bool = True,
        ssh: bool = True,
        port: int = 0,
        workdir: Path | None = None,
        populated: bool = True,
    ) -> None:
        self.cluster = Cluster(config)
        self.auth = Auth(self.cluster)
        self.api = Api(self.cluster, self.auth)
        self.token_secret = str(uuid.uuid4())
        self.auth.add_user("root@pam", ROOT_PASSWORD)
        self.auth.add_token("root@pam", TOKEN_ID, self.token_secret)
        self.auth.add_token("root@pam", RESTRICTED_TOKEN_ID, str(uuid.uuid4()), restricted=True)
        if populated:
            populate(self.cluster)
        self._tls, self._ssh, self._port = tls, ssh, port
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pvesim-"))
        self.ca_file: Path | None = None
        self.http: HttpFrontend | None = None
        self.ssh_servers: dict[str, NodeSshServer] = {}
        self._client_keys: list[paramiko.PKey] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        context = None
        if self._tls:
            certs = make_certs(self.workdir)
            self.ca_file = certs.ca_file
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certs.cert_file, certs.key_file)
        self.http = HttpFrontend(self, port=self._port, context=context)
        self.http.start()
        if self._ssh:
            for name in self.cluster.nodes:
                host_key, _ = new_ed25519()
                server = NodeSshServer(
                    name,
                    host_key,
                    lambda: list(self._client_keys),
                    self._run_ssh,
                    lambda node: self.cluster.nodes[node].online,
                )
                server.start()
                self.ssh_servers[name] = server
        return self

    def stop(self) -> None:
        for server in self.ssh_servers.values():
            server.stop()
        self.ssh_servers.clear()
        if self.http:
            self.http.stop()
            self.http = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.http is not None, "simulator not started"
        return self.http.port

    # -- SSH ------------------------------------------------------------------------------------

    def _run_ssh(self, node: str, command: str) -> tuple[int, str, str]:
        with self.cluster.lock:
            self.cluster.tick()
            self.cluster.record("ssh_command", node, command=command)
            outcome = run_node(self.cluster, node, command)
        return outcome.exitcode or 0, outcome.stdout, outcome.stderr

    def client_key(self, path: Path) -> Path:
        """Write a new private key to ``path`` and authorise it on every node."""
        key, text = new_ed25519()
        path.write_text(text)
        path.chmod(0o600)
        self._client_keys.append(key)
        return path

    def write_known_hosts(self, path: Path) -> Path:
        lines = [
            f"[127.0.0.1]:{s.port} {s.host_key.get_name()} {s.host_key.get_base64()}"
            for s in self.ssh_servers.values()
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- faults and scripts ---------------------------------------------------------------------

    def inject(self, kind: str, **kw: Any) -> None:
        """Inject a fault. Kinds and their keys (``count`` = how many times, default 1):

        * ``task_fail``: ``task_type``, ``vmid``, ``message``, ``leave_lock`` -- the next matching task
          answers 200 with a UPID and then stops with ``message`` as its exit status; with
          ``leave_lock`` its lock (and ``snapstate``) stay behind, like a killed worker.
        * ``task_hang``: ``task_type`` -- the next matching task never finishes.
        * ``stale_lock``: ``vmid``, ``lock`` (default backup), ``snapname`` + ``snapstate`` (a
          half-done snapshot entry), ``clear_after`` (seconds; default: never).
        * ``expire_tickets``: every issued ticket becomes invalid (401 on the next call).
        * ``agent_not_ready``: ``vmid``, ``seconds`` -- the agent answers only that long after now
          (running guest) or after the next start (stopped guest).
        * ``agent_down``: ``vmid`` -- the next agent call finds the agent not running.
        * ``zfs_rollback``: ``vmid`` -- rollback only to the newest snapshot (ZFS semantics).
        * ``http_error``: ``status``, ``message``, ``method``, ``path`` (regex on the API path).
        * ``guest_exec_disabled``: ``vmid`` -- qemu-ga refuses guest-exec (RHEL 10 default).
        * ``migrate_skip``: ``vmid`` -- migrateall skips the guest (parent ends ``WARNINGS: n``).
        * ``storage_full``: ``storage`` -- writes to it fail with ENOSPC (a vzdump ends ``job errors``);
          ``full=False`` gives the space back.
        """
        cl = self.cluster
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        with cl.lock:
            cl.tick()
            guest = cl.guests.get(int(kw["vmid"])) if "vmid" in kw else None
            if kind == "expire_tickets":
                self.auth.expire_tickets()
            elif kind == "stale_lock":
                assert guest is not None
                guest.lock = kw.get("lock", "backup")
                if kw.get("snapname"):
                    guest.snapshots[kw["snapname"]] = Snapshot(
                        kw["snapname"],
                        kw.get("description", ""),
                        int(cl.clock.time()),
                        False,
                        guest.parent,
                        guest.config(),
                        kw.get("snapstate", "prepare"),
                    )
                if kw.get("clear_after") is not None:
                    cl.at(float(kw["clear_after"]), lambda: setattr(guest, "lock", None))
            elif kind == "agent_not_ready" and guest is not None and guest.status == "running":
                guest.agent_ready_at = cl.clock.monotonic() + float(kw.get("seconds", 5))
            elif kind == "zfs_rollback":
                assert guest is not None
                guest.rollback_latest_only = True
            elif kind == "storage_full":
                cl.storages[kw["storage"]].full = bool(kw.get("full", True))
            elif kind == "guest_exec_disabled":
                assert guest is not None
                guest.exec_disabled = True
            else:
                if kind == "task_fail":
                    kw.setdefault("message", "simulated failure inside the task")
                cl.faults.append({"kind": kind, **kw})

    def clear_faults(self) -> None:
        with self.cluster.lock:
            self.cluster.faults.clear()

    def script_guest(self, vmid: int, match: str, **response: Any) -> None:
        with self.cluster.lock:
            self.cluster.guests[vmid].scripts.insert(0, {"match": match, **response})

    # -- the /_sim control surface ------------------------------------------------------------

    def control(self, method: str, path: str, body: bytes) -> Response:
        try:
            payload = json.loads(body.decode() or "{}")
            if (method, path) == ("POST", "/_sim/faults"):
                self.inject(**payload)
            elif (method, path) == ("DELETE", "/_sim/faults"):
                self.clear_faults()
            elif (method, path) == ("POST", "/_sim/scripts"):
                self.script_guest(**payload)
            elif (method, path) == ("POST", "/_sim/clock"):
                self.cluster.clock.advance(float(payload["advance"]))
            elif (method, path) == ("GET", "/_sim/state"):
                return json_response(200, self.state())
            else:
                return json_response(404, {"error": f"no control endpoint {method} {path}"})
        except (ValueError, KeyError, TypeError, AssertionError) as exc:
            return json_response(400, {"error": f"bad control request: {exc!r}"})
        return json_response(200, {"ok": True})

    def state(self) -> dict[str, Any]:
        cl = self.cluster
        with cl.lock:
            cl.tick()
            return {
                "nodes": {
                    n.name: {
                        "online": n.online,
                        "boot_count": n.boot_count,
                        "kernel": n.kernel_running,
                        "ha_maintenance": n.ha_maintenance,
                        "ssh_port": getattr(self.ssh_servers.get(n.name), "port", None),
                    }
                    for n in cl.nodes.values()
                },
                "guests": {
                    g.vmid: {
                        "node": g.node,
                        "status": g.status,
                        "lock": g.lock,
                        "snapshots": list(g.snapshots),
                    }
                    for g in cl.guests.values()
                },
                "backups": {s.name: sorted(s.volumes) for s in cl.storages.values()},
                "events": [{"t": t, "kind": k, "subject": s, **d} for t, k, s, d in cl.events],
            }
