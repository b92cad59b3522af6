"""Internal (qcow2) snapshots of libvirt domains.

``create`` makes an internal snapshot with ``VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC``. On a running or
paused domain libvirt 9 can only make a *full system checkpoint* (disks and RAM): a disk-only
internal snapshot of a running domain is refused ("must include the memory state") and external
snapshots cannot be reverted before libvirt 9.7. So ``memory=False`` on a running domain still
captures memory, and the returned ``has_memory`` says so honestly (it is authoritative, see
``providers.capabilities.SnapshotOps``); reverting it brings the domain back *running*. On a stopped domain
the snapshot is disk-only whatever ``memory`` says. ``quiesce`` is refused by the provider
(internal snapshots cannot be quiesced).

``revert`` passes ``REVERT_RUNNING``/``REVERT_PAUSED`` for snapshots taken running/paused and adds
``REVERT_FORCE`` only when libvirt answers ``VIR_ERR_SNAPSHOT_REVERT_RISKY``. A name that exists is
never replaced (``snapshot_exists``).
After reverting to a *running* state the guest clock is where it was when the snapshot was taken
(GUEST-LAB pitfall 9: TLS, signed repositories, timers); ``revert`` then sets it to now through the
guest agent (``virDomainSetTime``, qemu-ga ``guest-set-time``), waiting up to
:data:`CLOCK_SYNC_TIMEOUT_S` for the agent to answer. A guest without an agent is left as it is
(logged), the revert itself has succeeded.
"""

from __future__ import annotations

from typing import Any

import structlog

from providers.base import SnapshotInfo, VmRef
from providers.errors import OperationRefused, ProviderTimeout
from providers.libvirt.connection import LibvirtSession
from providers.libvirt.xml import parse_snapshot, snapshot_state, snapshot_xml
from providers.timing import wait_until

log = structlog.get_logger("patchwave.providers.libvirt")

#: How long ``revert`` waits for the guest agent to set the clock after a live revert.
CLOCK_SYNC_TIMEOUT_S = 15.0


class DomainSnapshots:
    """Snapshot verbs over a :class:`LibvirtSession` (capability checks are the provider's)."""

    def __init__(self, session: LibvirtSession) -> None:
        self._session = session
        self._lv = session.libvirt

    def list(self, vm: VmRef) -> list[SnapshotInfo]:
        def collect(dom: Any) -> list[SnapshotInfo]:
            infos = [parse_snapshot(vm, s.getXMLDesc(0)) for s in dom.listAllSnapshots(0)]
            return sorted(infos, key=lambda s: (s.created_at, s.name))

        return self._session.read_domain("list_snapshots", vm, collect)

    def create(self, vm: VmRef, name: str, description: str) -> SnapshotInfo:
        if not name or "/" in name:
            raise OperationRefused(f"invalid snapshot name {name!r}", target=str(vm), code="invalid_name")

        def create(dom: Any) -> SnapshotInfo:
            if self._exists(dom, name):
                raise OperationRefused(
                    f"a snapshot named {name!r} already exists; it is not replaced",
                    target=str(vm),
                    code="snapshot_exists",
                )
            try:
                snap = dom.snapshotCreateXML(
                    snapshot_xml(name, description), self._lv.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                )
            except self._lv.libvirtError:
                if self._exists(dom, name):  # lost a race with another creator of that name
                    raise OperationRefused(
                        f"a snapshot named {name!r} was created concurrently",
                        target=str(vm),
                        code="snapshot_exists",
                    ) from None
                raise
            return parse_snapshot(vm, snap.getXMLDesc(0))

        info = self._session.write_domain("create_snapshot", vm, create)
        log.info(
            "snapshot_created", site=self._session.site, vm=vm.name, snapshot=info.id, memory=info.has_memory
        )
        return info

    def revert(self, vm: VmRef, snapshot_id: str) -> None:
        lv = self._lv

        def revert(dom: Any) -> None:
            snap = dom.snapshotLookupByName(snapshot_id, 0)
            state = snapshot_state(snap.getXMLDesc(0))
            flags = {
                "running": lv.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
                "paused": lv.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED,
            }.get(state, 0)
            try:
                dom.revertToSnapshot(snap, flags)
            except lv.libvirtError as exc:
                if exc.get_error_code() != lv.VIR_ERR_SNAPSHOT_REVERT_RISKY:
                    raise
                log.warning(
                    "snapshot_revert_forced", site=self._session.site, vm=vm.name, snapshot=snapshot_id
                )
                dom.revertToSnapshot(snap, flags | lv.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)

        self._session.write_domain("revert_snapshot", vm, revert)
        log.info("snapshot_reverted", site=self._session.site, vm=vm.name, snapshot=snapshot_id)
        if self._session.read_domain("revert_snapshot", vm, lambda dom: dom.isActive()):
            self._sync_clock(vm)

    def _sync_clock(self, vm: VmRef) -> None:
        """Set the guest clock to now through the agent (best effort, bounded)."""
        lv, clock = self._lv, self._session.clock

        waiting = {getattr(lv, name, -1) for name in ("VIR_ERR_AGENT_UNRESPONSIVE", "VIR_ERR_AGENT_UNSYNCED")}

        def set_time(dom: Any) -> str | None:
            now = clock.now().timestamp()
            try:
                dom.setTime({"seconds": int(now), "nseconds": int((now % 1) * 1e9)}, 0)
            except lv.libvirtError as exc:
                if exc.get_error_code() in waiting:
                    return None  # the agent is not back yet: try again
                return f"not supported here: {exc.get_error_message()}"  # no agent, test driver...
            return "set"

        try:
            result = wait_until(
                lambda: self._session.write_domain("set_guest_time", vm, set_time),
                timeout=CLOCK_SYNC_TIMEOUT_S,
                interval=0.5,
                what=f"the guest agent of {vm.name} to set its clock",
                clock=clock,
            )
        except ProviderTimeout:
            log.warning("guest_clock_not_set_after_revert", site=self._session.site, vm=vm.name)
            return
        log.info("guest_clock_after_revert", site=self._session.site, vm=vm.name, result=result)

    def delete(self, vm: VmRef, snapshot_id: str) -> None:
        self._session.write_domain(
            "delete_snapshot", vm, lambda dom: dom.snapshotLookupByName(snapshot_id, 0).delete(0)
        )
        log.info("snapshot_deleted", site=self._session.site, vm=vm.name, snapshot=snapshot_id)

    def _exists(self, dom: Any, name: str) -> bool:
        # Not snapshotListNames: with libvirt(-python) 9.0 it segfaults the in-process test driver
        # when another thread creates a snapshot at the same time (reproduced; lookups are safe).
        try:
            dom.snapshotLookupByName(name, 0)
        except self._lv.libvirtError as exc:
            if exc.get_error_code() == self._lv.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                return False
            raise
        return True
