"""The host-key policy of providers.ssh, without a network: what it decides for a host that is not
in known_hosts is told by the error's type and code (never by a message), and trust on first use
writes a host's key once, also when two clients race for the same new host."""

from __future__ import annotations

import io
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from providers.errors import HostKeyRejected, PermanentProviderError
from providers.ssh import KnownHostsPolicy, SshTarget

HOST = "[192.0.2.10]:2222"  # how known_hosts names 192.0.2.10 on a port other than 22


def new_key() -> paramiko.PKey:
    private = ed25519.Ed25519PrivateKey.generate()
    text = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    return paramiko.Ed25519Key(file_obj=io.StringIO(text))


def line(key: paramiko.PKey) -> str:
    return f"{HOST} {key.get_name()} {key.get_base64()}\n"


def target(known_hosts: Path, *, tofu: bool) -> SshTarget:
    return SshTarget("192.0.2.10", 2222, known_hosts=known_hosts, trust_on_first_use=tofu)


def test_an_unknown_host_is_refused_with_its_own_type_and_code(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with pytest.raises(HostKeyRejected) as info:
        KnownHostsPolicy(target(known_hosts, tofu=False)).missing_host_key(
            paramiko.SSHClient(), HOST, new_key()
        )
    assert info.value.code == "host_key_unknown" and not info.value.retryable
    assert info.value.target == "root@192.0.2.10:2222"
    assert not known_hosts.exists()


def test_trust_on_first_use_writes_a_new_host_once_when_two_clients_race(tmp_path: Path) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    key = new_key()
    policy = KnownHostsPolicy(target(known_hosts, tofu=True))
    first, second = paramiko.SSHClient(), paramiko.SSHClient()  # both read known_hosts before either wrote
    policy.missing_host_key(first, HOST, key)
    policy.missing_host_key(second, HOST, key)
    assert known_hosts.read_text() == line(key)
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    for client in (first, second):
        assert client.get_host_keys().lookup(HOST) == {key.get_name(): key}


def test_a_different_key_recorded_meanwhile_is_refused_even_with_trust_on_first_use(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    recorded = new_key()
    known_hosts.write_text(line(recorded))
    with pytest.raises(HostKeyRejected) as info:
        KnownHostsPolicy(target(known_hosts, tofu=True)).missing_host_key(
            paramiko.SSHClient(), HOST, new_key()
        )
    assert info.value.code == "host_key_mismatch" and not info.value.retryable
    assert known_hosts.read_text() == line(recorded)


def test_a_known_hosts_file_that_cannot_be_written_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    known_hosts = tmp_path / "not-a-directory" / "known_hosts"
    with pytest.raises(PermanentProviderError) as info:
        KnownHostsPolicy(target(known_hosts, tofu=True)).missing_host_key(
            paramiko.SSHClient(), HOST, new_key()
        )
    assert info.value.code == "known_hosts" and not isinstance(info.value, HostKeyRejected)


def test_host_key_rejected_has_exactly_two_codes() -> None:
    assert HostKeyRejected.CODES == {"host_key_unknown", "host_key_mismatch"}
    with pytest.raises(ValueError, match="host_key"):
        HostKeyRejected("refused", code="ssh_host_key")


def test_the_ssh_agent_and_the_users_own_keys_are_off_unless_asked_for() -> None:
    plain = SshTarget("192.0.2.10")
    assert (plain.allow_agent, plain.look_for_keys, plain.trust_on_first_use) == (False, False, False)
    assert plain.known_hosts_file == Path.home() / ".ssh" / "known_hosts"
