"""`[hosts] patch = "none"`: a report-only hypervisor phase (e.g. the lab host is the machine we run on).

The host is planned even though its provider declares no HOST_* capability (libvirt), it is never
put into maintenance, evacuated or rebooted, and the plan says so in a note naming the reason.
"""

from __future__ import annotations

from orchestrator.model import RebootPolicy
from orchestrator.planning.hosts import REPORT_ONLY
from tests.unit.planning.test_planner import EAST, GUESTS_ONLY, codes, plan, settings

REPORT = '[hosts]\nenabled = true\npatch = "none"\nreboot = "if-required"\nevacuate = true\n'


def test_a_report_only_host_needs_no_host_capability_and_is_never_rebooted_or_evacuated() -> None:
    p = plan([EAST], settings(REPORT), capabilities={"east": GUESTS_ONLY})
    steps = p.host_steps
    assert [s.host.name for s in steps] == ["e1", "e2", "e3"]
    assert {(s.patch, s.reboot, s.evacuate) for s in steps} == {("none", RebootPolicy.NEVER, False)}
    assert codes(p) == {}  # not blocked: nothing is asked of the platform
    assert p.vm_steps  # the guests still go ahead


def test_the_plan_says_report_only_and_why_for_each_host() -> None:
    p = plan([EAST], settings(REPORT), capabilities={"east": GUESTS_ONLY})
    notes = [(w.target, w.code) for w in p.warnings if w.code == "report_only"]
    assert notes == [("east/e1", "report_only"), ("east/e2", "report_only"), ("east/e3", "report_only")]
    assert all(w.reason == REPORT_ONLY for w in p.warnings if w.code == "report_only")
    assert (
        REPORT_ONLY.startswith("report only:")
        and "not put into maintenance, patched or rebooted" in REPORT_ONLY
    )


def test_a_disconnected_host_is_still_blocked_in_report_only_mode() -> None:
    from dataclasses import replace

    from providers.base import HostState

    down = replace(EAST, hosts=(replace(EAST.hosts[0], state=HostState.DISCONNECTED), *EAST.hosts[1:]))
    p = plan([down], settings(REPORT), capabilities={"east": GUESTS_ONLY})
    assert codes(p) == {"east/e1": ["host_state"]}
    assert [s.host.name for s in p.host_steps] == ["e2", "e3"]
