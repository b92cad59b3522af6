"""Property tests: parsers never raise anything but PackageManagerError, whatever the text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.osinfo import parse_os_release
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import split_sections
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.rpm import parse_nevra
from orchestrator.guests.packages.zypper import Zypper
from orchestrator.guests.reboot import kernel_flavor, kernel_version_key, parse_kernels
from providers.base import ExecResult

# Text that looks like tool output often enough to reach deep branches: real fragments mixed in.
FRAGMENTS = [
    "### patchwave:check-update",
    "### patchwave:exit=100",
    "### patchwave:exit=0",
    "### patchwave:list-updates",
    "### patchwave:list-patches",
    "### patchwave:patch-info",
    "### patchwave:rpm",
    "### patchwave:exit=7",
    "### patchwave:needs-restarting",
    "### patchwave:updateinfo-list",
    "### patchwave:updateinfo-info",
    "Inst pw [1.0] (1.1 Debian-Security:12/stable-security [all])",
    "Inst x (",
    "Unpacking a (1) over (0) ...",
    "Removing b (2) ...",
    "pw/stable-security 1.1 all [upgradable from: 1.0]",
    "reboot-required: yes",
    "pw-demo.noarch  1.1-1  updates",
    "FEDORA-1 Important/Sec. pw-1-1.noarch",
    "  Update ID: X",
    "CVEs: CVE-2024-1",
    "  Upgrading        : pw-demo-1.1-1.noarch   1/2",
    "  Cleanup   : pw-demo-1.0-1.noarch 2/2",
    "<stream>",
    "</stream>",
    "<?xml version='1.0'?>",
    '<update kind="package" name="a" edition="1">',
    '<update kind="patch" name="p" category="security">',
    "</update>",
    "<install-summary>",
    "<to-upgrade>",
    '<solvable type="package" name="a" edition="2" edition-old="1"/>',
    "<!DOCTYPE x>",
    "Information for patch P:",
    "Conflicts   : [2]",
    "    a.noarch < 2-1",
    "S | Repository | Name | Current Version | Available Version | Arch",
    "v | r | a | 1 | 2 | noarch",
    "NEEDRESTART-KSTA: 3",
    "NEEDRESTART-SVC: ssh.service",
    "PID | PPID | Command",
    "a\tnoarch\t0:1-1",
    "b\t1.0\tii ",
    "|||",
    "Could not get lock /var/lib/dpkg/lock-frontend",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=60)), max_size=25).map("\n".join)
results = st.builds(
    ExecResult,
    exit_code=st.one_of(st.none(), st.sampled_from([0, 1, 7, 100, 102, 103, 104, 200]), st.integers(-5, 300)),
    stdout=texts,
    stderr=texts,
)
PARSERS = [(pm, name) for pm in (Apt(), Dnf(), Zypper()) for name in dir(pm) if name.startswith("parse_")]


@pytest.mark.parametrize(("pm", "name"), PARSERS, ids=lambda v: v if isinstance(v, str) else v.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(result=results)
def test_parsers_raise_only_package_manager_errors(pm, name: str, result: ExecResult) -> None:
    try:
        getattr(pm, name)(result)
    except PackageManagerError as exc:
        assert exc.code and exc.message


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_pure_helpers_never_raise(text: str) -> None:
    parse_os_release(text)
    split_sections(text)
    parse_nevra(text)
    state = parse_kernels(text)
    assert isinstance(state.update_pending, bool)
    kernel_flavor(text)
    kernel_version_key(text)
