"""The ring_gates table: decisions on record, a retried write not doubled, forced rings for a resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.facts.store import FactStore


@pytest.fixture
def store(tmp_path: Path):
    facts = FactStore(tmp_path / "facts.db")
    yield facts
    facts.close()


def test_decisions_are_kept_in_order_and_a_retried_one_is_not_doubled(
    store: FactStore, tmp_path: Path
) -> None:
    store.record_gate(
        "run-1", "canary", "refused", decided_by="patchwave", reason="ring 'canary' … not promoted"
    )
    store.record_gate(
        "run-1", "canary", "refused", decided_by="patchwave", reason="ring 'canary' … not promoted"
    )
    assert store.forced_rings("run-1") == ()
    other = FactStore(tmp_path / "facts.db")  # another process: `patchwave approve --force`
    other.record_gate("run-1", "canary", "forced", decided_by="alice", reason="ring 'canary' … not promoted")
    other.close()
    store.record_gate("run-2", "main", "approved", decided_by="bob")
    assert [(g.ring, g.decision, g.decided_by) for g in store.gate_records("run-1")] == [
        ("canary", "refused", "patchwave"),
        ("canary", "forced", "alice"),
    ]
    assert store.forced_rings("run-1") == ("canary",) and store.forced_rings("run-2") == ()


def test_an_unknown_decision_is_a_programming_error(store: FactStore) -> None:
    with pytest.raises(ValueError, match="unknown gate decision"):
        store.record_gate("run-1", "canary", "maybe", decided_by="x")
