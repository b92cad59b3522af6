"""Typed, strict access to one TOML table: every error names the file, the dotted field and the fix.

A :class:`TableReader` knows the keys its table may hold; unknown keys are refused with a
"did you mean" suggestion. Used by :mod:`orchestrator.config_tables`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.config import MatchSpec
from orchestrator.errors import ConfigError
from providers.base import Secret

MATCH_KEYS = ("names", "tags", "regex")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               list: "a list", dict: "a table"}  # fmt: skip


def suggest(key: str, known: Iterable[str]) -> str:
    """A fix for an unknown ``key``: the closest known name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"remove it; known keys: {', '.join(known)}" if known else "remove it"


def type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Secret):
        return "a secret reference"
    return {str: "a string", int: "an integer", float: "a number", list: "a list"}.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__
    )


def parse_duration(value: object) -> int | None:
    """Seconds from ``"30s"``, ``"10m"``, ``"6h"``, ``"3d"`` or a plain number of seconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and abs(value) < 1e12 else None
    if isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return int(seconds) if seconds < 1e12 else None
    return None


class TableReader:
    """Reads ``raw`` (the table at dotted ``prefix``) from ``file``; ``keys`` are the allowed keys."""

    def __init__(self, raw: object, *, file: Path, prefix: str, keys: Iterable[str] | None = None) -> None:
        self.file = file
        self.prefix = prefix
        if not isinstance(raw, Mapping):
            raise ConfigError(
                str(file),
                prefix or "-",
                f"must be a table, not {type_name(raw)}",
                f"write [{prefix}] with key = value lines" if prefix else "write key = value lines",
            )
        self.raw: Mapping[str, Any] = raw
        if keys is not None:
            known = frozenset(keys)
            for key in sorted(set(raw) - known):
                raise self.error(key, "unknown key", suggest(key, known))

    # ------------------------------------------------------------------ basics
    def field(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str, fix: str) -> ConfigError:
        return ConfigError(str(self.file), self.field(key), message, fix)

    def has(self, key: str) -> bool:
        return key in self.raw

    def _typed(self, key: str, default: Any, kinds: tuple[type, ...], example: str) -> Any:
        value = self.raw.get(key, default)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise self.error(
                key,
                f"must be {_TYPE_NAMES.get(kinds[0], kinds[0].__name__)}, not {type_name(value)}",
                f"write {key} = {example}",
            )
        return value

    # ------------------------------------------------------------------ scalars
    def text(
        self, key: str, default: str = "", *, choices: Iterable[str] | None = None, required: bool = False
    ) -> str:
        if required and key not in self.raw:
            raise self.error(key, "is required", f'write {key} = "..."')
        value: str = self._typed(key, default, (str,), '"..."').strip()
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(key, f"unknown value {value!r}", f"{hint}use one of: {', '.join(options)}")
        elif required and not value:
            raise self.error(key, "must not be empty", f'write {key} = "..."')
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._typed(key, default, (bool,), str(default).lower()))

    def integer(self, key: str, default: int, *, low: int = 0, high: int = 10**9) -> int:
        value: int = self._typed(key, default, (int,), str(default))
        if not low <= value <= high:
            raise self.error(
                key, f"must be between {low} and {high}, got {value}", f"write {key} = {default}"
            )
        return value

    def duration(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self.raw.get(key, default)
        seconds = parse_duration(value)
        if seconds is None:
            raise self.error(
                key,
                f"cannot read {value!r} as a duration",
                'write seconds or a number with a unit: "30s", "10m", "6h", "3d"',
            )
        if seconds < minimum:
            raise self.error(key, f"must be at least {minimum}s, got {seconds}s", f'write e.g. {key} = "10m"')
        return seconds

    def strings(self, key: str, default: Iterable[str] = ()) -> tuple[str, ...]:
        value = self.raw.get(key, list(default))
        if isinstance(value, str):
            raise self.error(key, "must be a list of strings, not a string", f'write {key} = ["{value}"]')
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(
                key, f"must be a list of strings, not {type_name(value)}", f'write {key} = ["..."]'
            )
        return tuple(v.strip() for v in value)

    def regex(self, key: str) -> str:
        pattern = self.text(key)
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.error(
                    key,
                    f"invalid regular expression: {exc}",
                    "write a Python regex, e.g. '^web-\\d+$' (single quotes keep backslashes)",
                ) from None
        return pattern

    def path(self, key: str, *, base: Path, templates: Mapping[str, str] | None = None) -> Path | None:
        text = self.text(key)
        if not text:
            return None
        for name, replacement in (templates or {}).items():
            text = text.replace("{" + name + "}", replacement)
        path = Path(text).expanduser()
        return path if path.is_absolute() else (base / path)

    def secret(self, key: str) -> Secret | None:
        value = self.raw.get(key)
        if value is None or isinstance(value, Secret):
            return value
        raise self.error(key, "must be a secret reference", 'use { env = "NAME" } or { file = "/path" }')

    def match_spec(self) -> MatchSpec:
        """This table's ``names`` / ``tags`` / ``regex`` (which VMs something applies to)."""
        names = self.strings("names")
        if "" in names:
            raise self.error(
                "names", "contains an empty name", 'write names = ["web-*"] (globs match name or site/name)'
            )
        return MatchSpec(names=names, tags=self.strings("tags"), regex=self.regex("regex"))

    # ------------------------------------------------------------------ nesting
    def table(self, key: str, keys: Iterable[str] | None = None) -> TableReader:
        return TableReader(self.raw.get(key, {}), file=self.file, prefix=self.field(key), keys=keys)

    def tables(self, key: str) -> list[TableReader]:
        """An array of tables (``[[key]]``); readers are prefixed ``key[i]`` and check no keys."""
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self.error(
                key, f"must be an array of tables, not {type_name(value)}", f"write [[{key}]] sections"
            )
        return [
            TableReader(item, file=self.file, prefix=f"{self.field(key)}[{i}]")
            for i, item in enumerate(value)
        ]

    def check_keys(self, keys: Iterable[str]) -> TableReader:
        """Re-check this table's keys (for readers created without a key set)."""
        return TableReader(self.raw, file=self.file, prefix=self.prefix, keys=keys)
