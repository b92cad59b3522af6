"""The simulated cluster: nodes, guests, snapshots, tasks, timers and injected faults.

Everything is driven by one :class:`SimClock` and evaluated lazily: each API request (and each SSH
command) first calls :meth:`Cluster.tick`, which fires every timer that is due, in order. Tasks
are timers too, so there are no background threads and no wall-clock races in the model.
All mutation happens under ``Cluster.lock``.
"""

from __future__ import annotations

import heapq
import itertools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.clock import FakeClock

DEBIAN_OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def mac_address(seed: int) -> str:
    """A MAC in Proxmox's own prefix (BC:24:11), derived from ``seed``."""
    return f"BC:24:11:{(seed >> 16) & 0xFF:02X}:{(seed >> 8) & 0xFF:02X}:{seed & 0xFF:02X}"


class SimClock:
    """Real time plus the time tests skipped ahead with :meth:`advance` (ticket expiry, long durations).

    A thin adapter over the tests' :class:`~tests.support.clock.FakeClock` (which holds the skipped
    seconds), not that clock itself: the simulator serves real clients (proxmoxer, the SSH client)
    that poll it in real time and its tasks end after real, short durations, so its time must run
    on its own; it also answers in epoch seconds (``time``) for tickets and task ids.
    """

    def __init__(self) -> None:
        self.skipped = FakeClock()

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped.monotonic()

    def time(self) -> float:
        return time.time() + self.skipped.monotonic()

    def advance(self, seconds: float) -> None:
        self.skipped.advance(seconds)


class ApiError(Exception):
    """A handler error: ``status`` + message (status line = first line) + optional per-param errors."""

    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class TaskError(Exception):
    """Raised inside a task worker: becomes the task's exitstatus (``TASK ERROR: <msg>``)."""


@dataclass
class SimConfig:
    cluster_name: str | None = "lab"  # None = a standalone node (no /cluster/status cluster entry)
    task_duration: float = 0.05  # default worker duration for every task type
    durations: dict[str, float | None] = field(default_factory=dict)  # per task type; None = never ends
    migrate_duration: float = 0.1
    reboot_offline: float = 0.3  # how long a rebooting node is offline
    agent_boot_delay: float = 0.0  # the guest agent answers this long after a start
    ha_delay: float = 0.1  # CRM reaction time (maintenance, ha* requests)
    agent_output_cap: int = 16 * 1024 * 1024  # qemu-ga GUEST_EXEC_MAX_OUTPUT
    ticket_lifetime: float = 7200.0
    auth_failure_delay: float = 0.0  # real PVE sleeps ~3 s before every 401
    datacenter_max_workers: int | None = None


@dataclass
class Node:
    name: str
    nodeid: int
    ip: str
    boot_at: float
    uptime_base: int = 3 * 86400
    online: bool = True
    boot_count: int = 0
    kernel_running: str = "6.14.8-2-pve"
    kernels_installed: list[str] = field(default_factory=lambda: ["6.14.8-2-pve"])
    pveversion: str = "pve-manager/9.1.3/5b1e4c44d61a0b5f"
    packages: dict[str, list[str]] = field(default_factory=dict)  # name -> [installed, candidate]
    ha_request: bool = False  # node_request maintenance (set by ha-manager over SSH)
    ha_maintenance: bool = False  # CRM has processed the request (node_status "maintenance")
    memory_total: int = 64 * 1024**3  # bytes of RAM
    memory_base: int = 4 * 1024**3  # used by the host itself; running guests add their configured memory

    def uptime(self, now: float) -> int:
        return int(now - self.boot_at) + (self.uptime_base if self.boot_count == 0 else 0)


@dataclass
class Snapshot:
    name: str
    description: str
    snaptime: int
    vmstate: bool
    parent: str | None
    config: dict[str, Any]
    snapstate: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # the guest's file system at snapshot time


@dataclass
class GuestProcess:
    pid: int
    done_at: float
    exitcode: int | None
    signal: int | None
    out: str
    err: str
    out_truncated: bool
    err_truncated: bool


@dataclass
class Guest:
    vmid: int
    kind: str  # "qemu" | "lxc"
    name: str
    node: str
    status: str = "running"
    tags: list[str] = field(default_factory=list)
    lock: str | None = None
    agent: bool = True  # qemu: agent: 1 in the config
    agent_ready_at: float = 0.0
    exec_disabled: bool = False
    ha_managed: bool = False
    onboot: bool = True
    template: bool = False
    rollback_latest_only: bool = False  # ZFS semantics
    ip: str = ""
    memory: int = 2048
    snapshots: dict[str, Snapshot] = field(default_factory=dict)  # insertion order = creation order
    parent: str | None = None
    processes: dict[int, GuestProcess] = field(default_factory=dict)
    scripts: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    files: dict[str, str] = field(default_factory=lambda: {"/etc/os-release": DEBIAN_OS_RELEASE})
    description: str = ""  # the config's description (``#`` lines in the .conf file)
    nets: dict[str, str] = field(default_factory=dict)  # net0.. as in the config

    @property
    def sid(self) -> str:
        return f"{'vm' if self.kind == 'qemu' else 'ct'}:{self.vmid}"

    @property
    def label(self) -> str:
        return "VM" if self.kind == "qemu" else "CT"

    def config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "name" if self.kind == "qemu" else "hostname": self.name,
            "memory": str(self.memory) if self.kind == "qemu" else self.memory,
            "cores": 2,
            "onboot": int(self.onboot),
            "digest": f"{hash((self.vmid, self.lock, self.parent)) & 0xFFFFFFFF:040x}",
        }
        if self.kind == "qemu":
            conf.update(
                agent="1" if self.agent else "0", ostype="l26", scsi0=f"local-zfs:vm-{self.vmid}-disk-0"
            )
        else:
            conf.update(ostype="debian", rootfs=f"local-zfs:subvol-{self.vmid}-disk-0")
        if self.tags:
            conf["tags"] = ";".join(self.tags)
        if self.description:
            conf["description"] = self.description
        conf.update(self.nets)
        if self.lock:
            conf["lock"] = self.lock
        if self.parent:
            conf["parent"] = self.parent
        return conf


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    tokenid: str | None
    pid: int
    pstart: int
    starttime: int
    status: str = "running"
    exitstatus: str | None = None
    log: list[str] = field(default_factory=list)
    finish: Callable[[], int] | None = None  # returns the warning count; raises TaskError
    undo: Callable[[], None] | None = None  # rolls back begin-effects when the task fails
    fail_message: str | None = None  # injected: the task fails inside with this message
    leave_lock: bool = False  # injected: a failure leaves the lock (and snapstate) behind


class Cluster:
    def __init__(self, config: SimConfig | None = None, clock: SimClock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or SimClock()
        self.lock = threading.RLock()
        self.nodes: dict[str, Node] = {}
        self.guests: dict[int, Guest] = {}
        self.tasks: dict[str, Task] = {}
        self.events: list[tuple[float, str, str, dict[str, Any]]] = []  # (time, kind, subject, detail)
        #: Called with (kind, subject, detail) for every recorded event, under ``lock`` (tests use it
        #: to make a snapshot/rollback act on state kept outside the simulator, e.g. a fake guest).
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []
        self.faults: list[dict[str, Any]] = []
        self.storages: dict[str, Any] = {}  # name -> storage.Storage (tests/simulators/pvesim/storage.py)
        #: HA rules by id (PVE 9 ``/etc/pve/ha/rules.cfg``): type, resources, nodes, strict, disable, comment
        self.ha_rules: dict[str, dict[str, Any]] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._pids = itertools.count(0x1A000)

    # -- building -------------------------------------------------------------------------------

    def add_node(self, name: str, **kw: Any) -> Node:
        node = Node(
            name=name,
            nodeid=len(self.nodes) + 1,
            ip=f"10.10.0.{len(self.nodes) + 1}",
            boot_at=self.clock.monotonic(),
            **kw,
        )
        self.nodes[name] = node
        return node

    def add_ha_rule(self, rule: str, *, resources: str, nodes: str, strict: bool = False) -> None:
        """A node-affinity rule (``resources`` like ``vm:101``, ``nodes`` like ``pve2:2,pve3``)."""
        self.ha_rules[rule] = {"type": "node-affinity", "resources": resources, "nodes": nodes,
                               "strict": int(strict), "disable": 0}  # fmt: skip

    def add_guest(self, vmid: int, kind: str, name: str, node: str, **kw: Any) -> Guest:
        if kind == "qemu" and "nets" not in kw:
            kw["nets"] = {"net0": f"virtio={mac_address(vmid)},bridge=vmbr0,firewall=1"}
        guest = Guest(
            vmid=vmid, kind=kind, name=name, node=node, ip=f"10.20.{vmid // 256}.{vmid % 256}", **kw
        )
        guest.agent_ready_at = self.clock.monotonic()
        self.guests[vmid] = guest
        return guest

    # -- time -----------------------------------------------------------------------------------

    def at(self, delay: float | None, fn: Callable[[], None]) -> None:
        if delay is not None:
            heapq.heappush(self._timers, (self.clock.monotonic() + delay, next(self._seq), fn))

    def tick(self) -> None:
        with self.lock:
            now = self.clock.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                fn()

    def record(self, kind: str, subject: str, **detail: Any) -> None:
        self.events.append((self.clock.monotonic(), kind, subject, detail))
        for listener in list(self.listeners):
            listener(kind, subject, detail)

    # -- faults ---------------------------------------------------------------------------------

    def take_fault(self, kind: str, **match: Any) -> dict[str, Any] | None:
        """Consume the first fault of ``kind`` whose given keys match (absent keys match anything)."""
        for fault in self.faults:
            if fault["kind"] != kind:
                continue
            if all(fault.get(k) in (None, v) for k, v in match.items()):
                fault["count"] = fault.get("count", 1) - 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_http_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """An injected HTTP error for this request (``path`` is a regex searched in the API path)."""
        for fault in self.faults:
            if (
                fault["kind"] == "http_error"
                and fault.get("method") in (None, method)
                and re.search(fault.get("path") or "", path)
            ):
                fault["count"] = fault.get("count", 1) - 1
                if fault["count"] <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- tasks ----------------------------------------------------------------------------------

    def start_task(
        self,
        node: str,
        type_: str,
        id_: str,
        auth: tuple[str, str | None],
        *,
        begin: Callable[[], None] | None = None,
        finish: Callable[[], int] | None = None,
        undo: Callable[[], None] | None = None,
        duration: float | None | str = "default",
    ) -> Task:
        user, tokenid = auth
        pid, starttime = next(self._pids), int(self.clock.time())
        pstart = int(self.clock.monotonic() * 100) & 0xFFFFFFFF
        who = f"{user}!{tokenid}" if tokenid else user
        upid = f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type_}:{id_}:{who}:"
        task = Task(upid, node, type_, id_, user, tokenid, pid, pstart, starttime, finish=finish, undo=undo)
        task.log.append(f"starting task {type_} {id_}".strip())
        self.tasks[upid] = task
        fault = self.take_fault("task_fail", task_type=type_, vmid=int(id_) if id_.isdigit() else None)
        if fault:
            task.fail_message, task.leave_lock = fault["message"], bool(fault.get("leave_lock"))
        try:
            if begin:
                begin()
        except TaskError as exc:
            self._stop(task, str(exc), warnings=None)
            return task
        if duration == "default":
            duration = self.config.durations.get(type_, self.config.task_duration)
        hang = self.take_fault("task_hang", task_type=type_)
        self.at(None if hang else duration, lambda: self._complete(task))  # type: ignore[arg-type]
        return task

    def _complete(self, task: Task) -> None:
        if task.status != "running":
            return
        if task.fail_message:
            if task.undo and not task.leave_lock:
                task.undo()
            self._stop(task, task.fail_message, warnings=None)
            return
        try:
            warnings = task.finish() if task.finish else 0
        except TaskError as exc:
            if task.undo:
                task.undo()
            self._stop(task, str(exc), warnings=None)
            return
        self._stop(task, None, warnings=warnings)

    def _stop(self, task: Task, error: str | None, *, warnings: int | None) -> None:
        task.status = "stopped"
        if error is not None:
            task.exitstatus = error
            task.log.append(f"TASK ERROR: {error}")
        elif warnings:
            task.exitstatus = f"WARNINGS: {warnings}"
            task.log.append(f"TASK WARNINGS: {warnings}")
        else:
            task.exitstatus = "OK"
            task.log.append("TASK OK")
        self.record("task_stopped", task.upid, type=task.type, exitstatus=task.exitstatus)

    def kill_task(self, upid: str) -> None:
        task = self.tasks[upid]
        if task.status == "running":  # a killed worker leaves its lock behind, like real PVE
            self._stop(task, "interrupted by signal", warnings=None)

    def next_pid(self) -> int:
        return next(self._pids)

    # -- queries --------------------------------------------------------------------------------

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            raise ApiError(500, f"no such cluster node '{name}'")
        return self.nodes[name]

    def guest(self, node: str, kind: str, vmid: int) -> Guest:
        guest = self.guests.get(vmid)
        if guest is None or guest.kind != kind or guest.node != node:
            conf = "qemu-server" if kind == "qemu" else "lxc"
            raise ApiError(500, f"Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist")
        return guest

    def in_maintenance(self) -> set[str]:
        return {n.name for n in self.nodes.values() if n.ha_request or n.ha_maintenance}

    def guests_on(self, node: str) -> list[Guest]:
        return [g for g in self.guests.values() if g.node == node]

    def memory_used(self, node: Node) -> int:
        """The host's own use plus the configured memory of every guest running on it (bytes)."""
        guests = sum(g.memory * 1024**2 for g in self.guests_on(node.name) if g.status == "running")
        return min(node.memory_total, node.memory_base + guests)

    def allowed_nodes(self, guest: Guest) -> set[str] | None:
        """Where the HA manager may run ``guest``: the nodes of the enabled strict node-affinity rules
        naming it (None = anywhere)."""
        allowed: set[str] | None = None
        for rule in self.ha_rules.values():
            if rule["type"] != "node-affinity" or rule["disable"] or not rule["strict"]:
                continue
            if guest.sid in rule["resources"].split(","):
                nodes = {n.split(":", 1)[0] for n in rule["nodes"].split(",") if n}
                allowed = nodes if allowed is None else allowed & nodes
        return allowed
