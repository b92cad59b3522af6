"""What ``status`` finds on a guest: drift against the policy and the updater's last run (pure values).

An :class:`Expectation` is one setting the policy wants (``equal``: exactly these values, as a set;
``includes``: at least these; ``not``: none of these); :func:`compare` checks the guest's effective
settings against them and returns one :class:`Drift` per miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}


@dataclass(frozen=True)
class Expectation:
    key: str
    values: tuple[str, ...]
    how: str = "equal"  # equal | includes | not
    default: tuple[str, ...] = ()  # the tool's value when the key is not set
    boolean: bool = False  # compare as booleans ("1", "yes", "true", "on" are all true)


@dataclass(frozen=True)
class Drift:
    item: str  # a setting key, a unit, "installed", "reboot schedule"
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.item}: expected {self.expected}, found {self.actual}"


@dataclass(frozen=True)
class LastRun:
    """The updater's last automatic run, as far as the guest can tell."""

    started_at: str = ""  # "" = never ran (as far as the log and systemd know)
    finished_at: str = ""
    result: str = "unknown"  # upgraded | nothing | failed | running | incomplete | unknown
    packages: tuple[str, ...] = ()
    error: str = ""
    source: str = ""  # where it was read: the updater's log, the systemd unit


def compare(
    effective: Mapping[str, tuple[str, ...]], expectations: Iterable[Expectation]
) -> tuple[Drift, ...]:
    found = []
    for exp in expectations:
        actual = effective.get(exp.key) or exp.default
        if exp.boolean:
            actual = tuple(_bool(v) for v in actual)
            wanted = tuple(_bool(v) for v in exp.values)
        else:
            wanted = exp.values
        if not _holds(exp.how, actual, wanted):
            found.append(Drift(exp.key, _describe(exp.how, wanted), _shown(actual)))
    return tuple(found)


def _holds(how: str, actual: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    if how == "includes":
        return set(wanted) <= set(actual)
    if how == "not":
        return not set(wanted) & set(actual)
    return set(actual) == set(wanted)


def _bool(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    return value


def _describe(how: str, values: tuple[str, ...]) -> str:
    shown = _shown(values)
    return {"includes": f"at least {shown}", "not": f"not {shown}"}.get(how, shown)


def _shown(values: tuple[str, ...]) -> str:
    if not values:
        return "(unset)"
    return ", ".join(f'"{v}"' for v in values)
