"""Notification texts (pure): owners from labels/tags, built-in and configured templates, contexts."""

from __future__ import annotations

import pytest

from orchestrator.config.events import FIELDS, NOTIFY_EVENTS
from orchestrator.config.settings import MessageTemplate, NotificationSettings
from orchestrator.model import RunSummary, StepStatus, VmOutcome
from orchestrator.notify.templates import DEFAULTS, local_time, mentions, render, summary_context
from orchestrator.planning.owners import owners_of
from providers.base import VmRef


@pytest.mark.parametrize(
    ("tags", "labels", "label", "owners"),
    [
        ((), {"owner": "team-web"}, "owner", ("team-web",)),
        (("owner:team-db", "web"), {}, "owner", ("team-db",)),
        (("owner=@ops",), {"owner": "team-web, team-db"}, "owner", ("ops", "team-db", "team-web")),
        (("team:payments",), {"owner": "x"}, "team", ("payments",)),
        (("ownerless",), {}, "owner", ()),
    ],
)
def test_owners_come_from_the_owner_label_and_tags(tags, labels, label, owners) -> None:
    assert owners_of(tags, labels, label) == owners


def test_mentions_are_sorted_unique_handles() -> None:
    assert mentions(["team-web", "team-db", "team-web"]) == "@team-db @team-web"
    assert mentions([]) == "nobody"


def test_every_event_has_a_default_template_using_only_its_fields() -> None:
    from string import Template

    assert set(DEFAULTS) == set(FIELDS) == set(NOTIFY_EVENTS)
    for event, (title, body) in DEFAULTS.items():
        for text in (title, body):
            assert set(Template(text).get_identifiers()) <= set(FIELDS[event]), event


def test_a_configured_template_overrides_title_or_body_and_missing_fields_stay_visible() -> None:
    settings = NotificationSettings(templates=(MessageTemplate("run_halted", title="HALT $run_id $nope"),))
    message = render("run_halted", {"run_id": "r-1", "reason": "budget"}, settings)
    assert message.title == "HALT r-1 $nope" and "budget" in message.body and message.kind == "failure"


def test_summary_counts_and_local_times() -> None:
    vm = VmRef("s", "1", "a")
    summary = RunSummary("r", "failed", vms=(VmOutcome("vm:s:1", vm, StepStatus.FAILED),
                                            VmOutcome("vm:s:2", vm, StepStatus.SKIPPED)))  # fmt: skip
    ctx = summary_context(summary)
    assert (ctx["failed"], ctx["skipped"], ctx["succeeded"], ctx["vms"]) == ("1", "1", "0", "2")
    assert local_time("2026-03-29T01:30:00+00:00", "Europe/Berlin") == "2026-03-29 03:30 CEST"
    assert local_time("", "UTC") == "-"
