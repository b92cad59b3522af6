"""Which operating system a guest runs, from /etc/os-release (os-release(5))."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.guests.errors import GuestUnreachable

if TYPE_CHECKING:
    from orchestrator.guests.channel import GuestChannel

_FAMILIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("debian", frozenset({"debian", "ubuntu", "raspbian", "linuxmint", "pop", "devuan", "kali"})),
    (
        "rhel",
        frozenset(
            {
                "rhel",
                "fedora",
                "centos",
                "rocky",
                "almalinux",
                "ol",
                "amzn",
                "azurelinux",
                "mariner",
                "cloudlinux",
            }
        ),
    ),
    (
        "suse",
        frozenset(
            {
                "suse",
                "opensuse",
                "sles",
                "sled",
                "sles_sap",
                "opensuse-leap",
                "opensuse-tumbleweed",
                "sl-micro",
            }
        ),
    ),
)

OS_RELEASE_COMMAND = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"


@dataclass(frozen=True, slots=True)
class OsInfo:
    id: str
    version_id: str
    family: str  # "debian" | "rhel" | "suse" | "unknown"
    pretty_name: str = ""
    id_like: tuple[str, ...] = ()


def parse_os_release(text: str) -> OsInfo:
    """Parse os-release text. Tolerant: unknown keys, comments and malformed lines are skipped."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:  # unbalanced quotes: take the text as it is
            parts = [raw.strip("\"'")]
        fields[key.strip()] = " ".join(parts)
    os_id = fields.get("ID", "linux").lower()
    id_like = tuple(fields.get("ID_LIKE", "").lower().split())
    return OsInfo(
        id=os_id,
        version_id=fields.get("VERSION_ID", ""),
        family=family_of(os_id, id_like),
        pretty_name=fields.get("PRETTY_NAME", fields.get("NAME", "")),
        id_like=id_like,
    )


def family_of(os_id: str, id_like: tuple[str, ...] = ()) -> str:
    for candidate in (os_id, *id_like):
        for family, ids in _FAMILIES:
            if candidate in ids or (family == "suse" and candidate.startswith(("opensuse", "sles", "sle"))):
                return family
    return "unknown"


def detect_os(channel: GuestChannel, *, timeout: float = 30.0) -> OsInfo:
    result = channel.run(OS_RELEASE_COMMAND, timeout=timeout)
    if not result.ok or not result.stdout.strip():
        raise GuestUnreachable(
            f"cannot read /etc/os-release (exit {result.exit_code}): {result.stderr.strip()[:200]}",
            code="os_release",
        )
    return parse_os_release(result.stdout)
