"""Package manager contract: value types, the PackageManager Protocol, and the factory.

A package manager *describes* commands and *parses* their output; it never opens a connection.
Commands are plain ``/bin/sh`` text that any :class:`~orchestrator.guests.channel.GuestChannel` runs.
Where one logical step needs several tool invocations, the command prints sections introduced by
``### patchwave:<name>`` lines and ends each with ``### patchwave:exit=<status>``; :func:`split_sections`
takes them apart again.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from orchestrator.model import STALE_KERNEL, PackageChange
from providers.base import ExecResult

UpdateMode = Literal["all", "security", "pinned", "packages"]
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
class InstalledPackage:
    """One installed package, with the source package where the distribution names advisories by
    source (Debian and Ubuntu: ``dpkg-query ${source:Package}``; rpm: the name of ``%{SOURCERPM}``)."""

    name: str  # binary package, as the package manager lists it (without an ":arch" qualifier)
    version: str  # as the package manager's installed query reports it (rpm: [epoch:]version-release)
    source: str = ""  # source package ("" = unknown or the same as name)
    source_version: str = ""  # "" = the same as version (differs for Debian binNMUs: 1.0-1+b1)
    arch: str = ""

    @property
    def source_name(self) -> str:
        return self.source or self.name


@dataclass(frozen=True, slots=True)
class UpdateSelection:
    mode: UpdateMode = "all"
    pins: tuple[str, ...] = ()  # "pkg=version" (apt) or NEVRA (dnf, zypper) when mode == "pinned"
    # mode "packages": these installed packages are upgraded to their candidate, nothing else
    # (`run --cve`; the caller checks the result against the fixed versions)
    packages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("all", "security", "pinned", "packages"):
            raise ValueError(f"unknown update mode {self.mode!r}")
        if self.mode == "pinned" and not self.pins:
            raise ValueError("mode 'pinned' needs at least one pin")
        if self.mode == "packages" and not self.packages:
            raise ValueError("mode 'packages' needs at least one package")


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    changed: tuple[PackageChange, ...]
    reboot_hint: bool  # the tool itself said a reboot is needed, or a kernel package changed


@dataclass(frozen=True, slots=True)
class Integrity:
    """What a package manager's consistency check found (:meth:`PackageManager.parse_integrity`).

    ``busy``: who holds the package database now (a lock holder, a package-manager process): while
    anyone does, the state is in flux and judging it would be premature. ``problems``: what makes
    the database inconsistent (``dpkg --audit`` findings, half-installed or half-configured
    packages, pending ``/var/lib/dpkg/updates``, ``rpm -Va``/``dnf check``/``zypper verify``
    problems). Both empty: the package manager is done and consistent.
    """

    busy: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        return not self.busy and not self.problems


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
    def packages_command(self) -> str: ...
    def parse_packages(self, result: ExecResult) -> list[InstalledPackage]: ...
    def needs_restart_command(self) -> str: ...
    def parse_needs_restart(self, result: ExecResult) -> tuple[str, ...]: ...
    def integrity_command(self) -> str: ...
    def parse_integrity(self, result: ExecResult) -> Integrity: ...
    def restart_services_command(self, services: Sequence[str]) -> str: ...
    def parse_restart_services(self, result: ExecResult) -> None: ...  # raises PackageManagerError


# -- helpers shared by the builders and parsers ------------------------------------------------

_KERNEL = re.compile(
    r"^(linux-image-|kernel($|-default|-core|-uek|-rt|-azure|-64k|-longterm)|linux-(generic|virtual))"
)


def is_kernel_package(name: str) -> bool:
    return bool(_KERNEL.match(name))


#: What ``parse_needs_restart`` reports for a newer kernel than the running one (needrestart's
#: NEEDRESTART-KSTA 2/3): only a reboot helps, never a service restart.
KERNEL = STALE_KERNEL

#: Services never restarted automatically where patchwave picks them itself (dnf, zypper): needrestart's
#: default ``override_rc`` (liske/needrestart ``ex/needrestart.conf``: D-Bus, display managers, network
#: managers, gettys, user managers, journald, logind, libvirt, one-shot units), plus systemd itself (PID 1
#: re-executes, it does not restart) and SUSE's wicked (the network). On apt guests needrestart decides.
KEEP_RUNNING = re.compile(
    r"^(dbus|gdm|kdm|nodm|sddm|wdm|xdm|lightdm|slim|lxdm|display-manager|bird|network-manager|NetworkManager"
    r"|wpa_supplicant|openvpn|quagga|tinc|wicked|getty@|serial-getty@|user@|zfs-fuse|mythtv-backend|xendomains"
    r"|lxcfs|libvirt|systemd-journald|systemd-logind|emergency\.service$|rescue\.service$|rc-local\.service$"
    r"|systemd(\.service)?$)"
)


def restartable(services: Sequence[str]) -> tuple[str, ...]:
    """The services of ``services`` a restart may touch (not :data:`KEEP_RUNNING`, not the kernel)."""
    return tuple(s for s in dict.fromkeys(services) if s != KERNEL and not KEEP_RUNNING.match(s))


def restart_units_command(services: Sequence[str]) -> str:
    """``systemctl restart`` of the restartable ``services`` (a no-op when none is)."""
    units = restartable(services)
    if not units:
        return "echo 'patchwave: no service to restart'"
    return "systemctl restart -- " + " ".join(shlex.quote(u) for u in units)


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


# -- consistency checks (who holds the database; is it consistent) -----------------------------


def lock_holders_command(paths: Sequence[str], processes: Sequence[str]) -> str:
    """Shell text printing ``lock <path> pid <pid>`` for every POSIX/flock lock held on ``paths``
    (from ``/proc/locks``, matched by inode: apt, dpkg and rpm take fcntl locks, which ``flock(1)``
    cannot see, and ``fuser``/``lsof`` are missing in minimal guests) and ``process <pid> <comm>``
    for every running process named in ``processes`` that shares our root (an apt in a chroot on the
    same machine is not this system's). Shell builtins only in the per-process loop (no fork per
    process: cheap under TCG). Prints nothing where ``/proc`` is missing."""
    names = "|".join(processes)
    files = " ".join(paths)
    return (
        f'for f in {files}; do i=$(stat -c %i "$f" 2>/dev/null) || continue; '
        "[ -r /proc/locks ] || continue; "
        'awk -v i="$i" -v f="$f" \'$2 != "->" { n = split($6, a, ":"); '
        'if (a[n] == i) print "lock " f " pid " $5 }\' /proc/locks; done; '
        'for p in /proc/[0-9]*; do [ "$p/root" -ef / ] || continue; '
        'read -r c 2>/dev/null < "$p/comm" || continue; '
        f'case "$c" in {names}) echo "process ${{p#/proc/}} $c" ;; esac; done; true'
    )


def parse_lock_holders(text: str) -> tuple[str, ...]:
    """The ``lock ...``/``process ...`` lines of :func:`lock_holders_command`, deduplicated."""
    found = (line.strip() for line in text.splitlines())
    return tuple(dict.fromkeys(line for line in found if line.startswith(("lock ", "process "))))


def problem_lines(text: str, *, ignore: Sequence[str] = ()) -> tuple[str, ...]:
    """Every non-empty line of a checker whose output is empty when all is well."""
    lines = (line.rstrip() for line in text.splitlines())
    return tuple(line for line in lines if line.strip() and not line.startswith(tuple(ignore)))


def same_version(installed: str, planned: str) -> bool:
    """``installed`` is the ``planned`` version (an rpm epoch of 0 may be written or not)."""
    return bool(installed) and installed.removeprefix("0:") == planned.removeprefix("0:")
