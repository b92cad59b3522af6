"""RPM naming shared by dnf and zypper: NEVRA parsing and ``rpm -q`` queries."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages.base import InstalledPackage, split_sections

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
#: Every installed package with its source RPM (advisories and OSV records may name either).
RPM_PACKAGES_FORMAT = r"%{NAME}\t%{ARCH}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{SOURCERPM}\n"
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


def rpm_packages_command(*, root: str = "") -> str:
    root_opt = f" --root {shlex.quote(root)}" if root else ""
    return f"rpm{root_opt} -qa --qf {shlex.quote(RPM_PACKAGES_FORMAT)}"


def parse_rpm_packages(text: str) -> list[InstalledPackage]:
    """Lines of :data:`RPM_PACKAGES_FORMAT` -> installed packages, sorted by name and arch (the
    source name is the SRPM's; ``gpg-pubkey`` pseudo-packages, whose SRPM is "(none)", are left out)."""
    found = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or not parts[0] or ":" not in parts[2]:
            continue
        name, arch, evr, srpm = parts
        source = parse_nevra(srpm.strip().removesuffix(".rpm"))
        if source is None:
            continue
        found.append(InstalledPackage(name, strip_zero_epoch(evr.strip()), "" if source.name == name else source.name,
                                      arch=arch))  # fmt: skip
    return sorted(found, key=lambda p: (p.name, p.arch, p.version))


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


# -- consistency (dnf and zypper) ------------------------------------------------------------

#: rpm's database lock (an fcntl lock; /usr/lib/sysimage/rpm on newer SUSE and Fedora).
RPM_LOCKS = ("/var/lib/rpm/.rpm.lock", "/usr/lib/sysimage/rpm/.rpm.lock")


def rpm_verify_command(*, root: str = "") -> str:
    """Dependency problems of every installed package (files, digests and %verify scripts are
    not checked: only what a half-done transaction breaks). Prints nothing when all is well."""
    root_opt = f" --root {shlex.quote(root)}" if root else ""
    return f"rpm{root_opt} -Va --nofiles --nodigest --noscripts"


def rpm_integrity_sections(stdout: str, tool: str) -> tuple[dict[str, tuple[str, int | None]], list[str]]:
    """The sections of an rpm-family consistency check (``busy``, ``rpm-verify`` and the package
    manager's own ``tool`` section), and what ``rpm -Va`` found; incomplete output is a parse error."""
    sections = split_sections(stdout)
    if not {"busy", "rpm-verify", tool} <= set(sections):
        raise PackageManagerError("incomplete consistency check output", code="parse", output=stdout)
    return sections, rpm_verify_problems(*sections["rpm-verify"])


def rpm_verify_problems(body: str, status: int | None) -> list[str]:
    """What :func:`rpm_verify_command` found (its lines), or that it could not run."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if status not in (0, None) and not lines:
        return [f"rpm -Va could not run (exit {status})"]
    return [f"rpm -Va: {line}" for line in lines]


# -- version ordering (rpm's own rules) --------------------------------------------------------


def _is_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def rpmvercmp(one: str, two: str) -> int:
    """rpm's ``rpmvercmp()`` (rpmio/rpmvercmp.c, rpm >= 4.15): -1, 0 or 1.

    Alternating runs of digits and ASCII letters are compared (numbers numerically, a number beats
    letters), other characters only separate. ``~`` sorts before anything, even the end of the string
    (``1.0~rc1`` < ``1.0``); ``^`` sorts after the end of the string but before anything else
    (``1.0`` < ``1.0^git1`` < ``1.0.1``).
    """
    if one == two:
        return 0
    i = j = 0
    while i < len(one) or j < len(two):
        while i < len(one) and not _is_alnum(one[i]) and one[i] not in "~^":
            i += 1
        while j < len(two) and not _is_alnum(two[j]) and two[j] not in "~^":
            j += 1
        a, b = one[i : i + 1], two[j : j + 1]
        if a == "~" or b == "~":
            if a != "~":
                return 1
            if b != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if a == "^" or b == "^":
            if not a:
                return -1
            if not b:
                return 1
            if a != "^":
                return 1
            if b != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (a and b):
            break
        rc, i, j = _compare_segment(one, i, two, j)
        if rc:
            return rc
    if i >= len(one) and j >= len(two):
        return 0
    return -1 if i >= len(one) else 1


def _compare_segment(one: str, i: int, two: str, j: int) -> tuple[int, int, int]:
    """Compare the digit (or letter) run at one[i] with the same kind of run at two[j]."""
    numeric = one[i].isascii() and one[i].isdigit()

    def kind(char: str) -> bool:
        return char.isascii() and (char.isdigit() if numeric else char.isalpha())

    end_i, end_j = i, j
    while end_i < len(one) and kind(one[end_i]):
        end_i += 1
    while end_j < len(two) and kind(two[end_j]):
        end_j += 1
    seg_a, seg_b = one[i:end_i], two[j:end_j]
    if not seg_b:  # different kinds of run: a number is newer than letters
        return (1 if numeric else -1), end_i, end_j
    if numeric:
        seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
        if len(seg_a) != len(seg_b):
            return (1 if len(seg_a) > len(seg_b) else -1), end_i, end_j
    if seg_a != seg_b:
        return (1 if seg_a > seg_b else -1), end_i, end_j
    return 0, end_i, end_j


def split_evr(evr: str) -> tuple[str, str, str | None]:
    """``[epoch:]version[-release]`` -> (epoch, version, release or None); a missing epoch is "0"."""
    epoch, colon, rest = evr.strip().partition(":")
    if not colon:
        epoch, rest = "0", epoch
    version, dash, release = rest.rpartition("-")
    if not dash:
        return epoch or "0", release, None
    return epoch or "0", version, release


def compare_evr(one: str, two: str) -> int:
    """Order two ``[epoch:]version[-release]`` strings as rpm 4.18's ``rpm.vercmp`` does: -1, 0 or 1.

    The epoch decides first (missing = 0), then the version, then the release; a missing release
    sorts before any release (``1.0`` < ``1.0-1``), as in rpm's and libsolv's comparison.
    """
    e1, v1, r1 = split_evr(one)
    e2, v2, r2 = split_evr(two)
    return rpmvercmp(e1, e2) or rpmvercmp(v1, v2) or rpmvercmp(r1 or "", r2 or "")
