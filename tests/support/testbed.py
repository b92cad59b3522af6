"""A libvirt test-driver testbed for the engine's end-to-end tests: domains + fake guests + a config.

* ``node.xml`` — a custom test-driver node (``test:///<dir>/node.xml``) with the requested running
  domains; every connection opens a fresh copy of it (one connection per worker run).
* one :class:`~patchwave_lab.fakeguest.FakeGuest` per domain under ``<dir>/guests/<name>``;
* ``patchwave.toml`` — the configuration: the local channel with ``local_root`` per VM, the
  demo health check, rings/policy as asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from patchwave_lab.fakeguest import HEALTH_COMMAND, FakeGuest

NODE_CPU = (
    "<cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>"
    "<active>2</active><mhz>2000</mhz><model>i686</model></cpu><memory>8388608</memory>"
)
INSTALLED = {"demo-app": "1.0", "openssl": "3.0.11"}
UPGRADES = {"demo-app": "1.1", "openssl": "3.0.15"}


@dataclass(frozen=True)
class GuestSpec:
    name: str
    ring: str = "main"
    broken_after_patch: bool = False  # the new demo-app version fails the health check
    reboot: bool = False  # the upgrade requires a reboot
    timers: tuple[str, ...] = ()  # the automatic updater's timer units (FakeGuest.create(timers=...))


@dataclass
class DriverBed:
    root: Path
    uri: str = ""  # "" = the test-driver node under root
    guests: dict[str, FakeGuest] = field(default_factory=dict)
    uuids: dict[str, str] = field(default_factory=dict)

    @property
    def node(self) -> Path:
        return self.root / "node.xml"

    @property
    def libvirt_uri(self) -> str:
        return self.uri or f"test://{self.node}"

    @property
    def config(self) -> Path:
        return self.root / "patchwave.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"


def domain_xml(name: str, domain_uuid: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><uuid>{domain_uuid}</uuid><memory>131072</memory>"
        "<vcpu>1</vcpu><os><type arch='i686'>hvm</type></os></domain>"
    )


def build(
    root: Path,
    specs: Sequence[GuestSpec],
    *,
    port: int,
    rings: Mapping[str, str] = {"main": ""},
    policy: str = "",
    budget: int = 0,
    ttl: str = "1h",
    concurrency: int = 2,
    vm_duration: str = "1m",
    windows: Mapping[str, str] = {},
    group_windows: Mapping[str, str] = {},
    uri: str = "",
    uuids: Mapping[str, str] | None = None,
) -> DriverBed:
    """Write node.xml, the fake guests and patchwave.toml under ``root``.

    ``rings``: ring name -> extra TOML lines for its ``[rings.X]`` table, in order.
    ``policy``: extra TOML lines for ``[policy]``; ``budget``/``ttl``/``concurrency``/``vm_duration``: those policy keys.
    ``windows``: window name -> TOML lines of ``[windows.X]``; ``group_windows``: ring -> window.
    ``uri``/``uuids``: use existing domains of another libvirt (e.g. qemu:///system) instead of a
    test-driver node.
    """
    bed = DriverBed(root=root, uri=uri)
    root.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        bed.uuids[spec.name] = (uuids or {}).get(spec.name) or str(
            uuid.uuid5(uuid.NAMESPACE_DNS, f"{root}/{spec.name}")
        )
        bed.guests[spec.name] = FakeGuest.create(
            root / "guests" / spec.name,
            installed=INSTALLED,
            repo=UPGRADES,
            broken={"demo-app": UPGRADES["demo-app"]} if spec.broken_after_patch else {},
            reboot_pkgs=["openssl"] if spec.reboot else [],
            timers=spec.timers,
        )
    if not uri:
        domains = "".join(domain_xml(s.name, bed.uuids[s.name]) for s in specs)
        bed.node.write_text(f"<node>{NODE_CPU}{domains}</node>")
    policy = (
        f'concurrency = {concurrency}\nfailure_budget = {budget}\nsnapshot_ttl = "{ttl}"\n'
        f'default_vm_duration = "{vm_duration}"\n{policy}'
    )
    text = config_text(bed, specs, port=port, rings=rings, policy=policy, group_windows=group_windows)
    text += "".join(f"\n[windows.{name}]\n{lines}\n" for name, lines in windows.items())
    if any(s.timers for s in specs):  # guests with an automatic updater: runs pause it (coexistence)
        text += '\n[autoupdates]\nmode = "coexist"\n'
    bed.config.write_text(text)
    return bed


def fake_guest_tables(roots: Mapping[str, Path], *, health_timeout: str = "5s") -> str:
    """The configuration's tail for fake guests: the ``local`` channel into each guest's root
    (``roots``: the VM's name, as ``[guests.overrides]`` keys it, -> its root) and the demo-app health
    check, the same for every bed that runs fake guests."""
    overrides = "".join(
        f'[guests.overrides."{name}"]\nlocal_root = "{root}"\n' for name, root in roots.items()
    )
    return f"""[guests]
channel = "local"
{overrides}
[[health]]
name = "demo-app"
kind = "command"
command = "{HEALTH_COMMAND}"
timeout = "{health_timeout}"
retries = 0
interval = "1s"
"""


def config_text(
    bed: DriverBed,
    specs: Sequence[GuestSpec],
    *,
    port: int,
    rings: Mapping[str, str],
    policy: str,
    group_windows: Mapping[str, str],
) -> str:
    groups = "".join(
        f'[[groups]]\nname = "{ring}"\nring = "{ring}"\nmatch = {{ names = {names!r} }}\n'.replace("'", '"')
        + (f'window = "{group_windows[ring]}"\n' if ring in group_windows else "")
        for ring in rings
        for names in [[s.name for s in specs if s.ring == ring]]
        if names
    )
    ring_tables = "".join(f"[rings.{ring}]\n{extra}\n" for ring, extra in rings.items())
    order = ", ".join(f'"{r}"' for r in rings)
    return f"""
[state]
dir = "{bed.state}"

[temporal]
mode = "embedded"
address = "127.0.0.1:{port}"
retention = "3d"

[logging]
format = "json"
level = "info"

[providers.td]
kind = "libvirt"
uri = "{bed.libvirt_uri}"

[targets]
names = {[s.name for s in specs]!r}

{groups}
[rings]
order = [{order}]
{ring_tables}
[policy]
health_deadline = "3s"
patch_timeout = "2m"
{policy}

[hosts]
enabled = false
patch = "none"

{fake_guest_tables({s.name: bed.guests[s.name].root for s in specs})}""".replace("'", '"')
