"""Proof per CVE after a ``run --cve`` patch: fixed-active, fixed-pending-restart or still-open, from the
fresh assessment, the installed version against the fixed one (dpkg and rpm orderings) and the restart
evidence (needrestart batch output, the kernels)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator.assessment.proof import RestartEvidence, decide, restart_evidence, summarize, verdict
from orchestrator.facts.cves import FIXED_ACTIVE, FIXED_PENDING_RESTART, STILL_OPEN
from orchestrator.vulns.targets import CveTarget
from providers.base import ExecResult, VmRef
from tests.unit.vulns.conftest import os_release

VM = VmRef("lab", "uuid-1", "web-1")
DEBIAN = os_release(ID="debian", VERSION_ID="12", PRETTY_NAME="Debian GNU/Linux 12 (bookworm)")
QUIET = RestartEvidence("needrestart")


def target(package: str = "demo-app", fixed: str = "1.1", cve: str = "CVE-2099-0001") -> CveTarget:
    return CveTarget("vm:lab:uuid-1", VM, cve, package, "1.0", fixed)


@pytest.mark.parametrize(
    ("installed", "open_now", "expected"),
    [
        ("1.1", False, FIXED_ACTIVE),
        ("1.2", False, FIXED_ACTIVE),
        ("1.1~rc1", False, STILL_OPEN),  # a tilde sorts before the release: below the fix
        ("1.0", False, STILL_OPEN),  # rolled back
        ("1.1", True, STILL_OPEN),  # the re-assessment still lists it (e.g. another feed's later fix)
        ("", False, FIXED_ACTIVE),  # the package was removed: nothing vulnerable is installed
    ],
)
def test_the_installed_version_and_the_fresh_assessment_decide_whether_it_is_fixed(
    installed: str, open_now: bool, expected: str
) -> None:
    proof = verdict(target(), installed, open_now, "dpkg", QUIET)
    assert proof.verdict == expected and proof.installed == installed and proof.fixed_version == "1.1"


def test_dpkg_revisions_and_rpm_releases_are_compared_by_their_own_rules() -> None:
    deb = target("openssl", "3.0.15-1~deb12u1")
    assert verdict(deb, "3.0.15-1~deb12u1", False, "dpkg", QUIET).verdict == FIXED_ACTIVE
    assert verdict(deb, "3.0.15-1~deb12u0", False, "dpkg", QUIET).verdict == STILL_OPEN
    assert verdict(deb, "1:3.0.0-1", False, "dpkg", QUIET).verdict == FIXED_ACTIVE  # epoch wins
    rpm = target("openssl-libs", "1:3.0.7-27.el9")
    assert verdict(rpm, "1:3.0.7-28.el9", False, "rpm", QUIET).verdict == FIXED_ACTIVE
    assert verdict(rpm, "1:3.0.7-25.el9_3", False, "rpm", QUIET).verdict == STILL_OPEN


def test_old_code_still_running_is_pending_a_restart_and_no_evidence_is_not_proof() -> None:
    stale = RestartEvidence("needrestart", stale=("demo-app.service",))
    proof = verdict(target(), "1.1", False, "dpkg", stale)
    assert proof.verdict == FIXED_PENDING_RESTART and "demo-app.service" in proof.evidence
    blind = verdict(target(), "1.1", False, "dpkg", RestartEvidence(""))
    assert blind.verdict == FIXED_PENDING_RESTART and "no restart evidence" in blind.evidence
    rebooted = verdict(target(), "1.1", False, "dpkg", RestartEvidence("", rebooted=True))
    assert rebooted.verdict == FIXED_ACTIVE and "rebooted" in rebooted.evidence
    quiet = verdict(target(), "1.1", False, "dpkg", QUIET)
    assert quiet.evidence == "demo-app 1.1 >= 1.1; needrestart: nothing runs replaced files"


def test_a_kernel_fix_is_active_only_once_the_newest_installed_kernel_runs() -> None:
    kernel = target("linux-image-6.1.0-28-amd64", "6.1.119-1")
    old = RestartEvidence("needrestart", kernel_running="6.1.0-27-amd64", kernel_newest="6.1.0-28-amd64")
    pending = verdict(kernel, "6.1.119-1", False, "dpkg", old)
    assert pending.verdict == FIXED_PENDING_RESTART and "6.1.0-27-amd64 is older" in pending.evidence
    new = RestartEvidence("needrestart", kernel_running="6.1.0-28-amd64", kernel_newest="6.1.0-28-amd64")
    assert verdict(kernel, "6.1.119-1", False, "dpkg", new).verdict == FIXED_ACTIVE
    # a stale service does not hold a kernel fix back, and the kernel does not hold a service fix back
    both = RestartEvidence("needrestart", stale=("cron.service",), kernel_running="6.1.0-28-amd64",
                           kernel_newest="6.1.0-28-amd64")  # fmt: skip
    assert verdict(kernel, "6.1.119-1", False, "dpkg", both).verdict == FIXED_ACTIVE


def test_every_target_of_a_vm_is_decided_and_the_open_ones_are_named() -> None:
    targets = [target(), target("demo-lib", "2.0"), target("openssl", "3.0.15", cve="CVE-2099-0002")]
    proofs = decide(targets, {"demo-app": "1.1", "demo-lib": "1.9", "openssl": "3.0.15"},
                    {("CVE-2099-0002", "openssl")}, "dpkg", QUIET)  # fmt: skip
    assert [p.verdict for p in proofs] == [FIXED_ACTIVE, STILL_OPEN, STILL_OPEN]
    summary = summarize(proofs)
    assert summary.proved == 3 and summary.verdicts == {FIXED_ACTIVE: 1, STILL_OPEN: 2}
    assert summary.still_open == (
        "CVE-2099-0001 (demo-lib 1.9 < 2.0 (fixed))",
        "CVE-2099-0002 (openssl 3.0.15: still listed by the re-assessment)",
    )


@dataclass
class Replies:
    """A guest channel answering each command by the first matching key (captured-style outputs)."""

    replies: dict[str, ExecResult]
    name: str = "local"

    def run(self, command: str, *, timeout: float, stdin: str | None = None) -> ExecResult:
        for key, result in self.replies.items():
            if key in command:
                return result
        raise AssertionError(f"unexpected command: {command}")

    def ping(self, *, timeout: float) -> bool:
        return True

    def close(self) -> None:
        pass


NEEDRESTART_STALE = (
    "NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-28-amd64\nNEEDRESTART-KEXP: 6.1.0-28-amd64\n"
    "NEEDRESTART-KSTA: 1\nNEEDRESTART-SVC: demo-app.service\nNEEDRESTART-SVC: cron.service\n"
)


def test_the_restart_evidence_is_read_from_needrestart_batch_output() -> None:
    channel = Replies({"needrestart": ExecResult(0, NEEDRESTART_STALE, "")})
    evidence = restart_evidence(channel, DEBIAN, [target()], rebooted=False)
    assert evidence == RestartEvidence("needrestart", ("demo-app.service", "cron.service"))
    missing = Replies({"needrestart": ExecResult(0, "patchwave: needrestart not installed\n", "")})
    assert restart_evidence(missing, DEBIAN, [target()], rebooted=True) == RestartEvidence("", rebooted=True)


def test_the_kernels_are_read_only_for_a_kernel_target() -> None:
    kernels = "6.1.0-27-amd64\n---\n/boot/vmlinuz-6.1.0-27-amd64\n/boot/vmlinuz-6.1.0-28-amd64\n"
    channel = Replies(
        {"needrestart": ExecResult(0, "NEEDRESTART-KSTA: 3\n", ""), "uname": ExecResult(0, kernels, "")}
    )
    evidence = restart_evidence(channel, DEBIAN, [target("linux-image-6.1.0-28-amd64")], rebooted=False)
    assert (evidence.stale, evidence.kernel_running, evidence.kernel_newest) == (
        (),
        "6.1.0-27-amd64",
        "6.1.0-28-amd64",
    )
    assert evidence.kernel_pending
