"""The libvirt boundary: the shared connection, calls on it, and the translation of ``libvirtError``.

Errors are translated by error code and error domain, never by message text (see
:func:`translate_error`). The agent codes become :class:`~providers.errors.GuestAgentUnavailable`
(transient): qemu-ga not connected/answering is a moment, not a property of the guest.

libvirt connections are thread-safe, so activities share one :class:`Connection`; a lock guards
only opening/replacing it. Before each call the connection is checked with ``isAlive()`` and
reopened if it dropped (a reopened ``test:///`` connection is a fresh hypervisor).
:class:`LibvirtSession` makes every call through it: read-only calls are retried under the named
``API_CALL`` policy; state-changing calls are not (the engine checks reality and retries the
activity), only getting a live connection for them is.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from providers.base import VmRef
from providers.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    EndpointInvalid,
    GuestAgentUnavailable,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResourceBusy,
)
from providers.timing import API_CALL, SYSTEM_CLOCK, Clock

log = structlog.get_logger("patchwave.providers.libvirt")

T = TypeVar("T")


def translate_error(
    libvirt: Any, exc: Any, *, target: str = "", connection_alive: bool = True
) -> ProviderError:
    """Map a ``libvirtError`` to a ``providers.base`` error."""
    code, domain = exc.get_error_code(), exc.get_error_domain()
    message = f"libvirt: {exc.get_error_message() or exc}"
    lv = libvirt
    by_code: dict[int, tuple[type[ProviderError], str]] = {
        lv.VIR_ERR_NO_DOMAIN: (NotFound, "not_found"),
        lv.VIR_ERR_NO_DOMAIN_SNAPSHOT: (NotFound, "snapshot_not_found"),
        lv.VIR_ERR_NO_DOMAIN_METADATA: (NotFound, "metadata_not_found"),
        lv.VIR_ERR_OPERATION_INVALID: (OperationRefused, "invalid_state"),
        lv.VIR_ERR_OPERATION_UNSUPPORTED: (OperationRefused, "unsupported"),
        lv.VIR_ERR_CONFIG_UNSUPPORTED: (OperationRefused, "config_unsupported"),
        lv.VIR_ERR_ARGUMENT_UNSUPPORTED: (OperationRefused, "argument_unsupported"),
        lv.VIR_ERR_DOM_EXIST: (OperationRefused, "exists"),
        lv.VIR_ERR_SNAPSHOT_REVERT_RISKY: (OperationRefused, "revert_risky"),
        lv.VIR_ERR_NO_SUPPORT: (CapabilityMissing, "driver_unsupported"),
        lv.VIR_ERR_AUTH_FAILED: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_AUTH_CANCELLED: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_AUTH_UNAVAILABLE: (AuthenticationFailed, "auth"),
        lv.VIR_ERR_ACCESS_DENIED: (AuthenticationFailed, "access_denied"),
        lv.VIR_ERR_OPERATION_DENIED: (AuthenticationFailed, "access_denied"),
        lv.VIR_ERR_AGENT_UNRESPONSIVE: (GuestAgentUnavailable, "agent_unresponsive"),
        lv.VIR_ERR_AGENT_UNSYNCED: (GuestAgentUnavailable, "agent_unsynced"),
        lv.VIR_ERR_OPERATION_TIMEOUT: (ProviderTimeout, "timeout"),  # e.g. the domain's job lock
        lv.VIR_ERR_RESOURCE_BUSY: (ResourceBusy, "busy"),
        lv.VIR_ERR_NO_CONNECT: (ProviderUnavailable, "connection"),
        lv.VIR_ERR_INVALID_CONN: (ProviderUnavailable, "connection"),
        lv.VIR_ERR_RPC: (ProviderUnavailable, "connection"),
    }
    if domain in (lv.VIR_FROM_RPC, lv.VIR_FROM_REMOTE) and code not in by_code:
        return ProviderUnavailable(message, target=target, code="connection")
    if code == lv.VIR_ERR_SYSTEM_ERROR and not connection_alive:
        return ProviderUnavailable(message, target=target, code="connection")
    cls, short = by_code.get(code, (PermanentProviderError, f"libvirt_{code}"))
    return cls(message, target=target, code=short)


def translate_open_error(libvirt: Any, exc: Any, *, uri: str, site: str) -> ProviderError:
    """Map the ``libvirtError`` of ``virConnectOpen(uri)``: a URI libvirt cannot use as written is
    bad input (:class:`EndpointInvalid`), decided by code and domain. That is an unparsable URI
    (domain ``VIR_FROM_URI``), an invalid argument or parameter, no driver for the URI
    (``VIR_ERR_NO_CONNECT``), a test-driver file that is not node XML, and a driver refusing the
    URI's path (``qemu:///sytem``: ``VIR_ERR_INTERNAL_ERROR`` from the driver, not the transport).
    A daemon that does not answer (``VIR_ERR_SYSTEM_ERROR`` in the RPC domain) stays
    :class:`ProviderUnavailable`: a runtime failure, retried."""
    lv = libvirt
    code, domain = exc.get_error_code(), exc.get_error_domain()
    refused = {lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_CONNECT, lv.VIR_ERR_XML_ERROR, lv.VIR_ERR_XML_DETAIL}
    transport = domain in (lv.VIR_FROM_RPC, lv.VIR_FROM_REMOTE)
    if domain == lv.VIR_FROM_URI or code in refused or (code == lv.VIR_ERR_INTERNAL_ERROR and not transport):
        return EndpointInvalid(
            f"providers.{site}.uri: libvirt cannot use {uri!r}: {exc.get_error_message() or exc}",
            fix='correct the URI, e.g. "qemu:///system", "qemu+ssh://root@host/system" or "test:///default"',
            code="uri",
        )
    return translate_error(libvirt, exc, target=uri, connection_alive=False)


# ============================================================================================
# Connection
# ============================================================================================


class Connection:
    """The shared ``virConnect``: opened with a deadline, reopened when it is no longer alive."""

    def __init__(self, libvirt: Any, uri: str, *, timeout: float, site: str = "") -> None:
        self._libvirt = libvirt
        self._uri = uri
        self._site = site
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False

    def get(self) -> Any:
        with self._lock:
            if self._closed:
                raise PermanentProviderError("the provider was closed", target=self._uri, code="closed")
            if self._conn is None or not alive(self._conn):
                if self._conn is not None:
                    log.warning("libvirt_reconnect", uri=self._uri)
                # A dead connection is forgotten, not closed: other threads may still be inside a
                # call on it; libvirt-python closes it when the last reference goes away.
                self._conn = self._open()
            return self._conn

    def drop(self, conn: Any) -> None:
        """Forget ``conn`` (after a connection error) so that the next :meth:`get` reopens."""
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._close_quietly(self._conn)
                self._conn = None

    def _open(self) -> Any:
        """``virConnectOpen`` has no timeout: run it in a helper thread and stop waiting at the deadline."""
        outcome: dict[str, Any] = {}
        done, guard = threading.Event(), threading.Lock()

        def opener() -> None:
            try:
                conn = self._libvirt.open(self._uri)
            except self._libvirt.libvirtError as exc:
                conn, outcome["error"] = None, exc
            with guard:
                if outcome.get("abandoned") and conn is not None:
                    self._close_quietly(conn)
                outcome["conn"] = conn
                done.set()

        threading.Thread(target=opener, name="libvirt-open", daemon=True).start()
        if not done.wait(self._timeout):
            with guard:
                if not done.is_set():
                    outcome["abandoned"] = True
                    raise ProviderTimeout(
                        f"could not connect within {self._timeout:g}s",
                        target=self._uri,
                        code="connect_timeout",
                    )
        if "error" in outcome:  # daemon down / socket missing = VIR_ERR_SYSTEM_ERROR -> ProviderUnavailable
            raise translate_open_error(self._libvirt, outcome["error"], uri=self._uri, site=self._site)
        return outcome["conn"]

    def _close_quietly(self, conn: Any) -> None:
        try:
            conn.close()
        except self._libvirt.libvirtError:
            pass


def alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except Exception:  # noqa: BLE001 - a connection that cannot answer isAlive is not alive
        return False


class LibvirtSession:
    """Calls on the shared :class:`Connection` with libvirt errors translated at this boundary."""

    def __init__(
        self, libvirt: Any, connection: Connection, *, site: str, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.libvirt = libvirt
        self.connection = connection
        self.site = site
        self.clock = clock

    def call(self, conn: Any, what: str, target: str, fn: Callable[[Any], T]) -> T:
        try:
            return fn(conn)
        except self.libvirt.libvirtError as exc:
            error = translate_error(self.libvirt, exc, target=target, connection_alive=alive(conn))
            if isinstance(error, ProviderUnavailable):
                self.connection.drop(conn)
            log.debug("libvirt_call_failed", what=what, target=target, code=error.code)
            raise error from exc

    def read(self, what: str, target: str, fn: Callable[[Any], T]) -> T:
        """A read-only call: retried under API_CALL, reconnecting when the connection dropped."""
        return API_CALL.call(lambda: self.call(self.connection.get(), what, target, fn), self.clock)

    def write(self, what: str, target: str, fn: Callable[[Any], T]) -> T:
        """A state-changing call: only getting a live connection is retried, never the call itself."""
        conn = API_CALL.call(self.connection.get, self.clock)
        return self.call(conn, what, target, fn)

    def domain(self, conn: Any, vm: VmRef) -> Any:
        """The ``virDomain`` of ``vm`` (NotFound for another site or an id that is not a UUID)."""
        if vm.site != self.site:
            raise NotFound(
                f"VM belongs to site {vm.site!r}, not {self.site!r}", target=str(vm), code="wrong_site"
            )
        try:
            uuid.UUID(vm.id)
        except ValueError:
            raise NotFound(
                f"{vm.id!r} is not a libvirt domain UUID", target=str(vm), code="not_found"
            ) from None
        return conn.lookupByUUIDString(vm.id)

    def read_domain(self, what: str, vm: VmRef, fn: Callable[[Any], T]) -> T:
        """``fn(virDomain)`` as a read-only call."""
        return self.read(what, str(vm), lambda conn: fn(self.domain(conn, vm)))

    def write_domain(self, what: str, vm: VmRef, fn: Callable[[Any], T]) -> T:
        """``fn(virDomain)`` as a state-changing call."""
        return self.write(what, str(vm), lambda conn: fn(self.domain(conn, vm)))
