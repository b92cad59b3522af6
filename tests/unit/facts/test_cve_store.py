"""The record of ``run --cve`` runs in a real SQLite fact store: the target set (read per VM by
reference), the proofs (latest per key), the per-CVE summary (worst package per VM; unproven VMs),
and what the report, ``status`` and the run_finished notification show of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.assessment.cve_run import notice_context, run_view
from orchestrator.config.events import NotifyEvent
from orchestrator.config.notifications import NotificationSettings
from orchestrator.facts.cves import FIXED_ACTIVE, FIXED_PENDING_RESTART, STILL_OPEN, CveProof, CveStore
from orchestrator.facts.store import FactStore
from orchestrator.model import vm_step_id
from orchestrator.notify.templates import render
from orchestrator.reporting.cves import cve_sections, html_section, table_rows
from orchestrator.vulns.targets import CveTarget
from providers.base import VmRef

RUN, CVE, OTHER = "cve-run-1", "CVE-2099-0001", "CVE-2099-0002"
VMS = [VmRef("td", f"uuid-{n}", f"pw-{n}") for n in (1, 2, 3, 4)]


def target(vm: VmRef, cve: str = CVE, package: str = "demo-app") -> CveTarget:
    return CveTarget(vm_step_id(vm), vm, cve, package, "1.0", "1.1", "critical", cve == CVE, "2026-11-20",
                     "2026-12-04T11:00:00+00:00")  # fmt: skip


def proof(vm: VmRef, verdict: str, cve: str = CVE, package: str = "demo-app") -> CveProof:
    return CveProof(vm_step_id(vm), vm, cve, package, verdict, "1.1", "1.1", f"evidence {verdict}")


@pytest.fixture
def facts(tmp_path: Path) -> Iterator[FactStore]:
    store = FactStore(tmp_path / "facts.db")
    yield store
    store.close()


def test_the_target_set_is_replaced_by_a_second_planning_attempt_and_read_per_vm(facts: FactStore) -> None:
    store = CveStore(facts)
    store.save_run(RUN, [CVE], now_override=False, targets=[target(VMS[0]), target(VMS[1])])
    store.save_run(RUN, [CVE, OTHER], now_override=True,
                   targets=[target(VMS[0]), target(VMS[0], OTHER, "openssl")])  # fmt: skip
    run = store.run(RUN)
    assert run is not None and (run.cves, run.now_override) == ((CVE, OTHER), True)
    assert [(t.cve, t.package) for t in store.targets(RUN, vm_step_id(VMS[0]))] == [
        (CVE, "demo-app"),
        (OTHER, "openssl"),
    ]
    assert store.targets(RUN, vm_step_id(VMS[1])) == []
    assert store.run("another") is None


def test_the_summary_counts_each_vm_under_its_worst_package_and_the_latest_proof(facts: FactStore) -> None:
    store = CveStore(facts)
    targets = [target(vm) for vm in VMS] + [
        target(VMS[1], package="demo-lib"),
        target(VMS[0], OTHER, "openssl"),
    ]
    store.save_run(RUN, [CVE, OTHER], now_override=False, targets=targets)
    store.record_proofs(RUN, [proof(VMS[0], STILL_OPEN)])  # a first attempt...
    store.record_proofs(
        RUN, [proof(VMS[0], FIXED_ACTIVE), proof(VMS[0], FIXED_ACTIVE, OTHER, "openssl")]
    )  # ...retried
    store.record_proofs(
        RUN, [proof(VMS[1], FIXED_ACTIVE), proof(VMS[1], FIXED_PENDING_RESTART, package="demo-lib")]
    )
    store.record_proofs(RUN, [proof(VMS[2], STILL_OPEN)])  # VMS[3]: never proved

    [kev, other] = store.summary(RUN)
    assert (kev.cve, kev.kev, kev.severity, kev.published, kev.affected, kev.unproven) == (
        CVE, True, "critical", "2026-11-20", 4, 1)  # fmt: skip
    assert kev.verdicts == {FIXED_ACTIVE: 1, FIXED_PENDING_RESTART: 1, STILL_OPEN: 1}
    assert kev.open_on == ("td/pw-3",) and kev.first_assessed == "2026-12-04T11:00:00+00:00"
    assert (other.cve, other.affected, other.verdicts[FIXED_ACTIVE], other.unproven) == (OTHER, 1, 1, 0)
    assert store.counts(RUN) == {FIXED_ACTIVE: 2, FIXED_PENDING_RESTART: 1, STILL_OPEN: 1, "unproven": 1}
    assert len(store.proofs(RUN)) == 5 and [p.verdict for p in store.proofs(RUN, step_id=vm_step_id(VMS[0]))] == [
        FIXED_ACTIVE, FIXED_ACTIVE]  # fmt: skip

    [section, _] = cve_sections(facts, [RUN, "a-run-without-cves"])
    assert (section.fixed_on, section.pending_on, section.open_on) == (
        ("td/pw-1",),
        ("td/pw-2",),
        ("td/pw-3",),
    )
    assert table_rows([section])[0] == (RUN, CVE, "critical KEV", "2026-11-20", "4", "1: td/pw-1", "1: td/pw-2",
                                        "1: td/pw-3", "1")  # fmt: skip
    page = html_section([section])
    assert f'data-cve="{CVE}"' in page and '<td data-field="still-open">1: td/pw-3</td>' in page

    view = run_view(facts, RUN, per_page=2)
    assert view is not None and len(view.proofs) == 2 and [c.cve for c in view.cves] == [CVE, OTHER]


def test_run_finished_names_the_cves_and_where_they_are_still_open(facts: FactStore) -> None:
    store = CveStore(facts)
    store.save_run(RUN, [CVE], now_override=True, targets=[target(VMS[0]), target(VMS[2])])
    store.record_proofs(RUN, [proof(VMS[0], FIXED_ACTIVE), proof(VMS[2], STILL_OPEN)])
    context = notice_context(facts, RUN)
    assert (context["cves"], context["cve_fixed_active"], context["cve_still_open"], context["cve_unproven"]) == (
        CVE, "1", "1", "0")  # fmt: skip
    message = render(
        NotifyEvent.RUN_FINISHED, {"run_id": RUN, "status": "failed", **context}, NotificationSettings()
    )
    assert "Patch by CVE (maintenance windows overridden: --now):" in message.body
    assert (
        f"{CVE} (KEV): 2 VM(s) affected; fixed-active 1, fixed-pending-restart 0, still-open 1 (td/pw-3)"
        in message.body
    )
    assert notice_context(facts, "plain-run") == dict.fromkeys(context, "")
