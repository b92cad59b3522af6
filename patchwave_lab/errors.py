"""Errors raised by the lab. They subclass the provider errors so retry meaning stays uniform."""

from __future__ import annotations

from providers.errors import PermanentProviderError


class LabError(PermanentProviderError):
    """The lab could not be built, started or stopped; the message says which step and why."""
