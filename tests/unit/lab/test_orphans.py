"""A lab whose state directory is gone leaves domains nobody can ``lab down``: the next ``lab up`` removes
them; a live lab's domains (its state file exists) are refused, never touched. libvirt's test driver."""

from __future__ import annotations

import uuid
from pathlib import Path

import libvirt
import pytest

from patchwave_lab import control, domain
from patchwave_lab.errors import LabError
from patchwave_lab.state import state_file


def _define(conn: libvirt.virConnect, name: str, owner: Path) -> None:
    conn.defineXML(
        f"""<domain type='test'><name>{name}</name><uuid>{uuid.uuid4()}</uuid>
        <memory>65536</memory><os><type>hvm</type></os>
        <metadata><pwlab:lab xmlns:pwlab="{domain.LAB_NS}" owner="{owner}"/></metadata></domain>"""
    )


def _spec(name: str, owner: Path) -> domain.GuestSpec:
    return domain.GuestSpec(
        name=name, disk=owner / "d.qcow2", ssh_port=1, health_port=2, console_log=owner / "c.log",
        owner=str(owner), tags=("lab",), labels={},
    )  # fmt: skip


@pytest.fixture
def conn() -> libvirt.virConnect:
    c = libvirt.open("test:///default")
    yield c
    c.close()


def test_a_domain_whose_lab_state_is_gone_is_removed(conn: libvirt.virConnect, tmp_path: Path) -> None:
    name = f"pw-orphan-{uuid.uuid4().hex[:6]}"
    gone = tmp_path / "deleted-lab"  # never created: its lab.json does not exist
    _define(conn, name, gone)
    assert domain.owner_of(conn.lookupByName(name)) == str(gone)
    control._refuse_foreign(conn, [_spec(name, tmp_path / "me")])
    assert name not in [d.name() for d in conn.listAllDomains(0)]


def test_a_live_labs_domain_is_refused_and_kept(conn: libvirt.virConnect, tmp_path: Path) -> None:
    name = f"pw-live-{uuid.uuid4().hex[:6]}"
    other = tmp_path / "other-lab"
    state_file(other).parent.mkdir(parents=True)
    state_file(other).write_text("{}")
    _define(conn, name, other)
    try:
        with pytest.raises(LabError, match=f"{name} exists and belongs to {other}") as caught:
            control._refuse_foreign(conn, [_spec(name, tmp_path / "me")])
        assert caught.value.code == "conflict"
        assert name in [d.name() for d in conn.listAllDomains(0)]
    finally:
        domain.destroy(conn, name)
