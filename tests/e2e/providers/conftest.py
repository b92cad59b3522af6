"""Fixtures of the SSH tests (test_ssh_client.py, test_ssh_channel.py): a real OpenSSH server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.providers.openssh import SshServer, start_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def known_hosts(sshd: SshServer, tmp_path: Path) -> Path:
    """A known_hosts file that holds the server's key."""
    path = tmp_path / "known_hosts"
    path.write_text(sshd.known_hosts_line())
    return path
