"""Provider errors: what failed and whether another attempt may help (``retryable``).

Adapters translate their SDK's exceptions into these at their boundary (never by message text when a
code or class exists). ``TransientProviderError``: retry may help (timeouts, dropped connections, a
busy lock, an agent that does not answer yet); ``PermanentProviderError``: do not retry (not found,
refused, bad credentials). A TLS rejection is ``AuthenticationFailed(code="tls")``.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class. ``retryable`` tells the engine whether another attempt may succeed."""

    retryable: bool = False

    def __init__(self, message: str, *, target: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.code = code  # short stable machine code, e.g. "locked", "not_found", "auth"

    def __str__(self) -> str:
        where = f" [{self.target}]" if self.target else ""
        return f"{self.message}{where}"


class TransientProviderError(ProviderError):
    retryable = True


class PermanentProviderError(ProviderError):
    retryable = False


class ProviderTimeout(TransientProviderError):
    """A wait exceeded its deadline. Never returned silently as ``None``."""


class ProviderUnavailable(TransientProviderError):
    """Connection refused/dropped, HTTP 5xx from a proxy, node offline."""


class ResourceBusy(TransientProviderError):
    """A lock or a conflicting task holds the object (Proxmox lock, vSphere TaskInProgress)."""


class GuestAgentUnavailable(TransientProviderError):
    """The guest's agent (qemu-ga, VMware Tools) does not answer now: not started yet, restarting,
    hung. Transient by definition; an agent that is not *configured* is a static fact instead
    (``CapabilityMissing`` when called, :attr:`VmInfo.unsupported` when planning). Adapters keep
    their codes (libvirt ``agent_unresponsive``/``agent_unsynced``, Proxmox ``agent_not_ready``)."""


class NotFound(PermanentProviderError):
    pass


class AuthenticationFailed(PermanentProviderError):
    """Credentials refused (``code="auth"``), access denied, or the platform's TLS certificate was
    rejected (``code="tls"``: unknown CA, wrong pin, hostname mismatch)."""


class EndpointInvalid(PermanentProviderError):
    """The platform cannot use the endpoint the configuration names, as written: a connection URI
    it cannot parse, a driver or transport that does not exist here. Bad input (fix the
    configuration), unlike an endpoint that does not answer (:class:`ProviderUnavailable`).
    ``fix`` says what to write instead."""

    def __init__(self, message: str, *, fix: str, target: str = "", code: str = "") -> None:
        super().__init__(message, target=target, code=code)
        self.fix = fix

    def __str__(self) -> str:
        return f"{super().__str__()} (fix: {self.fix})"


class HostKeyRejected(PermanentProviderError):
    """An SSH server's host key is not trusted, decided by type, never by message text:
    ``host_key_unknown`` (no known_hosts entry and trust on first use is off) or
    ``host_key_mismatch`` (known_hosts holds another key for it: refused even with trust on first
    use; a rebuilt server or a man in the middle, and a person must decide which)."""

    CODES = frozenset({"host_key_unknown", "host_key_mismatch"})

    def __init__(self, message: str, *, code: str, target: str = "") -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown HostKeyRejected code {code!r}")
        super().__init__(message, target=target, code=code)


class OperationRefused(PermanentProviderError):
    """The platform understood and said no (invalid state, ZFS newest-only rollback, ...)."""


class CapabilityMissing(PermanentProviderError):
    pass


class SdkMissing(PermanentProviderError):
    """The adapter's SDK is not installed; the message names the extra to install."""
