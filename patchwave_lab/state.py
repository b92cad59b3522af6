"""What a running lab is: ``<state_dir>/lab/lab.json`` and the orchestrator's ``guests.toml``.

``lab.json`` (schema 1) is :class:`LabState` as JSON: the libvirt URI, root's SSH key, the
``known_hosts`` file (one ``[127.0.0.1]:<port>`` line per guest, the host key read back through the
agent), the repo server (port, pid, directory, base URL as seen from a guest, the update last
published to every guest, ``views``: the update each guest's view offers now, and the update ->
version table), the image key, and per guest (:class:`LabGuest`): name, UUID, the forwarded SSH and
health ports on 127.0.0.1, the health URL, user, key and known_hosts paths, the overlay disk, the
console log, tags, labels and ``repo_url`` (its own view, its only apt source). ``timings`` holds the
seconds ``up`` spent. Fields added later have defaults, so older files still load.

``guests.toml`` holds one ``[overrides."pw-lab-N"]`` table per guest (``channel = "ssh"`` and the
forwarded port), the format of the orchestrator's ``[guests] overrides_file`` (patchwave_lab/configs/lab.toml).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from patchwave_lab.errors import LabError

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class LabGuest:
    name: str
    uuid: str
    host: str  # where the forwards listen (always 127.0.0.1)
    ssh_port: int
    health_port: int
    health_url: str
    user: str
    key_file: str
    known_hosts: str
    disk: str
    console_log: str
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    repo_url: str = ""  # this guest's view of the repo (its apt source), as seen from the guest


@dataclass(frozen=True, slots=True)
class LabState:
    """The content of ``lab.json``."""

    state_dir: str
    uri: str
    key_file: str
    known_hosts: str
    repo_port: int
    repo_pid: int
    repo_dir: str
    repo_url_in_guest: str
    published: str
    updates: dict[str, str | None]
    image_key: str
    kernel_version: str
    guests: tuple[LabGuest, ...]
    timings: dict[str, float]
    created_at: str
    schema_version: int = SCHEMA_VERSION
    views: dict[str, str] = field(default_factory=dict)  # guest -> the update its view offers

    def guest(self, name: str) -> LabGuest:
        for guest in self.guests:
            if guest.name == name:
                return guest
        raise LabError(f"no guest {name!r} in this lab", code="not_found")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabState:
        data = json.loads(text)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise LabError(
                f"lab.json schema {data.get('schema_version')} is not {SCHEMA_VERSION}", code="schema"
            )
        guests = tuple(LabGuest(**{**g, "tags": tuple(g["tags"])}) for g in data.pop("guests"))
        return cls(**data, guests=guests)


def lab_dir(state_dir: Path) -> Path:
    return Path(state_dir).resolve() / "lab"


def state_file(state_dir: Path) -> Path:
    return lab_dir(state_dir) / "lab.json"


def load(state_dir: Path) -> LabState:
    path = state_file(state_dir)
    if not path.exists():
        raise LabError(f"no lab in {state_dir} (missing {path}); run `lab up` first", code="not_found")
    return LabState.from_json(path.read_text())


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(state: LabState) -> None:
    """Write ``lab.json`` and ``guests.toml`` for ``state``."""
    root = lab_dir(Path(state.state_dir))
    _write_atomically(root / "lab.json", state.to_json())
    _write_atomically(root / "guests.toml", overrides_toml(state))


def overrides_toml(state: LabState) -> str:
    lines = [
        "# Written by `python -m patchwave_lab up` (removed by `down`): how to reach each lab guest.",
        "",
    ]
    for guest in state.guests:
        ssh = ", ".join(
            f"{key} = {json.dumps(value)}"  # a JSON string or integer is a valid TOML value
            for key, value in (
                ("host", guest.host),
                ("port", guest.ssh_port),
                ("user", guest.user),
                ("key_file", guest.key_file),
                ("known_hosts", guest.known_hosts),
            )
        )
        lines += [f'[overrides."{guest.name}"]', 'channel = "ssh"', f"ssh = {{ {ssh} }}", ""]
    return "\n".join(lines)
