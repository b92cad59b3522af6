"""Make a platform snapshot of a simulated VM capture its fake guest's "disk", and a revert restore it.

Neither our vCenter simulator (tests/simulators/vcsim) nor the PVE simulator (tests/simulators/pvesim) has disks, and a
fake guest's state lives in a directory (patchwave_lab/fakeguest). The simulators tell us about snapshots:

* vcsim: the launcher's snapshot hook (``POST /vcsim-control/hook``, see tests/simulators/vcsim/hooks.go) posts
  ``snapshot_created`` / ``snapshot_reverted`` to :meth:`SnapshotDisks.vcsim_hook`'s URL *before* it
  answers the SOAP call, so the state is saved/restored before patchwave sees the task finish;
* pvesim: ``Cluster.listeners`` get the ``snapshot_created`` / ``snapshot_rolled_back`` events as the
  task completes, under the cluster lock (:meth:`SnapshotDisks.pvesim_listener`).

The state is saved per snapshot (label = the snapshot's platform id) at the moment it is taken, and a
revert restores exactly that snapshot's state. Nothing of patchwave is involved: it only sees the
real simulators answer its real provider calls.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from patchwave_lab.fakeguest import FakeGuest


class SnapshotDisks:
    """Fake guests by VM name; records what it saved and restored."""

    def __init__(self, guests: Mapping[str, FakeGuest]) -> None:
        self.guests = dict(guests)
        self.created: list[tuple[str, str]] = []  # (vm, snapshot) per saved disk
        self.reverts: list[tuple[str, str]] = []  # (vm, snapshot) per restored disk
        self._lock = threading.Lock()

    def snapshot_created(self, vm: str, snapshot: str) -> None:
        guest = self.guests.get(vm)
        if guest is None:
            return
        with self._lock:
            guest.save_disk(_label(snapshot))
            self.created.append((vm, snapshot))

    def snapshot_reverted(self, vm: str, snapshot: str) -> None:
        guest = self.guests.get(vm)
        if guest is None:
            return
        with self._lock:
            guest.restore_disk(_label(snapshot))
            self.reverts.append((vm, snapshot))

    # ------------------------------------------------------------------ vcsim

    @contextlib.contextmanager
    def vcsim_hook(self) -> Iterator[str]:
        """A loopback HTTP endpoint for the vcsim launcher's snapshot hook; yields its URL."""
        disks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if event.get("event") == "snapshot_created":
                    disks.snapshot_created(event["vm"], event["snapshot"])
                elif event.get("event") == "snapshot_reverted":
                    disks.snapshot_reverted(event["vm"], event["snapshot"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, name="vcsim-snapshot-hook", daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/snapshot"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # ------------------------------------------------------------------ pvesim

    def pvesim_listener(self) -> Callable[[str, str, dict[str, Any]], None]:
        """A ``Cluster.listeners`` entry: guest events name the guest (``name``) and the snapshot."""

        def listen(kind: str, _subject: str, detail: dict[str, Any]) -> None:
            if kind == "snapshot_created":
                self.snapshot_created(str(detail["name"]), str(detail["snapshot"]))
            elif kind == "snapshot_rolled_back":
                self.snapshot_reverted(str(detail["name"]), str(detail["snapshot"]))

        return listen


def _label(snapshot: str) -> str:
    return "snap-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in snapshot)
