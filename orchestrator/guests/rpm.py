"""RPM naming shared by dnf and zypper: NEVRA parsing and ``rpm -q`` queries."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

#: Architectures we recognise at the end of a NEVRA ("name-1.0-1.el9.x86_64").
ARCHES = frozenset(
    {
        "noarch",
        "x86_64",
        "i386",
        "i486",
        "i586",
        "i686",
        "aarch64",
        "ppc64le",
        "ppc64",
        "s390x",
        "armv7hl",
        "riscv64",
        "src",
        "nosrc",
    }
)
RPM_QUERY_FORMAT = r"%{NAME}\t%{ARCH}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\n"
_SAFE = re.compile(r"^[A-Za-z0-9_.+~^:-]+$")


@dataclass(frozen=True, slots=True)
class Nevra:
    name: str
    epoch: str
    version: str
    release: str
    arch: str = ""

    @property
    def evr(self) -> str:
        """``[epoch:]version-release`` as dnf prints it (epoch only when not 0)."""
        prefix = f"{self.epoch}:" if self.epoch not in ("", "0") else ""
        return f"{prefix}{self.version}-{self.release}"


def parse_nevra(text: str) -> Nevra | None:
    """``name-[epoch:]version-release[.arch]`` -> Nevra, or None when it is not of that shape."""
    text = text.strip()
    if not text or not _SAFE.match(text):
        return None
    arch = ""
    head, dot, tail = text.rpartition(".")
    if dot and tail in ARCHES:
        text, arch = head, tail
    name_ver, dash, release = text.rpartition("-")
    name, dash2, version = name_ver.rpartition("-")
    if not dash or not dash2 or not name or not version or not release:
        return None
    epoch = "0"
    if ":" in version:
        epoch, _, version = version.partition(":")
    if not epoch.isdigit() or ":" in name:
        return None
    return Nevra(name=name, epoch=epoch, version=version, release=release, arch=arch)


def strip_zero_epoch(evr: str) -> str:
    return evr.removeprefix("0:")


def rpm_query_command(names: Sequence[str], *, root: str = "") -> str:
    root_opt = f" --root {shlex.quote(root)}" if root else ""
    return f"rpm{root_opt} -q --qf {shlex.quote(RPM_QUERY_FORMAT)} -- " + " ".join(
        shlex.quote(n) for n in names
    )


def rpm_query_all_command(*, root: str = "") -> str:
    root_opt = f" --root {shlex.quote(root)}" if root else ""
    return f"rpm{root_opt} -qa --qf {shlex.quote(RPM_QUERY_FORMAT)}"


def parse_rpm_query(text: str) -> dict[tuple[str, str], str]:
    """Lines of :data:`RPM_QUERY_FORMAT` -> {(name, arch): evr}; other lines ("not installed") skipped.

    With several versions of one package installed (kernels), the last listed wins; callers that care
    compare versions themselves.
    """
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] and ":" in parts[2]:
            found[(parts[0], parts[1])] = strip_zero_epoch(parts[2].strip())
    return found


def parse_rpm_versions(text: str) -> dict[str, str]:
    """:func:`parse_rpm_query` keyed by name alone: {name: evr} (the arch dropped)."""
    return {name: evr for (name, _arch), evr in parse_rpm_query(text).items()}
