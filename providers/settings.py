"""What every settings table shares: one duration grammar, one table reader, :class:`Secret`, :class:`SettingsError`.

The orchestrator's tables (``[policy]``, ``[windows.X]``, ...) and each adapter's ``[providers.<site>]``
table are read through :class:`SettingsReader`, so they speak one language:

* an unknown key is refused with a "did you mean" suggestion (or the list of known keys);
* every mistake is a :class:`SettingsError` naming the dotted field, the problem and what to write;
* durations follow one grammar, :func:`parse_duration`:

  - a number of seconds: ``30``, ``2.5``, ``"90"``;
  - or a number with a unit: ``"500ms"``, ``"30s"``, ``"10m"``, ``"6h"``, ``"3d"`` (``"1.5h"`` too);
  - never negative, never a boolean, at most :data:`MAX_DURATION_S` (366 days): nothing longer is a
    useful timeout or retention, and every accepted value fits ``datetime.timedelta`` and Temporal;
  - a key may bound it further (``minimum``/``maximum``). A timeout handed to one blocking call (a
    command, a request) is at most :data:`MAX_TIMEOUT_S` (24 days): ``select``/``poll`` take
    milliseconds in a C int (2**31 ms is 24.8 days) and raise ``OverflowError`` beyond.

Providers import nothing from the orchestrator; the orchestrator turns a :class:`SettingsError`
into its ``ConfigError`` once, attaching the file (``orchestrator.config.reader.reported_in``).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, overload

#: The longest duration any table accepts (a leap year).
MAX_DURATION_S = 366 * 86400
#: The longest timeout of one blocking call (see the module docstring).
MAX_TIMEOUT_S = 24 * 86400
DURATION_FIX = 'write seconds or a number with a unit: "500ms", "30s", "10m", "6h", "3d"'
_DURATION = re.compile(r"^\s*(-?)(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")  # "-" only to say "negative"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", list: "a list"}


class Secret:
    """A credential. Its repr/str never reveal the value; call :meth:`reveal` at the SDK boundary."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class SettingsError(ValueError):
    """A setting is invalid. ``field`` is the dotted key, ``fix`` says what to write."""

    def __init__(self, field_name: str, message: str, fix: str = "") -> None:
        super().__init__(f"{field_name}: {message}" + (f" (fix: {fix})" if fix else ""))
        self.field = field_name
        self.message = message
        self.fix = fix


# ---------------------------------------------------------------------------------- the grammar
def parse_duration(value: object, field_name: str = "duration") -> float:
    """Seconds from a duration (see the module docstring); raises :class:`SettingsError` naming ``field_name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(field_name, f"must be a duration, not {type_name(value)}", DURATION_FIX)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise SettingsError(field_name, f"cannot read {_shown(value)} as a duration", DURATION_FIX)
        sign, number, unit = match.groups()
        seconds: float = float(number) * _UNITS[unit or "s"]
        negative = bool(sign)
    else:
        seconds, negative = value, value < 0  # an int stays exact (and arbitrarily large) for the checks
    if isinstance(seconds, float) and math.isnan(seconds):
        raise SettingsError(field_name, "must be a number, not nan", DURATION_FIX)
    if negative:
        raise SettingsError(field_name, f"must not be negative, got {_shown(value)}", DURATION_FIX)
    if seconds > MAX_DURATION_S:
        raise SettingsError(
            field_name,
            f"{_shown(value)} is longer than the maximum duration, {format_duration(MAX_DURATION_S)}",
            f'write at most "{format_duration(MAX_DURATION_S)}"',
        )
    return float(seconds) + 0.0  # -0.0 becomes 0.0


def format_duration(seconds: float) -> str:
    """Text of the grammar for ``seconds`` (to the microsecond): ``"3d"``, ``"90s"``, ``"500ms"``, ``"1.5s"``."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"


# ---------------------------------------------------------------------------------- words for errors
def suggest(key: str, known: Iterable[str]) -> str:
    """A fix for an unknown ``key``: the closest known name, or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
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


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------- the reader
class SettingsReader:
    """Typed, strict access to one table ``raw`` at dotted ``prefix``; ``keys`` are the allowed keys.

    Every getter returns the typed value or raises :class:`SettingsError` naming ``prefix.key``.
    """

    def __init__(self, raw: object, *, prefix: str = "", keys: Iterable[str] | None = None) -> None:
        self.prefix = prefix
        if not isinstance(raw, Mapping):
            raise SettingsError(
                prefix or "-",
                f"must be a table, not {type_name(raw)}",
                f"write [{prefix}] with key = value lines" if prefix else "write key = value lines",
            )
        self.raw: Mapping[str, Any] = raw
        if keys is not None:
            known = frozenset(keys)
            for key in sorted(set(raw) - known, key=str):
                raise self.error(key, "unknown key", suggest(key, known))

    # ------------------------------------------------------------------ basics
    def field(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str, fix: str) -> SettingsError:
        return SettingsError(self.field(key), message, fix)

    def has(self, key: str) -> bool:
        return key in self.raw

    def _typed(self, key: str, default: Any, kind: type, example: str) -> Any:
        value = self.raw.get(key, default)
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise self.error(
                key, f"must be {_TYPE_NAMES[kind]}, not {type_name(value)}", f"write {key} = {example}"
            )
        return value

    # ------------------------------------------------------------------ scalars
    def text(
        self, key: str, default: str = "", *, choices: Iterable[str] | None = None, required: bool = False
    ) -> str:
        if required and key not in self.raw:
            raise self.error(key, "is required", f'write {key} = "..."')
        value: str = self._typed(key, default, str, '"..."').strip()
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(
                    key, f"unknown value {_shown(value)}", f"{hint}use one of: {', '.join(options)}"
                )
        elif required and not value:
            raise self.error(key, "must not be empty", f'write {key} = "..."')
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._typed(key, default, bool, str(default).lower()))

    def integer(self, key: str, default: int, *, low: int = 0, high: int = 10**9) -> int:
        value: int = self._typed(key, default, int, str(default))
        if not low <= value <= high:
            raise self.error(
                key, f"must be between {low} and {high}, got {value}", f"write {key} = {default}"
            )
        return value

    def duration(
        self, key: str, default: float, *, minimum: float = 0.001, maximum: float = MAX_DURATION_S
    ) -> float:
        """Seconds (see :func:`parse_duration`), within ``minimum`` and ``maximum``."""
        seconds = parse_duration(self.raw.get(key, default), self.field(key))
        if minimum <= seconds <= maximum:
            return seconds
        bound = (
            f"at least {format_duration(minimum)}"
            if seconds < minimum
            else f"at most {format_duration(maximum)}"
        )
        example = format_duration(min(max(default, minimum), maximum))
        raise self.error(
            key, f"must be {bound}, got {format_duration(seconds)}", f'write e.g. {key} = "{example}"'
        )

    def seconds(self, key: str, default: int, *, minimum: int = 1, maximum: int = MAX_DURATION_S) -> int:
        """A :meth:`duration` in whole seconds (a fraction of a second is dropped)."""
        return int(self.duration(key, default, minimum=minimum, maximum=maximum))

    def strings(self, key: str, default: Iterable[str] = ()) -> tuple[str, ...]:
        value = self.raw.get(key, list(default))
        if isinstance(value, str):
            example = json.dumps(value) if len(value) <= 40 else '"..."'
            raise self.error(key, "must be a list of strings, not a string", f"write {key} = [{example}]")
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

    def path(
        self,
        key: str,
        *,
        base: Path | None = None,
        templates: Mapping[str, str] | None = None,
        must_exist: bool = False,
    ) -> Path | None:
        """``None`` for "" or a missing key; ``{name}`` templates filled, ``~`` expanded, relative to ``base``."""
        text = self.text(key)
        if not text:
            return None
        for name, replacement in (templates or {}).items():
            text = text.replace("{" + name + "}", replacement)
        path = Path(text).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if must_exist and not path.is_file():
            raise self.error(
                key, f"file {_shown(str(path))} does not exist", f"point {key} at an existing file"
            )
        return path

    @overload
    def secret(self, key: str, *, required: Literal[True]) -> Secret: ...
    @overload
    def secret(self, key: str, *, required: bool = False) -> Secret | None: ...
    def secret(self, key: str, *, required: bool = False) -> Secret | None:
        """A resolved ``{ env = "NAME" }`` / ``{ file = "/path" }`` reference; never a literal value."""
        value = self.raw.get(key)
        fix = f'write {key} = {{ env = "NAME" }} or {{ file = "/path" }}'
        if value is None:
            if required:
                raise self.error(key, "is required", fix)
            return None
        if not isinstance(value, Secret):
            raise self.error(key, f"must be a secret reference, not {type_name(value)}", fix)
        if not value:
            raise self.error(
                key, "the secret is empty", "check the environment variable or file it refers to"
            )
        return value

    # ------------------------------------------------------------------ nesting
    def table(self, key: str, keys: Iterable[str] | None = None) -> SettingsReader:
        return SettingsReader(self.raw.get(key, {}), prefix=self.field(key), keys=keys)

    def tables(self, key: str) -> list[SettingsReader]:
        """An array of tables (``[[key]]``); readers are prefixed ``key[i]`` and check no keys."""
        value = self.raw.get(key, [])
        if not isinstance(value, list):
            raise self.error(
                key, f"must be an array of tables, not {type_name(value)}", f"write [[{key}]] sections"
            )
        return [SettingsReader(item, prefix=f"{self.field(key)}[{i}]") for i, item in enumerate(value)]

    def check_keys(self, keys: Iterable[str]) -> SettingsReader:
        """Re-check this table's keys (for readers created without a key set)."""
        return SettingsReader(self.raw, prefix=self.prefix, keys=keys)
