"""The proxmoxer boundary: one API client per thread, re-login, and error translation.

Every call to the PVE API goes through :class:`PveSession`. It is the only place that touches
proxmoxer / requests exceptions and turns them into :mod:`providers.base` errors:

* 401 with ticket auth: the ticket expired or was revoked (proxmoxer only renews on its own timer).
  The thread's client is dropped and rebuilt (a fresh ``POST /access/ticket`` with the password)
  through the named ``RELOGIN`` policy; a second 401 is :class:`AuthenticationFailed`.
  With an API token a 401 is :class:`AuthenticationFailed` straight away.
* 400 -> :class:`PermanentProviderError` (code ``bad_request``) carrying PVE's per-parameter errors.
* 403 -> :class:`PermanentProviderError` (code ``permission``).
* 500 -> PVE handlers report every refusal as a 500 with only a message (no error code exists in the
  API), so the message is all there is: ``VM is locked (...)`` becomes :class:`ResourceBusy`,
  everything else :class:`OperationRefused` with the message. Callers check state structurally
  (lock field, status, agent flag) *before* acting so these texts only matter in races.
* 501 -> :class:`PermanentProviderError` (``not_implemented``); 502-504 and AnyEvent's 595-599
  (node unreachable through the proxy) -> :class:`ProviderUnavailable`.
* TLS verification failures -> :class:`AuthenticationFailed` (``tls``, as on every platform): retrying
  will not help.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import tenacity

from providers.errors import (
    AuthenticationFailed,
    OperationRefused,
    PermanentProviderError,
    ProviderError,
    ProviderUnavailable,
    ResourceBusy,
    TransientProviderError,
)
from providers.proxmox.settings import ProxmoxSettings
from providers.timing import API_CALL, RELOGIN, SYSTEM_CLOCK, Clock

#: ``check_lock`` in pve-guest-common: "VM is locked (backup)" / "CT is locked (snapshot)".
LOCKED_MESSAGE = re.compile(r"^(?:VM|CT) is locked \((?P<lock>[a-z\-]+)\)")


class SessionExpired(TransientProviderError):
    """Internal: a 401 on an established ticket session; triggers one re-login."""


def flag(value: bool) -> int:
    """PVE booleans on the wire are ``0``/``1`` only (``True`` is rejected with a 400)."""
    return 1 if value else 0


def error_from_message(message: str, *, target: str = "") -> ProviderError:
    """Classify a PVE handler or task error message (only text exists for these, see module doc)."""
    if LOCKED_MESSAGE.match(message):
        return ResourceBusy(message, target=target, code="locked")
    return OperationRefused(message, target=target, code="refused")


class PveSession:
    """Thread-safe access to one PVE API endpoint (a proxmoxer client per thread)."""

    def __init__(self, settings: ProxmoxSettings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    # -- client lifecycle -------------------------------------------------------------------

    def _connect(self) -> Any:
        from proxmoxer import AuthenticationError, ProxmoxAPI

        s = self.settings
        kwargs: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "user": s.user,
            "verify_ssl": s.tls_verify,
            "timeout": s.timeout,
        }
        if s.uses_token:
            assert s.token_value is not None
            kwargs.update(token_name=s.token_name, token_value=s.token_value.reveal())
        else:
            assert s.password is not None
            kwargs["password"] = s.password.reveal()
        try:
            client = self._guard(lambda: ProxmoxAPI(**kwargs), what="login")
        except AuthenticationError as exc:
            # proxmoxer raises this for any non-200 answer to POST /access/ticket (wrong password,
            # unknown realm, TFA required); it carries no status attribute.
            raise AuthenticationFailed(
                f"PVE refused the login of {s.user} at {s.host}:{s.port}: check user and password",
                target=s.host,
                code="auth",
            ) from exc
        with self._lock:
            self._clients.append(client)
        return client

    def client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._connect()
            self._local.client = client
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            _close_client(client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            _close_client(client)
        self._local = threading.local()

    # -- calls ------------------------------------------------------------------------------

    def get(self, path: str, *, retry: bool = True, **params: Any) -> Any:
        """GET is idempotent: transient failures are retried with ``API_CALL`` unless ``retry=False``."""
        call: Callable[[], Any] = lambda: self._call("GET", path, params)
        return API_CALL.call(call, self.clock) if retry else call()

    def post(self, path: str, **data: Any) -> Any:
        return self._call("POST", path, data)

    def put(self, path: str, **data: Any) -> Any:
        return self._call("PUT", path, data)

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("DELETE", path, params)

    def _call(self, method: str, path: str, params: dict[str, Any]) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        retrying = RELOGIN.retrying(self.clock).copy(retry=tenacity.retry_if_exception_type(SessionExpired))
        try:
            return retrying(self._attempt, method, path, clean)
        except SessionExpired as exc:
            raise AuthenticationFailed(
                f"PVE rejected the session again after a fresh login ({method} {path})",
                target=self.settings.host,
                code="auth",
            ) from exc

    def _attempt(self, method: str, path: str, params: dict[str, Any]) -> Any:
        from proxmoxer.core import ResourceException

        client = self.client()
        resource = client(path)
        try:
            return self._guard(lambda: getattr(resource, method.lower())(**params), what=f"{method} {path}")
        except ResourceException as exc:
            raise self._translate(exc, method, path) from exc

    def _translate(self, exc: Any, method: str, path: str) -> ProviderError:
        status = int(exc.status_code)
        reason = str(exc.content or exc.status_message or "").strip()
        target = f"{method} {path}"
        if status == 401:
            if not self.settings.uses_token:
                self._drop_client()
                return SessionExpired(f"session rejected: {reason}", target=target, code="auth")
            return AuthenticationFailed(
                f"PVE rejected the API token {self.settings.user}!{self.settings.token_name}: {reason}",
                target=target,
                code="auth",
            )
        if status == 400:
            errors = exc.errors if isinstance(exc.errors, dict) else {}
            detail = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or reason
            return PermanentProviderError(
                f"PVE rejected the parameters: {detail}", target=target, code="bad_request"
            )
        if status == 403:
            return PermanentProviderError(
                f"permission denied: {reason} (grant the privilege to the user or token)",
                target=target,
                code="permission",
            )
        if status == 501:
            return PermanentProviderError(reason or "not implemented", target=target, code="not_implemented")
        if status == 500:
            return error_from_message(reason, target=target)
        return ProviderUnavailable(f"HTTP {status}: {reason}", target=target, code=f"http_{status}")

    def _guard(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Translate transport-level failures (requests) for one HTTP exchange."""
        import requests

        try:
            return fn()
        except requests.exceptions.SSLError as exc:
            raise AuthenticationFailed(
                f"TLS verification of {self.settings.host}:{self.settings.port} failed ({what}): {exc}",
                target=self.settings.host,
                code="tls",
            ) from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise ProviderUnavailable(
                f"cannot reach PVE at {self.settings.host}:{self.settings.port} ({what}): {exc}",
                target=self.settings.host,
                code="unreachable",
            ) from exc


def _close_client(client: Any) -> None:
    session = getattr(client, "_store", {}).get("session")
    if session is not None:
        session.close()
