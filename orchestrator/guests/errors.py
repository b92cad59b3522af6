"""Errors of the guest layer, subclasses of the provider errors so retry logic is uniform.

``retryable`` comes from the base class: :class:`GuestUnreachable` and :class:`PackageManagerLocked`
are transient (another attempt may succeed), every other :class:`PackageManagerError` is permanent.
``code`` is stable and machine-readable; messages are for people.
"""

from __future__ import annotations

from providers.base import PermanentProviderError, TransientProviderError

#: Stable ``PackageManagerError.code`` values.
CODES = frozenset(
    {
        "lock_timeout",  # the dpkg/rpm/zypp lock stayed held past the lock timeout (retryable)
        "apt_failed",
        "dnf_failed",
        "zypper_failed",
        "unsupported_os",
        "parse",  # output we could not make sense of; the error carries a snippet
        "invalid_selection",  # an UpdateSelection the package manager cannot express (bad pin)
    }
)

_SNIPPET_CHARS = 600


def snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """The tail of ``text`` (errors are usually at the end), trimmed to ``limit`` characters."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class GuestUnreachable(TransientProviderError):
    """The guest channel could not reach the guest (connection refused/dropped, agent silent)."""

    def __init__(self, message: str, *, target: str = "", code: str = "unreachable") -> None:
        super().__init__(message, target=target, code=code)


class HostKeyRejected(PermanentProviderError):
    """The SSH server's host key is unknown (and trust-on-first-use is off) or does not match."""

    def __init__(self, message: str, *, target: str = "", code: str = "host_key") -> None:
        super().__init__(message, target=target, code=code)


class PackageManagerError(PermanentProviderError):
    """A package manager command failed or printed something we cannot parse."""

    def __init__(self, message: str, *, code: str, target: str = "", output: str = "") -> None:
        if code not in CODES:
            raise ValueError(f"unknown PackageManagerError code {code!r}")
        detail = snippet(output)
        super().__init__(f"{message}: {detail}" if detail else message, target=target, code=code)
        self.output = detail


class PackageManagerLocked(TransientProviderError, PackageManagerError):
    """The package database lock stayed held by another process longer than we were willing to wait."""

    retryable = True

    def __init__(self, message: str, *, target: str = "", output: str = "") -> None:
        PackageManagerError.__init__(self, message, code="lock_timeout", target=target, output=output)


class RebootFailed(PermanentProviderError):
    """The guest came back from a reboot in a state we did not ask for (e.g. an older kernel)."""

    def __init__(self, message: str, *, target: str = "", code: str = "reboot_failed") -> None:
        super().__init__(message, target=target, code=code)
