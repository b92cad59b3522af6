"""Notifications delivered by apprise to a real local HTTP endpoint (json:// posts to 127.0.0.1).

The endpoint is a ThreadingHTTPServer recording every POST; the configuration is loaded from TOML
(URLs given by env reference), the message contexts are built from real plans and summaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.facts.store import FactStore
from orchestrator.model import (
    Plan,
    RunSummary,
    StepStatus,
    VmOutcome,
    VmPolicy,
    VmStep,
    Wave,
    WindowFit,
    vm_step_id,
)
from orchestrator.notify.notifier import Notifier
from orchestrator.notify.templates import run_context, summary_context, vm_context
from providers.base import VmRef
from tests.support.loopback import unused_port
from tests.support.receiver import Endpoint, receiving

pytestmark = pytest.mark.e2e


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with receiving() as ep:
        yield ep


def settings_for(tmp_path: Path, body: str, environ: dict[str, str]) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text('[providers.lab]\nkind = "libvirt"\nuri = "test:///default"\n' + body)
    return load_settings(path, environ=environ)


def step(name: str, owners: tuple[str, ...], group: str = "web") -> VmStep:
    ref = VmRef("lab", f"uuid-{name}", name)
    return VmStep(step_id=vm_step_id(ref), vm=ref, group=group, ring="main", policy=VmPolicy(),
                  est_duration_s=600, est_rollback_s=600, channel="ssh", window="weekend", owners=owners)  # fmt: skip


WEB1, DB1 = step("web-1", ("team-web",)), step("db-1", ("team-db", "dba-oncall"), "databases")
PLAN = Plan(
    plan_id="0123456789abcdef", created_at="2026-11-28T20:00:00+00:00", sites=("lab",), host_phase=(),
    waves=(Wave(wave_id="main:0", ring="main", index=0, vms=(WEB1, DB1), concurrency=2, window="weekend",
                est_start="2026-11-28T21:00:00+00:00"),),
    blocked=(), failure_budget=1,
    window=WindowFit(window="weekend", start="2026-11-28T21:00:00+00:00", end="2026-11-29T03:00:00+00:00",
                     cutoff="2026-11-29T02:30:00+00:00"),
)  # fmt: skip
ROLLED = VmOutcome(DB1.step_id, DB1.vm, StepStatus.ROLLED_BACK, snapshot_id="snap-7",
                   error="unhealthy after patching: postgres: inactive")  # fmt: skip
SUMMARY = RunSummary("run-42", "halted", vms=(VmOutcome(WEB1.step_id, WEB1.vm, StepStatus.SUCCEEDED), ROLLED),
                     halted_reason="failure budget exhausted: 2 VM(s) failed")  # fmt: skip


def send_a_whole_run(notifier: Notifier) -> list:
    context = run_context("run-42", PLAN, zone="Europe/Berlin")
    return [
        notifier.send("plan_published", context, run_id="run-42"),
        notifier.send("window_prenotice", {**context, "hours": "12"}, run_id="run-42"),
        notifier.send("run_started", {**context, "requested_by": "schedule"}, run_id="run-42"),
        notifier.send("vm_rolled_back", vm_context("run-42", DB1, ROLLED), run_id="run-42"),
        notifier.send("run_finished", summary_context(SUMMARY, PLAN), run_id="run-42"),
        notifier.send("run_halted", summary_context(SUMMARY, PLAN), run_id="run-42"),
    ]


def test_every_event_reaches_its_routes_with_owners_named(tmp_path: Path, endpoint: Endpoint) -> None:
    env = {
        "CHAT_URL": f"json://127.0.0.1:{endpoint.port}/chat",
        "PAGER_URL": f"json://127.0.0.1:{endpoint.port}/pager",
    }
    settings = settings_for(tmp_path, """
[notifications]
urls = [{ env = "CHAT_URL" }]
[[notifications.routes]]
urls = [{ env = "PAGER_URL" }]
events = ["vm_rolled_back", "run_halted"]
[notifications.templates.run_halted]
title = "HALT: $run_id ($failed failed, $rolled_back rolled back)"
""", env)  # fmt: skip
    facts = FactStore(tmp_path / "facts.db")
    try:
        deliveries = send_a_whole_run(Notifier(settings.notifications, facts=facts))
        recorded = [(r.action, r.ok) for r in facts.step_history("run-42", "notify")]
    finally:
        facts.close()

    assert [d.sent for d in deliveries] == [1, 1, 1, 2, 1, 2] and all(d.ok for d in deliveries)
    chat = endpoint.bodies("/chat")
    assert [b["title"] for b in chat] == [
        "patchwave: plan for run-42 published",
        "patchwave: maintenance window weekend opens in 12 h",
        "patchwave: run run-42 started",
        "patchwave: db-1 rolled back (run run-42)",
        "patchwave: run run-42 halted",
        "HALT: run-42 (0 failed, 1 rolled back)",
    ]
    assert [b["type"] for b in chat] == ["info", "info", "info", "warning", "success", "failure"]
    published, prenotice = chat[0]["message"], chat[1]["message"]
    assert "2 VM(s)" in published and "2026-11-28 22:00 CET - 2026-11-29 04:00 CET" in published
    assert "Owners: @dba-oncall @team-db @team-web" in published
    assert "opens 2026-11-28 22:00 CET" in prenotice
    rolled = chat[3]["message"]
    assert (
        "snapshot snap-7" in rolled
        and "postgres: inactive" in rolled
        and "Owners: @dba-oncall @team-db" in rolled
    )
    assert "@team-web" not in rolled  # only the rolled-back VM's owners
    pager = endpoint.bodies("/pager")
    assert [b["title"] for b in pager] == ["patchwave: db-1 rolled back (run run-42)",
                                           "HALT: run-42 (0 failed, 1 rolled back)"]  # fmt: skip
    assert "failure budget exhausted" in pager[1]["message"]
    assert recorded == [(f"notify_{e}", True) for e in ("plan_published", "window_prenotice", "run_started",
                                                        "vm_rolled_back", "run_finished", "run_halted")]  # fmt: skip


def test_a_refusing_endpoint_is_logged_and_recorded_never_raised(tmp_path: Path, endpoint: Endpoint) -> None:
    endpoint.status = 500
    secret_path = "t0ken-in-the-path-93f1"
    env = {"HOOK": f"json://127.0.0.1:{endpoint.port}/{secret_path}"}
    settings = settings_for(tmp_path, '[notifications]\nurls = [{ env = "HOOK" }]\n', env)
    facts = FactStore(tmp_path / "facts.db")
    try:
        delivery = Notifier(settings.notifications, facts=facts).send(
            "run_started", run_context("run-7", PLAN), run_id="run-7"
        )
        [record] = facts.step_history("run-7", "notify")
    finally:
        facts.close()
    assert endpoint.paths() == [f"/{secret_path}"]  # it was tried
    assert (delivery.sent, delivery.failed, delivery.ok) == (0, 1, False)
    assert delivery.errors[0].startswith("route 1 url 1 (json): ")
    assert (record.action, record.ok) == ("notify_run_started", False)
    for text in (*delivery.errors, record.error):
        assert secret_path not in text and str(endpoint.port) not in text


def test_an_unreachable_endpoint_fails_within_the_timeout(tmp_path: Path) -> None:
    port = unused_port()
    env = {"HOOK": f"json://127.0.0.1:{port}/hook"}
    settings = settings_for(tmp_path, '[notifications]\nurls = [{ env = "HOOK" }]\ntimeout = "2s"\n', env)
    delivery = Notifier(settings.notifications).send("run_halted", summary_context(SUMMARY, PLAN))
    assert (delivery.sent, delivery.failed) == (0, 1) and f"{port}" not in delivery.errors[0]


def test_events_not_routed_anywhere_send_nothing(tmp_path: Path, endpoint: Endpoint) -> None:
    env = {"HOOK": f"json://127.0.0.1:{endpoint.port}/only-halts"}
    settings = settings_for(
        tmp_path, '[notifications]\nurls = [{ env = "HOOK" }]\nevents = ["run_halted"]\n', env
    )
    notifier = Notifier(settings.notifications)
    assert notifier.send("run_started", run_context("r", PLAN)).sent == 0
    assert notifier.send("run_halted", summary_context(SUMMARY, PLAN)).sent == 1
    assert endpoint.paths() == ["/only-halts"]


def test_a_bad_event_name_is_a_failed_delivery_not_an_exception(tmp_path: Path, endpoint: Endpoint) -> None:
    env = {"HOOK": f"json://127.0.0.1:{endpoint.port}/x"}
    settings = settings_for(tmp_path, '[notifications]\nurls = [{ env = "HOOK" }]\n', env)
    delivery = Notifier(settings.notifications).send("run_exploded", {})
    assert not delivery.ok and "unknown notification event" in delivery.errors[0]
    assert endpoint.posts == []
