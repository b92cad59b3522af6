"""Errors of the guest layer, subclasses of the provider errors so retry logic is uniform.

``retryable`` comes from the base class: :class:`GuestUnreachable` and :class:`PackageManagerLocked`
are transient (another attempt may succeed), every other :class:`PackageManagerError` is permanent.
A patch that outlives ``policy.patch_timeout`` is :class:`PatchTimedOut`, a package database left
inconsistent is :class:`PackageDatabaseInconsistent`, a guest that does not come back from its
reboot in time is :class:`RebootTimedOut`: all three are permanent (the VM is reverted, never
retried: retrying would only run into the same wall, or kill dpkg in mid-configure).
``code`` is stable and machine-readable; messages are for people. SSH's own errors (host keys,
login) are raised by :mod:`providers.ssh`: :class:`providers.errors.HostKeyRejected`,
:class:`providers.errors.AuthenticationFailed`.
"""

from __future__ import annotations

from providers.errors import PermanentProviderError, TransientProviderError

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
        "metadata_not_cached",  # listing without a refresh (dry run), but the guest has no metadata to list from
        "inconsistent",  # the package database is not consistent after (or before) a patch
        "patch_timeout",  # the patch job outlived policy.patch_timeout
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


class PatchTimedOut(PackageManagerError):
    """The patch job was still running when ``policy.patch_timeout`` (counted from the journaled
    PATCH intent, not from this attempt) ran out. The job is left alone (never kill dpkg); the VM is
    reverted through the hypervisor, which is safe whatever the guest's state."""

    def __init__(self, seconds: float, *, job: str = "", target: str = "") -> None:
        self.seconds = seconds
        self.job = job  # the job left running ("" when the package manager was busy otherwise)
        message = f"patch timed out after {seconds:.0f} s"
        PackageManagerError.__init__(self, message, code="patch_timeout", target=target)


class PackageDatabaseInconsistent(PackageManagerError):
    """The package manager finished but left its database inconsistent (half-configured packages,
    pending dpkg updates, broken dependencies) or other versions than planned: not a success."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), target: str = "") -> None:
        self.problems = problems
        PackageManagerError.__init__(
            self, message, code="inconsistent", target=target, output="\n".join(problems)
        )


class RebootTimedOut(PermanentProviderError):
    """The guest did not come back from its reboot (no new boot id) within ``policy.reboot_timeout``."""

    def __init__(self, message: str, *, target: str = "", code: str = "reboot_timeout") -> None:
        super().__init__(message, target=target, code=code)
