"""HTTP(S) transport: a ThreadingHTTPServer on 127.0.0.1 serving /api2/json/* and the /_sim/* controls.

``/_sim/*`` (no auth, loopback only) is the test-control surface used by the lab:

* ``POST /_sim/faults``   JSON ``{"kind": ..., ...}`` (see :meth:`Simulator.inject`)
* ``DELETE /_sim/faults`` clear pending faults
* ``POST /_sim/scripts``  JSON ``{"vmid": N, "match": "...", "exitcode": 0, "stdout": "", "duration": 0}``
* ``POST /_sim/clock``    JSON ``{"advance": seconds}``
* ``GET /_sim/state``     nodes, guests, maintenance and the event log
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tests.simulators.pvesim.api import Response

if TYPE_CHECKING:
    from tests.simulators.pvesim.simulator import Simulator

API_PREFIX = "/api2/json"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections end instead of pinning a thread forever
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sim = self.server.sim
        if url.path.startswith("/_sim/"):
            response = sim.control(method, url.path, body)
        elif url.path.startswith(API_PREFIX + "/"):
            path = unquote(url.path[len(API_PREFIX) :])
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = sim.api.handle(method, path, url.query, body, headers)
        else:
            response = Response(501, f"Method '{method} {url.path}' not implemented", b"")
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status, response.reason)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim: Simulator, port: int, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.sim = sim
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients dropping keep-alive connections are not errors


class HttpFrontend:
    def __init__(self, sim: Simulator, *, port: int = 0, context: ssl.SSLContext | None = None) -> None:
        self._server = _Server(sim, port, context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="pvesim-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def json_response(status: int, payload: Any) -> Response:
    reason = (
        "OK"
        if status == 200
        else str(payload.get("error", "error"))
        if isinstance(payload, dict)
        else "error"
    )
    return Response(status, reason, json.dumps(payload).encode(), {"Content-Type": "application/json"})
