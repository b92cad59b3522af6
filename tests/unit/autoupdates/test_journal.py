"""The fact store's autoupdate journal: intent before the change, result after, status per VM."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.facts.autoupdates import AutoUpdateJournal
from orchestrator.facts.store import FactStore
from providers.base import VmRef

WEB = VmRef("lab", "uuid-1", "web-1")
DB = VmRef("lab", "uuid-2", "db-1")


@pytest.fixture
def journal(tmp_path: Path) -> AutoUpdateJournal:
    facts = FactStore(tmp_path / "facts.db")
    yield AutoUpdateJournal(facts)  # type: ignore[misc]
    facts.close()


def test_an_apply_is_an_intent_then_a_result_under_one_operation(journal: AutoUpdateJournal) -> None:
    planned = {
        "files": {"/etc/apt/apt.conf.d/90patchwave-unattended-upgrades": "ab12"},
        "enable": ["apt-daily.timer"],
    }
    journal.record("apply-1", WEB, "intent", mode="coexist", detail=planned)
    journal.record("apply-1", WEB, "applied", mode="coexist", ok=True, detail={"changed": ["/etc/x"]})
    records = journal.of_operation("apply-1")
    assert [(r.action, r.ok) for r in records] == [("intent", None), ("applied", True)]
    assert records[0].detail == planned and records[0].vm == WEB


def test_latest_status_per_vm_is_what_the_compliance_report_reads(journal: AutoUpdateJournal) -> None:
    journal.record("status-1", WEB, "status", mode="coexist", ok=False, detail={"drift": ["x"]})
    journal.record("status-1", DB, "status", mode="off", ok=True, detail={"drift": []})
    journal.record("status-2", WEB, "status", mode="coexist", ok=True, detail={"drift": []})
    journal.record("run-9", WEB, "paused", mode="coexist", run_id="run-9", step_id="vm:lab:uuid-1", detail={})
    latest = journal.latest("status")
    assert [(r.vm.name, r.operation, r.ok) for r in latest] == [
        ("db-1", "status-1", True),
        ("web-1", "status-2", True),
    ]
    assert [r.action for r in journal.of_vm(WEB)] == ["paused", "status", "status"]


def test_secrets_never_reach_the_journal_and_unknown_actions_are_refused(journal: AutoUpdateJournal) -> None:
    journal.record(
        "s", WEB, "status", mode="coexist", detail={"password": "hunter2", "mail": "ops@example.com"}
    )
    assert journal.latest()[0].detail == {"mail": "ops@example.com"}
    with pytest.raises(ValueError, match="unknown autoupdate action"):
        journal.record("s", WEB, "deleted", mode="coexist", detail={})
