"""The orchestrator's side of :class:`providers.settings.SettingsReader`: errors name the file, and MatchSpec.

The tables are read with the shared reader (one duration grammar, "did you mean" for unknown keys),
which raises :class:`~providers.settings.SettingsError` naming the dotted field. :func:`reported_in`
turns it into a :class:`ConfigError` naming the file as well — once, around everything read from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.config.settings import MatchSpec
from orchestrator.errors import ConfigError
from providers.settings import SettingsError, SettingsReader

MATCH_KEYS = ("names", "tags", "regex")


@contextmanager
def reported_in(file: Path) -> Iterator[None]:
    """A :class:`SettingsError` raised inside becomes ``ConfigError(file, field, message, fix)``."""
    try:
        yield
    except SettingsError as exc:
        raise ConfigError(
            str(file), exc.field or "-", exc.message, exc.fix or "see config/patchwave.example.toml"
        ) from None


def match_spec(t: SettingsReader) -> MatchSpec:
    """The table's ``names`` / ``tags`` / ``regex`` (which VMs something applies to)."""
    names = t.strings("names")
    if "" in names:
        raise t.error(
            "names", "contains an empty name", 'write names = ["web-*"] (globs match name or site/name)'
        )
    return MatchSpec(names=names, tags=t.strings("tags"), regex=t.regex("regex"))
