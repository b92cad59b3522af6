"""Pinned promotion (pure): what the first ring tested is what later rings get.

* :func:`compute_pin_set` — from what each patched-and-healthy first-ring VM installed
  (:class:`Contribution`), the pin set: per OS release (:func:`os_key`), package name -> version. Two
  first-ring VMs of one release that installed different versions of a package (the repository
  moved while the ring ran): the version most of them run, on a tie the lower one (both were tested;
  the lower one is the conservative pick).
* :func:`promote` — for one later-ring VM: its pending updates (already narrowed to the VM's
  ``updates`` mode) against the pin set of its OS release: which exact ``pkg=version`` / NEVRA pins
  to install, and which versions are **held back** (never tested by the first ring) and why.

A version is installed only if the first ring installed exactly it; a candidate newer than the pin
is held back (and the pinned version installed when the VM is older than it); a package the first
ring did not install, or an OS release no first-ring VM ran, is held back entirely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.vulns.versions import Ordering, VersionError, compare


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one first-ring VM installed (name -> version; empty: it had nothing to do)."""

    step_id: str
    os_key: str
    packages: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PinEntry:
    os_key: str
    name: str
    version: str
    tested_on: int  # first-ring VMs that installed exactly this version


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A pending version a later-ring VM does not get: ``pinned`` is what it gets instead ("" = none)."""

    name: str
    current: str
    candidate: str
    pinned: str
    reason: str


@dataclass(frozen=True, slots=True)
class Promotion:
    pins: tuple[str, ...]  # the exact selection: "pkg=version" (apt) or NEVRA (dnf, zypper)
    held: tuple[HeldBack, ...]


def os_key(os_info: OsInfo) -> str:
    """``family:id:version_id`` — the unit a pin set is kept per (e.g. ``debian:debian:12``)."""
    return f"{os_info.family}:{os_info.id}:{os_info.version_id}"


def os_label(key: str) -> str:
    """``debian:debian:12`` -> ``debian 12``."""
    _family, _, rest = key.partition(":")
    return rest.replace(":", " ").strip() or key


def ordering_of(key: str) -> Ordering | None:
    family = key.partition(":")[0]
    return "dpkg" if family == "debian" else "rpm" if family in ("rhel", "suse") else None


def _cmp(ordering: Ordering | None, one: str, two: str) -> int:
    """Version order; a version the family's rules cannot read sorts as text (never raises)."""
    if ordering is not None:
        try:
            return compare(ordering, one, two)
        except VersionError:
            pass
    return (one > two) - (one < two)


def compute_pin_set(tested: Iterable[Contribution]) -> tuple[PinEntry, ...]:
    """The pin set of the first ring's patched-and-healthy VMs, sorted by (os_key, name)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for vm in tested:
        for name, version in vm.packages.items():
            if version:
                seen = counts.setdefault((vm.os_key, name), {})
                seen[version] = seen.get(version, 0) + 1
    entries = []
    for (key, name), versions in sorted(counts.items()):
        best = ""
        for version, n in versions.items():
            if (
                not best
                or n > versions[best]
                or (n == versions[best] and _cmp(ordering_of(key), version, best) < 0)
            ):
                best = version
        entries.append(PinEntry(key, name, best, versions[best]))
    return tuple(entries)


def pin_text(manager: str, update: PendingUpdate, version: str) -> str:
    """The package manager's exact selection of ``version`` of ``update``'s package."""
    if manager == "apt":
        return f"{update.name}={version}"
    nevra = f"{update.name}-{version}"
    return f"{nevra}.{update.arch}" if update.arch else nevra


def promote(
    updates: Sequence[PendingUpdate],
    pins: Mapping[str, str] | None,
    *,
    key: str,
    ring: str,
    manager: str,
) -> Promotion:
    """What one later-ring VM of OS release ``key`` installs: ``pins`` is the pin set of its release
    (None: no patched-and-healthy VM of ``ring`` runs it)."""
    ordering = ordering_of(key)
    selected: list[str] = []
    held: list[HeldBack] = []
    for u in updates:
        pinned = None if pins is None else pins.get(u.name)
        if pins is None:
            reason = f"no VM of ring {ring!r} running {os_label(key)} was patched and healthy"
            held.append(HeldBack(u.name, u.current, u.candidate, "", reason))
        elif pinned is None:
            reason = f"ring {ring!r} did not install {u.name} on {os_label(key)}"
            held.append(HeldBack(u.name, u.current, u.candidate, "", reason))
        elif u.candidate == pinned:
            selected.append(pin_text(manager, u, pinned))
        else:
            newer = _cmp(ordering, u.candidate, pinned) > 0
            gets = pinned if newer and (not u.current or _cmp(ordering, u.current, pinned) < 0) else ""
            if gets:
                selected.append(pin_text(manager, u, gets))
            what = "newer than" if newer else "not"
            reason = f"{u.candidate} is {what} the version ring {ring!r} tested ({pinned})"
            held.append(HeldBack(u.name, u.current, u.candidate, gets, reason))
    return Promotion(tuple(selected), tuple(held))
