"""The fact store's inventory tables (migration 5): the latest inventory of every site.

Each discovery (``Context.discover``: ``patchwave inventory``/``plan``/``report --refresh`` and the
``discover`` activity of every run) appends a header row to ``inventory_snapshots`` and replaces the
site's machine rows in ``inventory_machines``: only the current snapshot of a site keeps machine
rows, and at most :data:`KEEP_SNAPSHOTS` header rows per site are kept, so nothing grows with time.

A VM row carries the group and ring the configuration gave it when it was discovered (the caller's
``placement``), so the compliance report and the metrics can aggregate per group without a live
provider connection and without reading plans. Used through :class:`InventoryStore`, which shares
the :class:`~orchestrator.facts.store.FactStore`'s connections and transactions.

Each machine row also carries the platform's whole description (``body``, migration 7): a run's
``discover`` activity records the site's inventory here and hands the workflow only the snapshot's id
(:meth:`InventoryStore.load` reads it back for the planner). Such a snapshot is *pinned* to its run
until the run is planned (:meth:`InventoryStore.unpin`): a newer discovery of the site in between
does not delete its machine rows. Pins older than :data:`PIN_TTL_S` are dropped with their rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.errors import FactStoreError
from orchestrator.facts.records import to_json, utc
from orchestrator.facts.store import FactStore
from orchestrator.model import SCHEMA_VERSION
from providers.base import HostInfo, Inventory, VmInfo

#: Header rows kept per site (the machine rows are kept for the current one, and pinned ones, only).
KEEP_SNAPSHOTS = 100
#: A pin whose run never planned (it failed, or was cancelled, before ``plan_run``) ends after this.
PIN_TTL_S = 24 * 3600
#: A VM's (group, ring) under the configuration; see :func:`orchestrator.context.placement`.
Placement = Callable[[VmInfo], tuple[str, str]]


@dataclass(frozen=True)
class InventorySnapshot:
    id: int
    site: str
    taken_at: str  # ISO UTC
    hosts: int
    vms: int


@dataclass(frozen=True)
class InventoryMachine:
    """A host or a VM as the site's latest discovery saw it (no labels, tags or addresses kept)."""

    kind: str  # "host" | "vm"
    site: str
    id: str  # the platform's id
    name: str
    state: str  # a host's HostState, a VM's PowerState
    host_id: str = ""  # a VM's host, when known
    group: str = ""  # a VM's configured group at discovery
    ring: str = ""
    os: str = ""  # a VM's guest OS as the platform reports it
    version: str = ""  # a host's hypervisor version
    build: str = ""  # a host's hypervisor build
    boot_time: str = ""  # a host's boot time, when known


_COLUMNS = "kind, site, machine_id, name, state, host_id, group_name, ring, os, version, build, boot_time"
_ALL_COLUMNS = f"{_COLUMNS}, body"


def _host_row(snapshot: int, h: HostInfo) -> tuple[object, ...]:
    r = h.ref
    return (
        snapshot,
        "host",
        r.site,
        r.id,
        r.name,
        str(h.state),
        "",
        "",
        "",
        "",
        h.version,
        h.build,
        h.boot_time,
        to_json(h),
    )


def _vm_row(snapshot: int, v: VmInfo, placement: Placement) -> tuple[object, ...]:
    group, ring = placement(v)
    host = v.host.id if v.host is not None else ""
    r = v.ref
    row = (snapshot, "vm", r.site, r.id, r.name, str(v.power), host, group, ring, v.guest_os, "", "", "")
    return (*row, to_json(v))


def _machine(row: sqlite3.Row) -> InventoryMachine:
    return InventoryMachine(
        kind=row["kind"], site=row["site"], id=row["machine_id"], name=row["name"], state=row["state"],
        host_id=row["host_id"], group=row["group_name"], ring=row["ring"], os=row["os"],
        version=row["version"], build=row["build"], boot_time=row["boot_time"],
    )  # fmt: skip


class InventoryStore:
    """The latest inventory per site, in the same database as ``facts``."""

    def __init__(self, facts: FactStore) -> None:
        self._facts = facts

    def record(self, inventory: Inventory, placement: Placement, *, taken_at: str = "", pin: str = "") -> int:
        """Make ``inventory`` its site's current snapshot; returns the snapshot id. ``pin``: a run id
        that will read this snapshot back (:meth:`load`) before it plans."""
        now = self._facts._now()
        site = inventory.site
        with self._facts._tx() as db:
            db.execute("UPDATE inventory_snapshots SET current = 0 WHERE site = ?", (site,))
            snapshot = int(db.execute(
                "INSERT INTO inventory_snapshots (site, taken_at, hosts, vms, current, recorded_at, schema_version)"
                " VALUES (?, ?, ?, ?, 1, ?, ?)",
                (site, taken_at or now, len(inventory.hosts), len(inventory.vms), now, SCHEMA_VERSION),
            ).lastrowid or 0)  # fmt: skip
            if pin:
                db.execute(
                    "INSERT INTO inventory_pins (snapshot_id, run_id, pinned_at) VALUES (?, ?, ?)",
                    (snapshot, pin, now),
                )
            self._drop_unused(db, site, now)
            rows = [_host_row(snapshot, h) for h in inventory.hosts]
            rows += [_vm_row(snapshot, v, placement) for v in inventory.vms]
            db.executemany(
                f"INSERT INTO inventory_machines (snapshot_id, {_ALL_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                rows,
            )
            db.execute(
                "DELETE FROM inventory_snapshots WHERE site = ? AND current = 0 AND id NOT IN (SELECT id FROM"
                " inventory_snapshots WHERE site = ? ORDER BY id DESC LIMIT ?) AND id NOT IN (SELECT snapshot_id"
                " FROM inventory_pins)",
                (site, site, KEEP_SNAPSHOTS),
            )
        return snapshot

    @staticmethod
    def _drop_unused(db: sqlite3.Connection, site: str, now: str) -> None:
        """Machine rows of the site's older snapshots, unless a run still has to plan from them."""
        expired = (utc(now) - timedelta(seconds=PIN_TTL_S)).isoformat(timespec="microseconds")
        db.execute("DELETE FROM inventory_pins WHERE pinned_at < ?", (expired,))
        db.execute(
            "DELETE FROM inventory_machines WHERE snapshot_id IN (SELECT id FROM inventory_snapshots WHERE site = ?"
            " AND current = 0) AND snapshot_id NOT IN (SELECT snapshot_id FROM inventory_pins)",
            (site,),
        )

    def vms_marked(self, tag: str) -> set[tuple[str, str]]:
        """(site, platform id) of the VMs of each site's current snapshot tagged ``tag`` or labelled
        ``<tag>=true|yes|1`` (read from the machines' recorded descriptions)."""
        marked: set[tuple[str, str]] = set()
        rows = self._facts._db().execute(
            "SELECT m.site, m.machine_id, m.body FROM inventory_machines m JOIN inventory_snapshots s"
            " ON s.id = m.snapshot_id WHERE s.current = 1 AND m.kind = 'vm' AND instr(m.body, ?) > 0",
            (json.dumps(tag),),
        )
        for r in rows:
            body = json.loads(r["body"])
            label = str((body.get("labels") or {}).get(tag, "")).strip().lower()
            if tag in (body.get("tags") or ()) or label in ("true", "yes", "1"):
                marked.add((r["site"], r["machine_id"]))
        return marked

    def load(self, snapshot_id: int) -> Inventory:
        """The inventory a discovery recorded (every host and VM as the platform described it)."""
        from temporalio.converter import value_to_type  # the payload converter's reading of our types

        db = self._facts._db()
        head = db.execute("SELECT site FROM inventory_snapshots WHERE id = ?", (snapshot_id,)).fetchone()
        rows = db.execute(
            "SELECT kind, body FROM inventory_machines WHERE snapshot_id = ? ORDER BY kind, site, name, machine_id",
            (snapshot_id,),
        ).fetchall()
        if head is None or any(not r["body"] for r in rows) or (not rows and not self._empty(snapshot_id)):
            raise FactStoreError(
                f"inventory snapshot {snapshot_id} is no longer in the fact store",
                step="plan_run",
                fix="start the run again: it discovers the sites anew",
            )
        hosts = tuple(value_to_type(HostInfo, json.loads(r["body"])) for r in rows if r["kind"] == "host")
        vms = tuple(value_to_type(VmInfo, json.loads(r["body"])) for r in rows if r["kind"] == "vm")
        return Inventory(site=head["site"], hosts=hosts, vms=vms)

    def _empty(self, snapshot_id: int) -> bool:
        row = (
            self._facts._db()
            .execute("SELECT hosts, vms FROM inventory_snapshots WHERE id = ?", (snapshot_id,))
            .fetchone()
        )
        return row is not None and row["hosts"] == 0 and row["vms"] == 0

    def unpin(self, run_id: str) -> None:
        """The run has planned: its snapshots may go with the next discovery of their sites."""
        with self._facts._tx() as db:
            db.execute("DELETE FROM inventory_pins WHERE run_id = ?", (run_id,))

    def current(self) -> list[InventorySnapshot]:
        """Every site's current snapshot, by site."""
        rows = self._facts._db().execute(
            "SELECT id, site, taken_at, hosts, vms FROM inventory_snapshots WHERE current = 1 ORDER BY site"
        )
        return [InventorySnapshot(r["id"], r["site"], r["taken_at"], r["hosts"], r["vms"]) for r in rows]

    def history(self, site: str, limit: int = 30) -> list[InventorySnapshot]:
        """The site's snapshots (headers), newest first."""
        rows = self._facts._db().execute(
            "SELECT id, site, taken_at, hosts, vms FROM inventory_snapshots WHERE site = ? ORDER BY id DESC LIMIT ?",
            (site, limit),
        )
        return [InventorySnapshot(r["id"], r["site"], r["taken_at"], r["hosts"], r["vms"]) for r in rows]

    def machines(self, kind: str | None = None) -> list[InventoryMachine]:
        """The machines of every site's current snapshot (``kind``: "host" or "vm"), by site and name."""
        sql = (
            f"SELECT m.{_COLUMNS.replace(', ', ', m.')} FROM inventory_machines m JOIN inventory_snapshots s"
            " ON s.id = m.snapshot_id WHERE s.current = 1"
        )
        args: tuple[str, ...] = ()
        if kind is not None:
            sql, args = sql + " AND m.kind = ?", (kind,)
        rows = self._facts._db().execute(sql + " ORDER BY m.site, m.name, m.machine_id", args)
        return [_machine(r) for r in rows]
