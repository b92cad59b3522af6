"""The vSphere adapter's pure parts: settings validation (no pyVmomi) and the evacuation capacity
check (pyVmomi objects built offline, no vCenter).

(Pure tests; they live next to the other vSphere tests only because this issue owns no file under
tests/unit. Not marked e2e.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.settings import Secret, SettingsError
from providers.vsphere.settings import parse_settings
from tests.support.paths import REPO

PASSWORD = Secret("hunter2-vsphere")


def table(**overrides):
    raw = {"host": "vcenter.example.org", "user": "patchwave@vsphere.local", "password": PASSWORD}
    raw.update(overrides)
    return {k: v for k, v in raw.items() if v is not None}


def test_defaults_verify_tls_and_talk_to_port_443():
    s = parse_settings("dc1", table())
    assert (s.site, s.host, s.port, s.insecure, s.ca_file, s.thumbprint) == (
        "dc1",
        "vcenter.example.org",
        443,
        False,
        None,
        "",
    )
    assert (s.connect_timeout, s.task_timeout, s.page_size, s.guest_credentials) == (30.0, 1800.0, 500, False)


def test_durations_thumbprint_and_guest_credentials(tmp_path):
    pin = ":".join(["AB"] * 32)
    s = parse_settings(
        "dc1",
        table(thumbprint=pin, task_timeout="15m", connect_timeout=10, guest_user="root",
              guest_password=Secret("g"), datacenter="DC0", cluster="C0", page_size=100),
    )  # fmt: skip
    assert s.thumbprint == "ab" * 32
    assert (s.task_timeout, s.connect_timeout, s.page_size) == (900.0, 10.0, 100)
    assert s.guest_credentials and (s.datacenter, s.cluster) == ("DC0", "C0")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"host": None}, "host"),
        ({"host": "https://vc.example.org/sdk"}, "host"),
        ({"user": ""}, "user"),
        ({"password": None}, "password"),
        ({"password": "literal"}, "password"),
        ({"port": 0}, "port"),
        ({"port": "443"}, "port"),
        ({"insecure": "yes"}, "insecure"),
        ({"thumbprint": "abc"}, "thumbprint"),
        ({"thumbprint": "zz" * 32}, "thumbprint"),
        ({"insecure": True, "thumbprint": "ab" * 20}, "insecure"),
        ({"task_timeout": "soon"}, "task_timeout"),
        ({"task_timeout": 0}, "task_timeout"),
        ({"page_size": 0}, "page_size"),
        ({"guest_user": "root"}, "guest_password"),
        ({"guest_fallback": "sometimes"}, "guest_fallback"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"verify": False}, "verify"),
    ],
)
def test_invalid_settings_name_the_field_and_the_fix(overrides, field):
    with pytest.raises(SettingsError) as caught:
        parse_settings("dc1", table(**overrides))
    assert caught.value.field == field
    assert caught.value.fix
    assert PASSWORD.reveal() not in str(caught.value)


def test_ca_file_and_pin_are_exclusive(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse_settings("dc1", table(ca_file=str(ca))).ca_file == ca
    with pytest.raises(SettingsError) as caught:
        parse_settings("dc1", table(ca_file=str(ca), thumbprint="ab" * 32))
    assert caught.value.field == "thumbprint"


@given(st.binary(min_size=20, max_size=32).filter(lambda b: len(b) in (20, 32)), st.booleans(), st.booleans())
def test_any_sha1_or_sha256_fingerprint_spelling_is_accepted(digest, colons, upper):
    text = digest.hex().upper() if upper else digest.hex()
    if colons:
        text = ":".join(text[i : i + 2] for i in range(0, len(text), 2))
    assert parse_settings("dc1", table(thumbprint=text)).thumbprint == digest.hex()


def test_settings_do_not_import_pyvmomi():
    code = "import sys, providers.vsphere as v; assert 'pyVmomi' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- evacuation capacity ----------------------------------------------------------------------

GIB = 1024**3


def cluster_snapshot(hosts, vms):
    """hosts: {name: (memory GiB, state)}; vms: [(host name, MiB, powered on)]."""
    from pyVmomi import vim

    from providers.vsphere.inventory import Snapshot

    cluster = vim.ClusterComputeResource("domain-c1")
    host_props = {
        name: {"name": name, "parent": cluster, "summary.hardware.memorySize": gib * GIB,
               "runtime.connectionState": "connected" if state != "down" else "notResponding",
               "runtime.inMaintenanceMode": state == "maintenance"}
        for name, (gib, state) in hosts.items()
    }  # fmt: skip
    vm_props = {
        f"vm-{i}": {"name": f"vm-{i}", "runtime.host": vim.HostSystem(host), "summary.config.memorySizeMB": mib,
                    "runtime.powerState": "poweredOn" if on else "poweredOff"}
        for i, (host, mib, on) in enumerate(vms)
    }  # fmt: skip
    return Snapshot(hosts=host_props, vms=vm_props, clusters={"domain-c1": {"name": "C1"}}, fields={})


def refusal(hosts, vms, overcommit=1.0):
    from providers.vsphere.inventory import evacuation_refusal

    return evacuation_refusal("h0", cluster_snapshot(hosts, vms), overcommit=overcommit)


def test_evacuation_fits_on_the_other_hosts():
    assert refusal({"h0": (4, "up"), "h1": (4, "up")}, [("h0", 1024, True), ("h1", 1024, True)]) == ""


def test_nothing_to_evacuate_needs_no_target():
    assert refusal({"h0": (4, "up")}, [("h0", 1024, False)]) == ""


@pytest.mark.parametrize(
    ("hosts", "vms", "reason"),
    [
        ({"h0": (4, "up")}, [("h0", 512, True)], "no other connected host"),
        (
            {"h0": (4, "up"), "h1": (4, "maintenance"), "h2": (4, "down")},
            [("h0", 512, True)],
            "no other connected host",
        ),
        ({"h0": (64, "up"), "h1": (4, "up")}, [("h0", 8192, True)], "largest VM"),
        (
            {"h0": (8, "up"), "h1": (4, "up"), "h2": (4, "up")},
            [("h0", 3072, True)] * 3,
            "evacuation needs 9216 MiB",
        ),
    ],
    ids=["alone", "others-unavailable", "vm-too-big", "cluster-full"],
)
def test_evacuation_refusals_say_why(hosts, vms, reason):
    assert reason in refusal(hosts, vms)


def test_overcommit_widens_capacity():
    hosts, vms = {"h0": (8, "up"), "h1": (4, "up"), "h2": (4, "up")}, [("h0", 3072, True)] * 3
    assert refusal(hosts, vms, overcommit=1.5) == ""


@given(st.lists(st.tuples(st.integers(1, 4096), st.booleans()), max_size=12), st.integers(1, 64))
def test_refusal_never_blocks_what_obviously_fits(vms, target_gib):
    # one idle target with at least as much memory as everything on h0 together: always fine
    total = sum(mib for mib, _ in vms)
    hosts = {"h0": (64, "up"), "h1": (max(target_gib, total // 1024 + 1), "up")}
    assert refusal(hosts, [("h0", mib, on) for mib, on in vms]) == ""
