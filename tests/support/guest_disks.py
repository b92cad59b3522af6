"""Make a libvirt snapshot revert of a test-driver domain act on its fake guest's "disk".

The test driver's domains have no disks, and a fake guest's state lives in a directory, so a
revert in libvirt would leave the guest patched — unlike a real VM, whose disk comes back. This
bridge listens to libvirt's own domain events (``VIR_DOMAIN_EVENT_*`` with detail
``*_FROM_SNAPSHOT``, emitted synchronously inside ``revertToSnapshot``) on the worker's real
connection and restores the fake guest's state as the disk snapshot would.

What is restored is the state saved when the bridge was armed (before the run). That equals the
state at snapshot time because nothing writes a fake guest between arming and its snapshot
(baseline health checks only read) — the tests assert the patch count to keep that true.

Wiring: the libvirt adapter takes the libvirt *module* as a constructor argument; the bridge hands
it the real module with ``open`` wrapped to register the event callback on each new connection.
Nothing of patchwave is replaced: the provider, its connection and every libvirt call are real.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import libvirt

from patchwave_lab.fakeguest import FakeGuest

_LOOP_LOCK = threading.Lock()
_LOOP_STARTED = False
SAVED = "before-run"


def ensure_event_loop() -> None:
    """libvirt's default event loop, once per process, before the connections to observe open."""
    global _LOOP_STARTED
    with _LOOP_LOCK:
        if _LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()
        libvirt.registerErrorHandler(lambda _ctx, _error: None, None)  # errors still raise libvirtError

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _LOOP_STARTED = True


class _ObservedLibvirt:
    """The libvirt module, except that ``open`` registers the bridge's callback on the connection."""

    def __init__(self, bridge: DiskBridge) -> None:
        self._bridge = bridge

    def __getattr__(self, name: str) -> Any:
        return getattr(libvirt, name)

    def open(self, uri: str) -> Any:
        conn = libvirt.open(uri)
        conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._bridge.on_lifecycle, None
        )
        return conn


class DiskBridge:
    def __init__(self, guests_by_uuid: Mapping[str, FakeGuest]) -> None:
        ensure_event_loop()
        self.guests = dict(guests_by_uuid)
        self.reverts: list[str] = []  # domain names, one per FROM_SNAPSHOT event libvirt emitted
        for guest in self.guests.values():
            guest.save_disk(SAVED)

    def on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        from_snapshot = {
            libvirt.VIR_DOMAIN_EVENT_STARTED: libvirt.VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED: libvirt.VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT,
            libvirt.VIR_DOMAIN_EVENT_STOPPED: libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT,
        }
        if from_snapshot.get(event) != detail:
            return
        guest = self.guests.get(dom.UUIDString())
        if guest is not None:
            guest.restore_disk(SAVED)  # idempotent: a running revert emits STOPPED then STARTED
            self.reverts.append(dom.name())

    def libvirt_module(self) -> Any:
        return _ObservedLibvirt(self)

    def opener(self, site: Any) -> Any:
        """A :data:`orchestrator.context.ProviderOpener`: the real libvirt adapter, observed."""
        from providers.libvirt import provider as adapter

        return adapter.LibvirtProvider(site.settings, self.libvirt_module())
