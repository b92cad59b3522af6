"""Behaviour of the simulated cluster: power, snapshots, migration, HA maintenance, node reboots.

Each action follows PVE's split between synchronous checks (raised as :class:`ApiError`, an HTTP
error) and checks inside the worker (raised as :class:`TaskError` in ``begin``/``finish``: the HTTP
call answers 200 with a UPID and the task ends with the error as its exit status). See
ENDPOINTS.md §3 for which is which.
"""

from __future__ import annotations

from typing import Any

from tests.simulators.pvesim.state import ApiError, Cluster, Guest, Snapshot, Task, TaskError

Auth = tuple[str, str | None]
ROOT: Auth = ("root@pam", None)
RESERVED = {"qemu": ("current", "pending"), "lxc": ("current", "vzdump")}


def check_lock(guest: Guest) -> None:
    if guest.lock:
        raise TaskError(f"{guest.label} is locked ({guest.lock})")


def start_guest(cl: Cluster, guest: Guest, *, from_ram: bool = False) -> None:
    now = cl.clock.monotonic()
    guest.status, guest.started_at = "running", now
    fault = cl.take_fault("agent_not_ready", vmid=guest.vmid)
    delay = 0.0 if from_ram else cl.config.agent_boot_delay
    guest.agent_ready_at = now + max(delay, float(fault["seconds"]) if fault else 0.0)
    guest.processes.clear()


def stop_guest(guest: Guest) -> None:
    guest.status = "stopped"
    guest.processes.clear()


# -- power ----------------------------------------------------------------------------------


def power(cl: Cluster, guest: Guest, action: str, auth: Auth) -> Task:
    """start | stop | shutdown | reboot; HA-managed guests get ha* tasks that end before the change."""
    if action == "reboot" and guest.status != "running":
        raise ApiError(500, f"VM {guest.vmid} not running")
    want = "running" if action in ("start", "reboot") else "stopped"
    if guest.ha_managed and action != "reboot":

        def request() -> int:
            cl.at(cl.config.ha_delay, lambda: _apply_power(cl, guest, want))
            return 0

        return cl.start_task(
            guest.node, "hastart" if want == "running" else "hastop", str(guest.vmid), auth, finish=request
        )

    def begin() -> None:
        check_lock(guest)
        if action == "start" and guest.status == "running":
            raise TaskError(f"VM {guest.vmid} already running")

    def finish() -> int:
        if action == "reboot":
            stop_guest(guest)
        _apply_power(cl, guest, want)
        if action == "reboot":  # listeners may reboot a fake guest (test_services_restart)
            cl.record("guest_rebooted", guest.sid, vmid=guest.vmid, name=guest.name)
        return 0

    prefix = "qm" if guest.kind == "qemu" else "vz"
    return cl.start_task(guest.node, prefix + action, str(guest.vmid), auth, begin=begin, finish=finish)


def _apply_power(cl: Cluster, guest: Guest, want: str) -> None:
    if want == "running" and guest.status != "running":
        start_guest(cl, guest)
    elif want == "stopped":
        stop_guest(guest)


# -- snapshots ----------------------------------------------------------------------------------


def snapshot_create(
    cl: Cluster, guest: Guest, name: str, description: str, vmstate: bool, auth: Auth
) -> Task:
    if name in RESERVED[guest.kind]:
        raise ApiError(500, f"unable to use snapshot name '{name}' (reserved name)")

    def begin() -> None:
        check_lock(guest)
        if name in guest.snapshots:
            raise TaskError(f"snapshot name '{name}' already used")
        guest.lock = "snapshot"
        guest.snapshots[name] = Snapshot(
            name,
            description,
            int(cl.clock.time()),
            vmstate and guest.status == "running" and guest.kind == "qemu",
            guest.parent,
            guest.config(),
            snapstate="prepare",
            files=dict(guest.files),
        )

    def finish() -> int:
        guest.snapshots[name].snapstate = None
        guest.parent, guest.lock = name, None
        cl.record("snapshot_created", guest.sid, vmid=guest.vmid, name=guest.name, snapshot=name)
        return 0

    def undo() -> None:
        guest.snapshots.pop(name, None)
        guest.lock = None

    task_type = "qmsnapshot" if guest.kind == "qemu" else "vzsnapshot"
    return cl.start_task(guest.node, task_type, str(guest.vmid), auth, begin=begin, finish=finish, undo=undo)


def snapshot_rollback(cl: Cluster, guest: Guest, name: str, start: bool, auth: Auth) -> Task:
    def begin() -> None:
        check_lock(guest)
        snap = guest.snapshots.get(name)
        if snap is None:
            raise TaskError(f"snapshot '{name}' does not exist")
        committed = [s.name for s in guest.snapshots.values() if not s.snapstate]
        if guest.rollback_latest_only and committed and committed[-1] != name:
            disk = f"local-zfs:vm-{guest.vmid}-disk-0"
            raise TaskError(f"can't rollback, '{name}' is not most recent snapshot on '{disk}'")
        guest.lock = "rollback"
        stop_guest(guest)  # hard stop, no graceful shutdown

    def finish() -> int:
        snap = guest.snapshots[name]
        guest.parent, guest.lock = name, None
        guest.files = dict(snap.files)
        cl.record("snapshot_rolled_back", guest.sid, vmid=guest.vmid, name=guest.name, snapshot=name)
        if snap.vmstate:
            start_guest(cl, guest, from_ram=True)
        elif start:
            start_guest(cl, guest)
        return 0

    def undo() -> None:
        guest.lock = None

    task_type = "qmrollback" if guest.kind == "qemu" else "vzrollback"
    return cl.start_task(guest.node, task_type, str(guest.vmid), auth, begin=begin, finish=finish, undo=undo)


def snapshot_delete(cl: Cluster, guest: Guest, name: str, force: bool, auth: Auth) -> Task:
    def begin() -> None:
        if not force:
            check_lock(guest)
        if name not in guest.snapshots:
            raise TaskError(f"snapshot '{name}' does not exist")
        guest.lock = "snapshot-delete"
        guest.snapshots[name].snapstate = "delete"

    def finish() -> int:
        snap = guest.snapshots.pop(name)
        for other in guest.snapshots.values():
            if other.parent == name:
                other.parent = snap.parent
        if guest.parent == name:
            guest.parent = snap.parent
        guest.lock = None
        return 0

    def undo() -> None:
        if name in guest.snapshots:
            guest.snapshots[name].snapstate = None
        guest.lock = None

    task_type = "qmdelsnapshot" if guest.kind == "qemu" else "vzdelsnapshot"
    return cl.start_task(guest.node, task_type, str(guest.vmid), auth, begin=begin, finish=finish, undo=undo)


# -- migration ----------------------------------------------------------------------------------


def check_target(cl: Cluster, source: str, target: str) -> None:
    if target == source:
        raise ApiError(400, "target is local node.")
    if not cl.node(target).online:
        raise ApiError(500, f"target node '{target}' is not online")


def migrate(
    cl: Cluster, guest: Guest, target: str, auth: Auth, *, online: bool, restart: bool = False
) -> Task:
    check_target(cl, guest.node, target)
    if guest.lock:
        raise ApiError(500, f"{guest.label} is locked ({guest.lock})")
    if guest.kind == "qemu" and guest.status == "running" and not online:
        raise ApiError(500, "can't migrate running VM without --online")
    if guest.ha_managed:

        def request() -> int:
            cl.at(cl.config.ha_delay, lambda: migration_task(cl, guest, target, ROOT))
            return 0

        return cl.start_task(guest.node, "hamigrate", str(guest.vmid), auth, finish=request)
    if guest.kind == "lxc" and guest.status == "running" and online and not restart:
        return cl.start_task(guest.node, "vzmigrate", str(guest.vmid), auth, begin=_lxc_live_refused)
    return migration_task(cl, guest, target, auth)


def _lxc_live_refused() -> None:
    raise TaskError("lxc live migration is currently not implemented")


def migration_task(cl: Cluster, guest: Guest, target: str, auth: Auth) -> Task:
    def begin() -> None:
        check_lock(guest)
        guest.lock = "migrate"

    def finish() -> int:
        cl.record("migrated", guest.sid, source=guest.node, target=target)
        guest.node, guest.lock = target, None
        return 0

    def undo() -> None:
        guest.lock = None

    task_type = "qmigrate" if guest.kind == "qemu" else "vzmigrate"
    return cl.start_task(
        guest.node,
        task_type,
        str(guest.vmid),
        auth,
        begin=begin,
        finish=finish,
        undo=undo,
        duration=cl.config.migrate_duration,
    )


def migrate_all(
    cl: Cluster, node: str, target: str, vms: set[int] | None, workers: int | None, auth: Auth
) -> Task:
    check_target(cl, node, target)
    children: list[Task] = []
    skipped: list[int] = []

    def begin() -> None:
        if not (workers or cl.config.datacenter_max_workers):
            raise TaskError("missing 'max-workers' parameter and no 'max_workers' in datacenter.cfg")
        for guest in sorted(cl.guests_on(node), key=lambda g: g.vmid):
            if guest.template or (vms is not None and guest.vmid not in vms):
                continue
            if cl.take_fault("migrate_skip", vmid=guest.vmid) or guest.lock:
                skipped.append(guest.vmid)
                continue
            children.append(migrate(cl, guest, target, auth, online=True, restart=True))

    def finish() -> int:
        for vmid in skipped:
            parent.log.append(f"skipping guest {vmid}: precondition check failed")
        return len(skipped) + sum(1 for c in children if c.status == "stopped" and c.exitstatus != "OK")

    parent = cl.start_task(
        node,
        "migrateall",
        "",
        auth,
        begin=begin,
        finish=finish,
        duration=cl.config.migrate_duration + cl.config.task_duration,
    )
    return parent


# -- nodes --------------------------------------------------------------------------------------


def choose_target(cl: Cluster, source: str, guest: Guest | None = None) -> str | None:
    """The CRM's choice for an HA service leaving ``source``: the least loaded node it may run on."""
    busy = cl.in_maintenance()
    allowed = cl.allowed_nodes(guest) if guest is not None else None
    candidates = [
        n
        for n in cl.nodes.values()
        if n.online and n.name != source and n.name not in busy and (allowed is None or n.name in allowed)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (len(cl.guests_on(n.name)), n.name)).name


def ha_maintenance(cl: Cluster, node_name: str, enable: bool) -> None:
    node = cl.node(node_name)
    node.ha_request = enable
    cl.record("maintenance_enabled" if enable else "maintenance_disabled", node_name)
    if not enable:
        node.ha_maintenance = False
        return

    def processed() -> None:
        if not node.ha_request:
            return
        node.ha_maintenance = True
        for guest in [g for g in cl.guests_on(node_name) if g.ha_managed]:
            target = choose_target(cl, node_name, guest)
            if target:  # none allowed: the service stays where it is (maintenance cannot move it)
                migration_task(cl, guest, target, ROOT)

    cl.at(cl.config.ha_delay, processed)


def reboot_node(cl: Cluster, node_name: str) -> None:
    node = cl.node(node_name)
    running = [g.vmid for g in cl.guests_on(node_name) if g.status == "running"]
    cl.record("node_reboot", node_name, running_guests=running, maintenance=sorted(cl.in_maintenance()))
    for guest in cl.guests_on(node_name):
        stop_guest(guest)
    node.online = False

    def back() -> None:
        node.online, node.boot_at = True, cl.clock.monotonic()
        node.boot_count += 1
        node.kernel_running = node.kernels_installed[-1]
        cl.record("node_online", node_name, boot_count=node.boot_count)
        for vmid in running:
            guest = cl.guests.get(vmid)
            if guest and guest.node == node_name and guest.onboot:
                start_guest(cl, guest)

    cl.at(cl.config.reboot_offline, back)


def apt_upgrade(cl: Cluster, node_name: str) -> list[str]:
    """dist-upgrade: install every candidate; a new kernel package adds an installed kernel."""
    node = cl.node(node_name)
    lines = []
    for name, versions in sorted(node.packages.items()):
        installed, candidate = versions
        if installed == candidate:
            continue
        lines.append(f"Unpacking {name} ({candidate}) over ({installed}) ...")
        lines.append(f"Setting up {name} ({candidate}) ...")
        versions[0] = candidate
        if name.startswith("proxmox-kernel-"):
            node.kernels_installed.append(f"{candidate}-pve")
    cl.record("apt_upgrade", node_name, changed=len(lines))
    return lines or ["0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded."]


def pending_updates(cl: Cluster, node_name: str) -> list[dict[str, Any]]:
    return [
        {
            "Package": name,
            "OldVersion": inst,
            "Version": cand,
            "Arch": "amd64",
            "Origin": "Proxmox",
            "Priority": "optional",
            "Section": "admin",
            "Title": f"{name} update",
            "Description": f"{name} update",
        }
        for name, (inst, cand) in sorted(cl.node(node_name).packages.items())
        if inst != cand
    ]
