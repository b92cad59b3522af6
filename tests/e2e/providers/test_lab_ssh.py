"""The lab's SSH helpers (patchwave_lab.control: ssh_client, ssh_run, ssh_answers) over providers.ssh,
against the loopback OpenSSH server of tests/e2e/providers/openssh.py standing in for a lab guest's
forwarded port. The lab itself (libvirt guests) is tested by tests/e2e/lab."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from patchwave_lab import control as lab
from patchwave_lab.state import LabGuest
from providers.errors import HostKeyRejected
from tests.e2e.providers.openssh import SshServer, keygen

pytestmark = pytest.mark.e2e


@pytest.fixture
def guest(sshd: SshServer, known_hosts: Path) -> LabGuest:
    return LabGuest(
        name="pw-lab-1",
        uuid="8e0f1f5c-0000-4000-8000-000000000001",
        host="127.0.0.1",
        ssh_port=sshd.port,
        health_port=0,
        health_url="",
        user="root",
        key_file=str(sshd.client_key),
        known_hosts=str(known_hosts),
        disk="",
        console_log="",
    )


def test_ssh_run_merges_stderr_in_order_with_the_lab_environment(guest: LabGuest) -> None:
    code, output = lab.ssh_run(guest, 'echo one; echo two >&2; echo "$DEBIAN_FRONTEND $LC_ALL"; exit 4')
    assert (code, output) == (4, "one\ntwo\nnoninteractive C\n")
    assert lab.ssh_answers(guest)


def test_the_lab_refuses_a_guest_whose_host_key_it_does_not_know(guest: LabGuest, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{guest.ssh_port} {keygen(tmp_path / 'other')}\n")
    with pytest.raises(HostKeyRejected) as changed:
        lab.ssh_client(replace(guest, known_hosts=str(wrong)))
    assert changed.value.code == "host_key_mismatch"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected) as unknown:
        lab.ssh_client(replace(guest, known_hosts=str(empty)))
    assert unknown.value.code == "host_key_unknown"
    assert empty.read_text() == ""  # never trusted on first use
    assert not lab.ssh_answers(replace(guest, known_hosts=str(empty)))
