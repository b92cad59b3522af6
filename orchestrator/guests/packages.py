"""Package manager contract: value types, the PackageManager Protocol, and the factory.

A package manager *describes* commands and *parses* their output; it never opens a connection.
Commands are plain ``/bin/sh`` text that any :class:`~orchestrator.guests.channel.GuestChannel` runs.
Where one logical step needs several tool invocations, the command prints sections introduced by
``### patchwave:<name>`` lines and ends each with ``### patchwave:exit=<status>``; :func:`split_sections`
takes them apart again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from providers.base import ExecResult

from .errors import PackageManagerError

if TYPE_CHECKING:
    from .osinfo import OsInfo

UpdateMode = Literal["all", "security", "pinned"]
SECTION = "### patchwave:"


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    name: str
    current: str  # installed version ("" when the update installs a new package)
    candidate: str
    security: bool
    severity: str = ""  # as the tool reports it ("Important", "moderate"); "" when unknown
    advisories: tuple[str, ...] = ()
    cves: tuple[str, ...] = ()
    arch: str = ""


@dataclass(frozen=True, slots=True)
class UpdateSelection:
    mode: UpdateMode = "all"
    pins: tuple[str, ...] = ()  # "pkg=version" (apt) or NEVRA (dnf, zypper) when mode == "pinned"

    def __post_init__(self) -> None:
        if self.mode not in ("all", "security", "pinned"):
            raise ValueError(f"unknown update mode {self.mode!r}")
        if self.mode == "pinned" and not self.pins:
            raise ValueError("mode 'pinned' needs at least one pin")


@dataclass(frozen=True, slots=True)
class PackageChange:
    name: str
    old: str  # "" for a newly installed package
    new: str  # "" for a removed package


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    changed: tuple[PackageChange, ...]
    reboot_hint: bool  # the tool itself said a reboot is needed, or a kernel package changed


@runtime_checkable
class PackageManager(Protocol):
    name: str

    def list_updates_command(self) -> str: ...
    def parse_updates(self, result: ExecResult) -> list[PendingUpdate]: ...
    def apply_command(self, selection: UpdateSelection) -> str: ...
    def parse_apply(self, result: ExecResult) -> ApplyOutcome: ...
    def reboot_required_command(self) -> str: ...
    def parse_reboot_required(self, result: ExecResult) -> bool: ...
    def installed_command(self, names: Sequence[str]) -> str: ...
    def parse_installed(self, result: ExecResult) -> dict[str, str]: ...
    def needs_restart_command(self) -> str: ...
    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]: ...


def package_manager_for(os_info: OsInfo, *, lock_timeout: float = 600) -> PackageManager:
    from .apt import Apt
    from .dnf import Dnf
    from .zypper import Zypper

    if os_info.family == "debian":
        return Apt(lock_timeout=lock_timeout)
    if os_info.family == "rhel":
        return Dnf(lock_timeout=lock_timeout)
    if os_info.family == "suse":
        return Zypper(lock_timeout=lock_timeout)
    raise PackageManagerError(
        f"no package manager for {os_info.pretty_name or os_info.id!r} (family {os_info.family!r})",
        code="unsupported_os",
    )


# -- helpers shared by the builders and parsers ------------------------------------------------

_KERNEL = re.compile(
    r"^(linux-image-|kernel($|-default|-core|-uek|-rt|-azure|-64k|-longterm)|linux-(generic|virtual))"
)


def is_kernel_package(name: str) -> bool:
    return bool(_KERNEL.match(name))


def split_sections(text: str) -> dict[str, tuple[str, int | None]]:
    """``### patchwave:<name>`` sections -> {name: (body, exit status or None)}."""
    sections: dict[str, tuple[str, int | None]] = {}
    name: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith(SECTION):
            tag = line[len(SECTION) :].strip()
            if tag.startswith("exit="):
                if name is not None:
                    try:
                        status: int | None = int(tag[5:])
                    except ValueError:
                        status = None
                    sections[name] = ("\n".join(body), status)
                    name, body = None, []
                continue
            if name is not None:  # a section without an exit line
                sections[name] = ("\n".join(body), None)
            name, body = tag, []
        elif name is not None:
            body.append(line)
    if name is not None:
        sections[name] = ("\n".join(body), None)
    return sections


def section_command(name: str, command: str) -> str:
    """Shell text that runs ``command`` as section ``name`` (stderr folded into the section)."""
    return f"echo '{SECTION}{name}'; {{ {command} ; }} 2>&1; echo \"{SECTION}exit=$?\""


def dedupe(changes: Sequence[PackageChange]) -> tuple[PackageChange, ...]:
    """One change per package: first old version, last new version, in first-seen order."""
    merged: dict[str, PackageChange] = {}
    for change in changes:
        prev = merged.get(change.name)
        merged[change.name] = (
            change if prev is None else PackageChange(change.name, prev.old or change.old, change.new)
        )
    return tuple(c for c in merged.values() if c.old != c.new)
