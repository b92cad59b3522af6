"""Activity names cannot drift: what the workflows call, the retry table and the workers' registrations
are one set — ``ActivityName``. A missing or extra name anywhere fails here, not in a workflow task that
Temporal retries forever."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity

from orchestrator.config.loader import parse_settings_text
from orchestrator.context import Context
from orchestrator.engine import retry
from orchestrator.engine.activities import Activities
from orchestrator.engine.names import ActivityName
from orchestrator.facts.store import FactStore

WORKFLOWS = Path(__file__).resolve().parents[3] / "orchestrator" / "engine" / "workflows"
CONFIG = '[providers.td]\nkind = "libvirt"\nuri = "test:///default"\n'


def workflow_trees() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(WORKFLOWS.glob("*.py")):
        yield path.name, ast.parse(path.read_text(), filename=str(path))


def called_by_workflows() -> set[ActivityName]:
    """Every ``ActivityName.X`` the workflow modules mention (``call(...)``, ``check_health(...)``)."""
    return {
        ActivityName[node.attr]
        for _, tree in workflow_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ActivityName"
    }


def names_of(functions: list[Callable[..., Any]]) -> list[str]:
    return [activity._Definition.must_from_callable(fn).name for fn in functions]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[list[str], list[str]]]:
    settings = parse_settings_text(CONFIG, file=tmp_path / "patchwave.toml", environ={}, state_dir=tmp_path)
    facts = FactStore(settings.state.facts_path)
    ctx = Context(settings, facts)
    try:
        acts = Activities(ctx)
        yield names_of(acts.central()), names_of(acts.site())
    finally:
        ctx.close()
        facts.close()


def test_the_workflows_call_the_retry_table_and_the_workers_register_one_set_of_names(workers) -> None:
    central, site = workers
    registered = central + site
    assert len(registered) == len(set(registered)), "an activity is registered twice"
    assert not set(central) & set(site), "an activity is on the central and on the site queues"
    assert set(registered) == set(ActivityName)
    assert set(retry.ACTIVITIES) == set(ActivityName)
    assert called_by_workflows() == set(ActivityName)


def test_every_registered_name_is_the_enum_value_temporal_knows(workers) -> None:
    central, site = workers
    assert sorted(central + site) == sorted(name.value for name in ActivityName)


def test_workflows_call_activities_only_by_the_enum() -> None:
    for name, tree in workflow_trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0]
            if callee in ("call", "check_health", "execute_activity"):
                assert not isinstance(first, ast.Constant), (
                    f"{name}:{node.lineno} calls an activity by a string"
                )
            if callee == "execute_child_workflow":
                assert isinstance(first, ast.Attribute), (
                    f"{name}:{node.lineno} starts a child workflow by name"
                )
