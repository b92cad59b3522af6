"""The fact store's ``leases`` table: which run or operation works on a VM or host right now.

One row per leased target, primary key (kind, site, target id): the *owner* (a run id, or the id
of an operation such as a rollback workflow or a ``snapshots cleanup``), what it does
(``operation``), the process that took it (``holder``: host name and pid, for diagnostics) and
its times. An owner takes its leases before its first side effect, renews them while it lives
(every third of :data:`LEASE_TTL_S`) and deletes them when it is done.

* :meth:`LeaseTables.acquire_leases` — all or nothing in one transaction, re-entrant for the same
  owner (a resumed run takes its own leases again); a target another owner holds raises
  :class:`~orchestrator.errors.LeaseHeld` naming that owner. An *expired* lease still belongs to
  its owner: a crashed run's workflow continues as soon as a worker serves it again, so nobody
  takes its targets over; ``patchwave doctor --fix`` releases it once the owner provably no
  longer runs.
* :meth:`~LeaseTables.renew_leases`, :meth:`~LeaseTables.release_leases` — by owner (one indexed
  statement, whatever the number of targets).

Portable SQL (PostgreSQL next): plain SELECT / INSERT / UPDATE / DELETE with ``?`` parameters, the
conflict check in the same transaction as the writes (SQLite: ``BEGIN IMMEDIATE`` serialises
writers; PostgreSQL: a unique violation on INSERT means another owner won the race and must be
turned into the same refusal by running the check again).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby, islice

from orchestrator.errors import LeaseHeld
from orchestrator.facts.database import Database
from orchestrator.model import Plan
from providers.base import HostRef, VmRef

#: Seconds a lease lives without renewal; its holder renews it every third of that (2 h). Expiry only
#: tells the doctor and a refused operation that the holder's process looks dead (an expired lease
#: still belongs to its owner), so the TTL is long: a run that waits weeks for its window records a
#: renewal every 2 h of workflow time (5 history events), not every few minutes.
#: ``PATCHWAVE_LEASE_TTL_S`` is a test knob (a crashed holder's lease expires sooner).
LEASE_TTL_S = float(os.environ.get("PATCHWAVE_LEASE_TTL_S") or 21600.0)
OPERATIONS = frozenset({"run", "schedule", "rollback", "cleanup", "doctor"})
#: Targets per SELECT / DELETE (bound parameters stay far below every database's limit).
CHUNK = 500


def this_process() -> str:
    """``host:pid`` of this process: the holder recorded with the leases it takes."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LeaseTarget:
    kind: str  # "vm" | "host"
    site: str
    target_id: str  # the platform id
    name: str = ""  # for messages

    @classmethod
    def vm(cls, ref: VmRef) -> LeaseTarget:
        return cls("vm", ref.site, ref.id, ref.name)

    @classmethod
    def host(cls, ref: HostRef) -> LeaseTarget:
        return cls("host", ref.site, ref.id, ref.name)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.site, self.target_id

    @property
    def label(self) -> str:
        return self.name or f"{self.site}/{self.target_id}"


@dataclass(frozen=True)
class Lease:
    target: LeaseTarget
    owner: str
    operation: str
    holder: str  # "host:pid" of the process that took or last renewed it
    acquired_at: str
    renewed_at: str
    expires_at: str

    def expired(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires_at) <= now.astimezone(UTC)


def plan_targets(plan: Plan, *, done: Iterable[str] = ()) -> list[LeaseTarget]:
    """What a run of ``plan`` works on: every planned VM and every host it patches (a report-only
    host is only read), except the steps in ``done`` (final outcomes of a resumed run)."""
    skip = set(done)
    vms = [LeaseTarget.vm(step.vm) for step in plan.vm_steps if step.step_id not in skip]
    hosts = [LeaseTarget.host(s.host) for s in plan.host_steps if s.patch != "none" and s.step_id not in skip]
    return vms + hosts


def refusal(leases: Sequence[Lease], now: datetime) -> LeaseHeld:
    """The :class:`LeaseHeld` for ``leases`` held by others: the earliest holder is named."""
    first = min(leases, key=lambda lease: (lease.acquired_at, lease.owner))
    mine = sorted(lease.target.label for lease in leases if lease.owner == first.owner)
    others = len({lease.owner for lease in leases} - {first.owner})
    return LeaseHeld(
        first.owner, first.operation, mine, since=_seconds(first.acquired_at),
        expires_at=_seconds(first.expires_at), expired=first.expired(now), others=others,
    )  # fmt: skip


def _seconds(iso: str) -> str:
    return datetime.fromisoformat(iso).isoformat(timespec="seconds")


def _chunks(targets: Sequence[LeaseTarget]) -> Iterator[tuple[str, str, list[str]]]:
    """(kind, site, target ids) in groups of at most :data:`CHUNK`."""
    ordered = sorted(targets, key=lambda t: t.key)
    for (kind, site), group in groupby(ordered, key=lambda t: (t.kind, t.site)):
        ids = iter([t.target_id for t in group])
        while chunk := list(islice(ids, CHUNK)):
            yield kind, site, chunk


class LeaseTables(Database):
    def _iso(self, moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")

    def _expiry(self, ttl_s: float) -> tuple[str, str]:
        now = self._clock.now()
        return self._iso(now), self._iso(now + timedelta(seconds=ttl_s))

    def acquire_leases(
        self,
        owner: str,
        targets: Sequence[LeaseTarget],
        *,
        operation: str,
        holder: str = "",
        ttl_s: float = LEASE_TTL_S,
    ) -> int:
        """Take every lease of ``targets`` for ``owner`` or none (:class:`LeaseHeld`). Re-entrant:
        the owner's own leases are renewed (their operation stays). Returns how many were newly taken."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown lease operation {operation!r}; use one of {sorted(OPERATIONS)}")
        unique = list({t.key: t for t in targets}.values())
        now, expires = self._expiry(ttl_s)
        holder = holder or this_process()
        with self._tx():
            found = self._held(unique)
            others = [lease for lease in found if lease.owner != owner]
            if others:
                raise refusal(others, self._clock.now())
            renewed = {lease.target.key for lease in found}
            self._db().executemany(
                "UPDATE leases SET holder = ?, renewed_at = ?, expires_at = ?"
                " WHERE kind = ? AND site = ? AND target_id = ? AND owner = ?",
                [(holder, now, expires, *t.key, owner) for t in unique if t.key in renewed],
            )
            fresh = [t for t in unique if t.key not in renewed]
            self._db().executemany(
                "INSERT INTO leases (kind, site, target_id, name, owner, operation, holder, acquired_at,"
                " renewed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*t.key, t.name, owner, operation, holder, now, now, expires) for t in fresh],
            )
        return len(fresh)

    def renew_leases(self, owner: str, *, holder: str = "", ttl_s: float = LEASE_TTL_S) -> int:
        """Push the expiry of every lease ``owner`` holds; how many it holds."""
        now, expires = self._expiry(ttl_s)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE leases SET holder = ?, renewed_at = ?, expires_at = ? WHERE owner = ?",
                (holder or this_process(), now, expires, owner),
            )
            return max(int(cur.rowcount), 0)

    def release_leases(self, owner: str, targets: Sequence[LeaseTarget] | None = None) -> int:
        """Delete ``owner``'s leases (all, or those of ``targets``); another owner's are untouched."""
        with self._tx() as db:
            if targets is None:
                return max(int(db.execute("DELETE FROM leases WHERE owner = ?", (owner,)).rowcount or 0), 0)
            released = 0
            for kind, site, ids in _chunks(targets):
                marks = ", ".join("?" for _ in ids)
                cur = db.execute(
                    f"DELETE FROM leases WHERE owner = ? AND kind = ? AND site = ? AND target_id IN ({marks})",
                    (owner, kind, site, *ids),
                )
                released += max(cur.rowcount, 0)
            return released

    def release_lease_if(self, lease: Lease) -> bool:
        """Delete ``lease`` only if it is unchanged since it was read (same owner, not renewed):
        the doctor's release of an expired lease must not drop one its owner renewed meanwhile."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM leases WHERE kind = ? AND site = ? AND target_id = ? AND owner = ?"
                " AND expires_at = ?",
                (*lease.target.key, lease.owner, lease.expires_at),
            )
            return int(cur.rowcount) > 0

    def leases_on(self, targets: Sequence[LeaseTarget]) -> list[Lease]:
        """The leases held on any of ``targets`` (by anyone)."""
        return self._held(list({t.key: t for t in targets}.values()))

    def leases(self, *, owner: str | None = None) -> list[Lease]:
        sql = "SELECT * FROM leases"
        args: tuple[str, ...] = ()
        if owner is not None:
            sql, args = sql + " WHERE owner = ?", (owner,)
        rows = self._db().execute(sql + " ORDER BY kind, site, target_id", args)
        return [_lease(row) for row in rows]

    def expired_leases(self, now: datetime) -> list[Lease]:
        rows = self._db().execute(
            "SELECT * FROM leases WHERE expires_at <= ? ORDER BY owner, kind, site, target_id",
            (self._iso(now),),
        )
        return [_lease(row) for row in rows]

    def wait_released(
        self,
        refused: LeaseHeld,
        *,
        timeout_s: float,
        on_wait: Callable[[str], None] | None = None,
        poll_s: float = 2.0,
    ) -> None:
        """Wait until ``refused.holder`` holds none of ``refused.targets`` any more (``--wait``);
        the same refusal again after ``timeout_s``. ``on_wait`` hears how it goes now and then."""
        start, told = self._clock.monotonic(), -1.0
        while True:
            left = [
                lease for lease in self.leases(owner=refused.holder) if lease.target.label in refused.targets
            ]
            if not left:
                return
            waited = self._clock.monotonic() - start
            if waited >= timeout_s:
                raise refusal(left, self._clock.now())
            if on_wait is not None and (told < 0 or waited - told >= 30):
                told = waited
                on_wait(
                    f"waiting for {refused.operation} {refused.holder}: it still holds {len(left)} of the targets "
                    f"({waited:.0f}s of {timeout_s:.0f}s)"
                )
            self._clock.sleep(min(poll_s, max(0.0, timeout_s - waited)))

    def _held(self, targets: Sequence[LeaseTarget]) -> list[Lease]:
        found: list[Lease] = []
        for kind, site, ids in _chunks(targets):
            marks = ", ".join("?" for _ in ids)
            rows = self._db().execute(
                f"SELECT * FROM leases WHERE kind = ? AND site = ? AND target_id IN ({marks})",
                (kind, site, *ids),
            )
            found.extend(_lease(row) for row in rows)
        return found


def _lease(r: sqlite3.Row) -> Lease:
    target = LeaseTarget(r["kind"], r["site"], r["target_id"], r["name"])
    return Lease(
        target, r["owner"], r["operation"], r["holder"], r["acquired_at"], r["renewed_at"], r["expires_at"]
    )
