"""TLS verification of the vSphere adapter against our vcsim launcher.

The launcher listens on 127.0.0.2: pyVim skips certificate verification for 127.0.0.1/localhost
when it is handed no SSL context (VCSIM.md §2.1), which would make a "wrong CA" test pass for the
wrong reason. The adapter always hands pyVim a context of its own, and these tests prove it.
"""

from __future__ import annotations

import hashlib
import ssl

import pytest
import structlog

from providers.errors import AuthenticationFailed
from tests.simulators.vcsim.launcher import open_vsphere, start_or_skip

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim():
    sim = start_or_skip("-host", "2", "-vm", "2", listen="127.0.0.2:0")
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def other_sim():
    """A second launcher: its freshly generated certificate is a valid PEM that is not our server's."""
    sim = start_or_skip("-host", "2", "-vm", "2", listen="127.0.0.1:0")
    yield sim
    sim.stop()


def fingerprint(sim, algorithm) -> str:
    der = ssl.PEM_cert_to_DER_cert(sim.cert_file.read_text())
    return ":".join(f"{b:02X}" for b in algorithm(der).digest())


def connects(sim, **settings) -> bool:
    provider = open_vsphere(sim, **settings)
    try:
        return len(provider.inventory().vms) == 2
    finally:
        provider.close()


def test_listens_where_pyvim_would_otherwise_skip_nothing(sim):
    assert sim.host == "127.0.0.2"


def test_right_ca_is_accepted(sim):
    assert connects(sim)


def test_wrong_ca_is_refused(sim, other_sim):
    with pytest.raises(AuthenticationFailed) as caught:
        open_vsphere(sim, ca_file=str(other_sim.cert_file))
    assert caught.value.code == "tls"


def test_system_trust_store_refuses_a_self_signed_server(sim):
    with pytest.raises(AuthenticationFailed) as caught:
        open_vsphere(sim, ca_file=None)
    assert caught.value.code == "tls"


@pytest.mark.parametrize("algorithm", [hashlib.sha256, hashlib.sha1], ids=["sha256", "sha1"])
def test_right_pin_is_accepted(sim, algorithm):
    assert connects(sim, ca_file=None, thumbprint=fingerprint(sim, algorithm))


def test_wrong_pin_is_refused(sim, other_sim):
    with pytest.raises(AuthenticationFailed) as caught:
        open_vsphere(sim, ca_file=None, thumbprint=fingerprint(other_sim, hashlib.sha256))
    assert caught.value.code == "tls"


def test_pin_is_checked_on_every_new_connection(sim):
    # pyVmomi's own thumbprint check disables verification on the shared context after the first
    # connection; ours must still check the second, third, ... connection of the pool.
    provider = open_vsphere(sim, ca_file=None, thumbprint=fingerprint(sim, hashlib.sha256))
    try:
        context = provider.session.stub.schemeArgs["context"]
        assert context.pin == fingerprint(sim, hashlib.sha256).replace(":", "").lower()
        context.pin = "0" * 64  # as if the server's certificate had been swapped
        provider.session.stub.DropConnections()
        with pytest.raises(AuthenticationFailed) as caught:
            provider.inventory()
        assert caught.value.code == "tls"
    finally:
        provider.session.stub.DropConnections()


def test_insecure_is_an_explicit_opt_out(sim):
    assert connects(sim, ca_file=None, insecure=True)


def test_password_never_reaches_logs_or_errors(sim):
    secret = "p@ss-that-must-not-leak"
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(AuthenticationFailed) as caught:
            open_vsphere(sim, password=secret)
        assert connects(sim)
    assert logs, "the adapter logs its connection events"
    assert secret not in repr(logs)
    assert (
        secret
        not in f"{caught.value} {caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    )
