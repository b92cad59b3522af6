"""One API request, transport-independent: auth, routing, validation, handler, envelope.

Reproduces pve-http-server's answers (ENDPOINTS.md §1-§3): ``{"data": ...}`` (+ ``total``), the
status-line reason as the first line of the message, ``message`` and ``errors`` in JSON error
bodies, empty bodies for auth-layer 401s, 501 for unknown paths/methods, 595 for an offline node.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from tests.simulators.pvesim import routes
from tests.simulators.pvesim.node_handlers import Request
from tests.simulators.pvesim.params import decode, validate
from tests.simulators.pvesim.state import ApiError, Cluster

#: Parameters only ``root@pam`` with a ticket may use (a token is never root, ENDPOINTS.md §2.2).
ROOT_ONLY = frozenset({"skiplock", "keepActive"})


@dataclass
class Response:
    status: int
    reason: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Account:
    password: str
    tokens: dict[str, tuple[str, bool]] = field(default_factory=dict)  # tokenid -> (secret, restricted)


class Auth:
    """Users, API tokens, tickets (2 h lifetime on the simulator clock) and CSRF tokens."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.accounts: dict[str, Account] = {}
        self.tickets: dict[str, tuple[str, float]] = {}  # ticket -> (user, issued at)
        self.logins = 0
        self._key = secrets.token_bytes(32)

    def add_user(self, user: str, password: str) -> None:
        self.accounts[user] = Account(password)

    def add_token(self, user: str, tokenid: str, secret: str, *, restricted: bool = False) -> None:
        self.accounts[user].tokens[tokenid] = (secret, restricted)

    def expire_tickets(self) -> None:
        self.tickets.clear()

    def _csrf(self, user: str, stamp: str) -> str:
        digest = hmac.new(self._key, f"{stamp}:{user}".encode(), hashlib.sha256).digest()
        return f"{stamp}:{base64.b64encode(digest).decode().rstrip('=')}"

    def valid_ticket(self, ticket: str) -> str | None:
        entry = self.tickets.get(ticket)
        if entry and self.cluster.clock.time() - entry[1] < self.cluster.config.ticket_lifetime:
            return entry[0]
        return None

    def login(self, params: dict[str, Any]) -> dict[str, Any]:
        user = (
            params["username"]
            if "@" in params["username"]
            else f"{params['username']}@{params.get('realm', '')}"
        )
        account = self.accounts.get(user)
        renewing = self.valid_ticket(params["password"]) == user
        if account is None or not (renewing or secrets.compare_digest(account.password, params["password"])):
            raise ApiError(401, "authentication failure")
        stamp = f"{int(self.cluster.clock.time()):08X}"
        ticket = f"PVE:{user}:{stamp}::{base64.b64encode(secrets.token_bytes(48)).decode()}"
        self.tickets[ticket] = (user, self.cluster.clock.time())
        self.logins += 1
        answer = {
            "username": user,
            "ticket": ticket,
            "CSRFPreventionToken": self._csrf(user, stamp),
            "cap": {"vms": {"VM.Audit": 1}},
        }
        if self.cluster.config.cluster_name:
            answer["clustername"] = self.cluster.config.cluster_name
        return answer

    def identify(self, method: str, headers: dict[str, str]) -> tuple[str, str | None, bool]:
        """``(user, tokenid, restricted)``, or an auth-layer 401 (empty body, reason in the status line)."""
        authorization = headers.get("authorization", "")
        if authorization.startswith("PVEAPIToken="):
            ident, _, secret = authorization[len("PVEAPIToken=") :].partition("=")
            user, _, tokenid = ident.partition("!")
            token = self.accounts.get(user, Account("")).tokens.get(tokenid)
            if token is None or not secrets.compare_digest(token[0], secret):
                raise ApiError(401, "Authentication failed!")
            return user, tokenid, token[1]
        cookie = SimpleCookie(headers.get("cookie", ""))
        ticket = cookie["PVEAuthCookie"].value if "PVEAuthCookie" in cookie else ""
        if not ticket and authorization.startswith("PVEAuthCookie="):
            ticket = authorization[len("PVEAuthCookie=") :]
        if not ticket:
            raise ApiError(401, "No ticket")
        user = self.valid_ticket(ticket)
        if user is None:
            raise ApiError(401, "Authentication failed!")
        if method != "GET":
            csrf = headers.get("csrfpreventiontoken", "")
            stamp = csrf.split(":", 1)[0]
            if not csrf or not secrets.compare_digest(csrf, self._csrf(user, stamp)):
                raise ApiError(401, "Permission denied - invalid csrf token")
        return user, None, False


class Api:
    def __init__(self, cluster: Cluster, auth: Auth) -> None:
        self.cluster = cluster
        self.auth = auth

    def handle(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Response:
        cl = self.cluster
        with cl.lock:
            cl.tick()
            fault = cl.take_http_fault(method, path)
            if fault:
                return _error(int(fault.get("status", 503)), fault.get("message", "Service Unavailable"))
            try:
                return self._dispatch(method, path, query, body, headers)
            except ApiError as exc:
                failure = exc
        if failure.status == 401 and cl.config.auth_failure_delay:
            time.sleep(cl.config.auth_failure_delay)  # outside the lock: other clients carry on
        empty = failure.status == 401 and failure.message != "authentication failure"
        return _error(failure.status, failure.message, failure.errors, empty=empty)

    def _dispatch(self, method: str, path: str, query: str, body: bytes, headers: dict[str, str]) -> Response:
        route, values = routes.match(method, path)
        if route is None:
            raise ApiError(501, f"Method '{method} {path}' not implemented")
        if route.path == "/access/ticket":
            params = validate(route.params, decode(body, headers.get("content-type", ""), query), {})
            return _ok(self.auth.login(params))
        user, tokenid, restricted = self.auth.identify(method, headers)
        if tokenid and not route.allowtoken:
            raise ApiError(403, "Permission check failed (API tokens are not allowed)")
        params = validate(route.params, decode(body, headers.get("content-type", ""), query), values)
        root_only = sorted(ROOT_ONLY & set(params)) if tokenid or user != "root@pam" else []
        if root_only:
            raise ApiError(
                400,
                "Parameter verification failed.",
                dict.fromkeys(root_only, "Only root may use this option."),
            )
        if restricted and route.path not in ("/version", "/cluster/resources"):
            raise ApiError(403, f"Permission check failed ({_acl_path(params)}, Sys.Audit)")
        if route.proxyto:
            node = self.cluster.node(params["node"])
            if not node.online:
                raise ApiError(595, f"Connection refused to node '{node.name}'")
        request = Request(self.cluster, params, user, tokenid, route.fixed, restricted)
        result = route.handler(request)
        if route.total:
            data, total = result
            return _ok(data, total=total)
        return _ok(result)


def _acl_path(params: dict[str, Any]) -> str:
    if "vmid" in params:
        return f"/vms/{params['vmid']}"
    return f"/nodes/{params['node']}" if "node" in params else "/"


def _ok(data: Any, total: int | None = None) -> Response:
    envelope: dict[str, Any] = {"data": data}
    if total is not None:
        envelope["total"] = total
    return Response(
        200, "OK", json.dumps(envelope).encode(), {"Content-Type": "application/json;charset=UTF-8"}
    )


def _error(
    status: int, message: str, errors: dict[str, str] | None = None, *, empty: bool = False
) -> Response:
    reason = message.splitlines()[0].replace("\r", "") if message else "error"
    if empty:
        return Response(status, reason)
    body: dict[str, Any] = {"data": None, "message": message.rstrip("\n") + "\n"}
    if errors:
        body["errors"] = errors
    return Response(
        status, reason, json.dumps(body).encode(), {"Content-Type": "application/json;charset=UTF-8"}
    )
