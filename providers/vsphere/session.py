"""vSphere connection: TLS verification, login, re-login, retries, and fault translation.

One pyVmomi ServiceInstance is shared by every thread (measured safe against vcsim; pyVmomi keeps a
connection pool). Re-login after ``NotAuthenticated`` is guarded by a lock and a generation counter
so that N threads hitting an expired session log in once.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from providers.errors import (
    AuthenticationFailed,
    CapabilityMissing,
    GuestAgentUnavailable,
    NotFound,
    OperationRefused,
    PermanentProviderError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ResourceBusy,
)
from providers.timing import API_CALL, RELOGIN, SYSTEM_CLOCK, Clock
from providers.vsphere.settings import VsphereSettings

log = structlog.get_logger("patchwave.providers.vsphere")
T = TypeVar("T")


class PinnedContext(ssl.SSLContext):
    """A TLS context that accepts exactly the certificate whose fingerprint is pinned.

    The chain is not verified (a pin replaces the CA), but the pin is checked on *every* handshake,
    including pyVmomi's version probe and reconnects of its connection pool. (pyVmomi's own
    ``thumbprint=`` only checks after a failed verification and then disables verification on the
    shared context, so later connections are not checked at all.)
    """

    pin: str = ""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        tls = super().wrap_socket(sock, *args, **kwargs)
        der = tls.getpeercert(binary_form=True) or b""
        algorithm = hashlib.sha1 if len(self.pin) == 40 else hashlib.sha256
        if algorithm(der).hexdigest() != self.pin:
            tls.close()
            raise ssl.SSLCertVerificationError("server certificate does not match the pinned thumbprint")
        return tls


def tls_context(settings: VsphereSettings) -> ssl.SSLContext:
    """CA file, pinned thumbprint, system trust store, or (explicit opt-out) no verification."""
    if settings.thumbprint:
        pinned = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
        pinned.pin = settings.thumbprint
        ctx: ssl.SSLContext = pinned
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif settings.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --------------------------------------------------------------------------------------------
# Fault translation (by class, most specific first; never by message text)
# --------------------------------------------------------------------------------------------


def _fault_table() -> list[tuple[type, type[ProviderError], str]]:
    rows = [
        ("vim.fault.InvalidLogin", AuthenticationFailed, "auth"),
        ("vim.fault.NotAuthenticated", AuthenticationFailed, "auth"),
        ("vim.fault.InvalidGuestLogin", AuthenticationFailed, "guest_auth"),
        ("vim.fault.GuestPermissionDenied", AuthenticationFailed, "guest_auth"),
        ("vim.fault.NoPermission", AuthenticationFailed, "permission"),
        ("vmodl.fault.SecurityError", AuthenticationFailed, "permission"),
        ("vim.fault.NotFound", NotFound, "not_found"),
        ("vmodl.fault.ManagedObjectNotFound", NotFound, "not_found"),
        ("vim.fault.FileNotFound", NotFound, "not_found"),
        ("vim.fault.TaskInProgress", ResourceBusy, "busy"),
        ("vim.fault.ResourceInUse", ResourceBusy, "busy"),
        ("vim.fault.FileLocked", ResourceBusy, "locked"),
        ("vim.fault.ConcurrentAccess", ResourceBusy, "busy"),
        ("vim.fault.Timedout", ProviderTimeout, "timeout"),
        ("vim.fault.ToolsUnavailable", OperationRefused, "tools_unavailable"),
        ("vim.fault.GuestOperationsUnavailable", GuestAgentUnavailable, "guest_ops_unavailable"),
        ("vim.fault.InvalidPowerState", OperationRefused, "invalid_power_state"),
        ("vim.fault.InvalidState", OperationRefused, "invalid_state"),
        ("vim.fault.InsufficientResourcesFault", OperationRefused, "insufficient_resources"),
        ("vim.fault.PatchInstallFailed", OperationRefused, "patch_failed"),
        ("vim.fault.PatchMetadataInvalid", OperationRefused, "patch_failed"),
        ("vim.fault.PatchBinariesNotFound", OperationRefused, "patch_failed"),
        ("vim.fault.PatchNotApplicable", OperationRefused, "patch_failed"),
        ("vim.fault.PlatformConfigFault", OperationRefused, "platform_config"),
        ("vim.fault.MethodDisabled", OperationRefused, "method_disabled"),
        ("vmodl.fault.RequestCanceled", OperationRefused, "cancelled"),
        ("vmodl.fault.InvalidArgument", OperationRefused, "invalid_argument"),
        ("vim.fault.DuplicateName", OperationRefused, "duplicate"),
        ("vmodl.fault.MethodNotFound", CapabilityMissing, "unsupported"),
        ("vmodl.fault.NotSupported", CapabilityMissing, "unsupported"),
        ("vmodl.fault.NotImplemented", CapabilityMissing, "unsupported"),
        ("vim.fault.HostConnectFault", ProviderUnavailable, "host_unreachable"),
        ("vmodl.fault.HostNotConnected", ProviderUnavailable, "host_unreachable"),
        ("vmodl.fault.HostNotReachable", ProviderUnavailable, "host_unreachable"),
        ("vmodl.fault.HostCommunication", ProviderUnavailable, "host_unreachable"),
        ("vmodl.fault.SystemError", ProviderUnavailable, "system_error"),
    ]
    table = []
    roots = {"vim": vim, "vmodl": vmodl}
    for dotted, error, code in rows:
        root, *path = dotted.split(".")
        cls: Any = roots[root]
        try:
            for part in path:
                cls = getattr(cls, part)
        except AttributeError:  # not in this pyVmomi's bindings
            continue
        table.append((cls, error, code))
    return table


_FAULTS = _fault_table()


def fault_name(fault: object) -> str:
    return getattr(fault, "_wsdlName", None) or type(fault).__name__


def translate(exc: BaseException, *, target: str = "", message: str = "") -> ProviderError | None:
    """The ProviderError for an SDK/transport exception or a task's fault; None = not ours to map."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, vmodl.MethodFault):
        text = message or getattr(exc, "msg", "") or ""
        detail = f"{fault_name(exc)}: {text}".rstrip(": ")
        for cls, error, code in _FAULTS:
            if isinstance(exc, cls):
                return error(detail, target=target, code=code)
        return PermanentProviderError(detail, target=target, code=fault_name(exc))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthenticationFailed(
            f"TLS verification failed: {getattr(exc, 'verify_message', None) or exc}",
            target=target,
            code="tls",
        )
    if isinstance(exc, ssl.SSLError):
        return ProviderUnavailable(f"TLS error: {exc.reason or exc}", target=target, code="tls")
    if isinstance(exc, TimeoutError):
        return ProviderUnavailable(
            "no answer from vCenter within the socket timeout", target=target, code="socket_timeout"
        )
    if isinstance(exc, ConnectionError | http.client.HTTPException):
        return ProviderUnavailable(
            f"connection to vCenter failed: {type(exc).__name__}: {exc}", target=target, code="unavailable"
        )
    if isinstance(exc, OSError):
        return ProviderUnavailable(
            f"cannot reach vCenter: {exc.strerror or exc}", target=target, code="unavailable"
        )
    return None


def _reraise(exc: BaseException, target: str) -> None:
    mapped = translate(exc, target=target)
    if mapped is None:
        raise exc
    if mapped is exc:
        raise exc
    raise mapped from None


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


class Session:
    """A logged-in ServiceInstance plus the cached ServiceContent; ``call`` runs SDK calls safely."""

    def __init__(self, settings: VsphereSettings, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._si: Any = None
        self._content: Any = None
        self.generation = 0  # bumped on every (re-)login

    # -- connection ---------------------------------------------------------------------------

    def open(self) -> Session:
        API_CALL.call(self._connect, self.clock)
        return self

    def _connect(self) -> None:
        s = self.settings
        try:
            si = SmartConnect(
                host=s.host,
                port=s.port,
                user=s.user,
                pwd=s.password.reveal(),
                sslContext=tls_context(s),
                httpConnectionTimeout=s.connect_timeout,
            )
            content = si.RetrieveContent()
        except Exception as exc:
            _reraise(exc, f"{s.host}:{s.port}")  # the port too: "connection refused" must name it
            raise
        with self._lock:
            self._si, self._content = si, content
            self.generation += 1
        log.info("vsphere_connected", site=s.site, host=s.host, api=content.about.apiVersion)
        if s.insecure:
            log.warning("vsphere_tls_unverified", site=s.site, host=s.host, fix="set ca_file or thumbprint")

    @property
    def content(self) -> Any:
        return self._content

    @property
    def stub(self) -> Any:
        return self._si._stub

    def close(self) -> None:
        si, self._si = self._si, None
        if si is not None:
            try:
                Disconnect(si)
            except Exception as exc:  # noqa: BLE001 - closing a dead session is not an error
                log.debug("vsphere_logout_failed", site=self.settings.site, error=type(exc).__name__)

    def _relogin(self, seen_generation: int) -> None:
        with self._lock:
            if self.generation != seen_generation:
                return  # another thread logged in again meanwhile

            def login() -> None:
                # A fresh session, not the dead one: Login with a session cookie that the server
                # still knows is refused as "already logged in".
                self.stub.cookie = ""
                try:
                    self._content.sessionManager.Login(
                        userName=self.settings.user, password=self.settings.password.reveal()
                    )
                except Exception as exc:  # noqa: BLE001 - translated by class in _reraise
                    _reraise(exc, self.settings.host)

            RELOGIN.call(login, self.clock)
            self.generation += 1
        log.info("vsphere_relogged_in", site=self.settings.site, generation=self.generation)

    # -- calls --------------------------------------------------------------------------------

    def call(self, fn: Callable[[Any], T], *, target: str = "", retry: bool = True) -> T:
        """Run ``fn(content)``: translated faults, re-login once on NotAuthenticated (RELOGIN),
        and retries of transient failures such as dropped connections (API_CALL). ``retry=False``
        is for a caller that retries a larger unit itself (check, then a non-idempotent call)."""

        def attempt() -> T:
            generation = self.generation
            try:
                return fn(self._content)
            except vim.fault.NotAuthenticated:
                log.info("vsphere_session_expired", site=self.settings.site, target=target)
                self._relogin(generation)
            except Exception as exc:  # noqa: BLE001 - translated by class in _reraise
                _reraise(exc, target)
            try:
                return fn(self._content)
            except Exception as exc:
                _reraise(exc, target)
                raise

        return API_CALL.call(attempt, self.clock) if retry else attempt()

    def unit(self, fn: Callable[[], T]) -> T:
        """Run a sequence of calls that uses session-bound objects (a ContainerView, a collector).
        When the session was renewed meanwhile, those objects are gone: run it once more."""
        generation = self.generation
        try:
            return fn()
        except NotFound:
            if self.generation == generation:
                raise
            return fn()

    def mo(self, kind: Any, moref: str) -> Any:
        """A managed object proxy (``vim.VirtualMachine('vm-45', stub)``) bound to this session."""
        return kind(moref, self.stub)
