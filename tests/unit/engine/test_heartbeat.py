"""An activity called with a heartbeat timeout heartbeats from its first line to its last
(``translated``): a slow probe before its long call must not time a live attempt out (CI, stop 21: a
boot id read over a busy guest agent outlasted the 30-s heartbeat timeout before ``vm_reboot``
started heartbeating; the attempt went on rebooting while Temporal retried it). A nested
``heartbeating`` only changes the detail; one heartbeat thread runs per activity."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from orchestrator.engine.activities import heartbeat
from orchestrator.engine.activities.heartbeat import heartbeating
from orchestrator.engine.activities.translation import translated

BEAT_S = 0.02


def beat_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "patchwave-heartbeat")


@translated
def probe_then_call(seen: list[int]) -> str:
    time.sleep(15 * BEAT_S)  # the probe before the long call: no explicit heartbeating here
    seen.append(beat_threads())
    with heartbeating("the long call"):
        seen.append(beat_threads())
        time.sleep(15 * BEAT_S)
    return "done"


def environment(heartbeat_timeout: timedelta | None) -> tuple[ActivityEnvironment, list[str]]:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="vm_reboot", heartbeat_timeout=heartbeat_timeout)
    beats: list[str] = []
    env.on_heartbeat = lambda *details: beats.append(details[0] if details else "")
    return env, beats


@pytest.fixture(autouse=True)
def fast_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT_EVERY_S", BEAT_S)


def test_an_activity_with_a_heartbeat_timeout_beats_before_its_first_heartbeating() -> None:
    env, beats = environment(timedelta(seconds=30))
    seen: list[int] = []
    assert env.run(probe_then_call, seen) == "done"
    first_call = beats.index("the long call")
    assert beats[0] == "vm_reboot"  # from the activity's first line
    assert beats[:first_call].count("vm_reboot") >= 3, beats  # beats all through the probe
    assert beats[first_call:].count("the long call") >= 3, beats  # the nested detail replaces it
    assert seen == [1, 1], "one heartbeat thread per activity, nested or not"
    assert beat_threads() == 0, "the heartbeat thread ends with the activity"


def test_the_detail_reverts_to_the_outer_one_after_a_nested_heartbeating() -> None:
    env, beats = environment(timedelta(seconds=30))

    @translated
    def nested() -> None:
        with heartbeating("inner"):
            pass
        time.sleep(10 * BEAT_S)

    env.run(nested)
    inner = beats.index("inner")
    assert beats[inner + 1 :] and set(beats[inner + 1 :]) == {"vm_reboot"}, beats


def test_an_activity_without_a_heartbeat_timeout_starts_no_heartbeat_thread() -> None:
    env, beats = environment(None)

    @translated
    def short(seen: list[int]) -> None:
        seen.append(beat_threads())
        time.sleep(5 * BEAT_S)

    seen: list[int] = []
    env.run(short, seen)
    assert seen == [0] and beats == []


def test_outside_an_activity_heartbeating_does_nothing() -> None:
    with heartbeating("not in an activity"):
        assert beat_threads() == 0
