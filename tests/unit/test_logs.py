"""Logging: structured events, JSON or console, and no secret ever reaches the output."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from orchestrator.config.settings import LoggingSettings
from orchestrator.logs import REDACTED, Redactor, configure_logging, log_file_of, stop_log_file
from providers.settings import Secret

SECRETS = [Secret("vc-Secret-123"), "pve-token-456"]


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_events_carry_name_level_time_and_bound_context() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="info"), stream=out)
    structlog.get_logger().bind(run="r1", step="vm:lab:1").info("snapshot_created", snapshot_id="s1")
    (event,) = lines(out)
    assert event["event"] == "snapshot_created"
    assert (event["level"], event["run"], event["step"], event["snapshot_id"]) == (
        "info",
        "r1",
        "vm:lab:1",
        "s1",
    )
    assert event["timestamp"].endswith("Z")


def test_the_level_filters_events() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="warning"), stream=out)
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [e["event"] for e in lines(out)] == ["loud"]


def test_known_secret_values_are_redacted_everywhere_in_an_event() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), secrets=SECRETS, stream=out)
    structlog.get_logger().info(
        "login_failed",
        url="https://u:vc-Secret-123@vc/sdk",
        detail={"note": ["token pve-token-456 rejected"]},
    )
    text = out.getvalue()
    assert "vc-Secret-123" not in text and "pve-token-456" not in text
    (event,) = lines(out)
    assert event["url"] == f"https://u:{REDACTED}@vc/sdk"
    assert event["detail"] == {"note": [f"token {REDACTED} rejected"]}


def test_secret_named_keys_are_redacted_whatever_their_value() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=out)
    structlog.get_logger().info(
        "http_request", password="p", headers={"Authorization": "Bearer abc", "Cookie": "PVEAuthCookie=xyz"},
        ticket="t", csrf_token="c", key_file="/root/.ssh/id",
    )  # fmt: skip
    (event,) = lines(out)
    assert event["password"] == event["ticket"] == event["csrf_token"] == REDACTED
    assert event["headers"] == {"Authorization": REDACTED, "Cookie": REDACTED}
    assert event["key_file"] == "/root/.ssh/id"


def test_exception_text_is_redacted() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), secrets=SECRETS, stream=out)
    try:
        raise RuntimeError("auth failed for password vc-Secret-123 (Authorization: Basic dXNlcjpwYXNz)")
    except RuntimeError:
        structlog.get_logger().exception("provider_call_failed")
    (event,) = lines(out)
    assert "RuntimeError" in event["exception"]
    assert "vc-Secret-123" not in event["exception"] and "dXNlcjpwYXNz" not in event["exception"]


def test_console_rendering_on_a_tty_is_redacted_too() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="auto"), secrets=SECRETS, stream=out, tty=True)
    try:
        raise ValueError("bad token pve-token-456")
    except ValueError:
        structlog.get_logger().exception("guest_patch_failed", vm="pw-lab-1")
    text = out.getvalue()
    assert "guest_patch_failed" in text and "vm=pw-lab-1" in text and "ValueError" in text
    assert "pve-token-456" not in text
    assert not text.lstrip().startswith("{")  # console, not JSON


def test_auto_without_a_tty_is_json() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="auto"), stream=out, tty=False)
    structlog.get_logger().warning("run_halted")
    assert lines(out)[0]["event"] == "run_halted"


def test_people_see_warnings_on_stderr_and_the_log_file_gets_every_event(tmp_path: Path) -> None:
    out, log_file = io.StringIO(), log_file_of(tmp_path)
    configure_logging(
        LoggingSettings(format="auto"), secrets=SECRETS, stream=out, tty=True, log_file=log_file
    )
    log = structlog.get_logger().bind(run="r1")
    log.info("snapshot_created", vm="pw-1")
    log.warning("guest_patch_failed", vm="pw-2", error="token pve-token-456 rejected")
    text = out.getvalue()
    assert "guest_patch_failed" in text and "snapshot_created" not in text  # info: the file only
    assert not text.lstrip().startswith("{") and "pve-token-456" not in text
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(e["event"], e["level"], e["run"]) for e in events] == [
        ("snapshot_created", "info", "r1"), ("guest_patch_failed", "warning", "r1")]  # fmt: skip
    assert "pve-token-456" not in log_file.read_text() and REDACTED in events[1]["error"]


def test_verbose_and_the_json_format_put_every_event_on_stderr(tmp_path: Path) -> None:
    for settings, verbose in (
        (LoggingSettings(format="console"), True),
        (LoggingSettings(format="json"), False),
    ):
        out = io.StringIO()
        configure_logging(settings, stream=out, log_file=log_file_of(tmp_path), verbose=verbose)
        structlog.get_logger().info("run_started")
        assert "run_started" in out.getvalue(), settings
    assert log_file_of(tmp_path).read_text().count("run_started") == 2


def test_a_log_file_that_cannot_be_written_is_said_once_and_the_command_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "patchwave.log").mkdir()  # a directory where the file should be
    out = io.StringIO()
    configure_logging(LoggingSettings(format="auto"), stream=out, tty=False, log_file=log_file_of(state))
    structlog.get_logger().error("run_failed")
    structlog.get_logger().error("run_failed_again")
    first, *events = out.getvalue().splitlines()
    assert first.startswith("warning: no log file (")
    assert [json.loads(e)["event"] for e in events] == ["run_failed", "run_failed_again"]


def test_no_state_directory_is_created_to_log_into_and_a_stopped_file_gets_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    configure_logging(
        LoggingSettings(format="auto"), stream=io.StringIO(), tty=False, log_file=log_file_of(state)
    )
    structlog.get_logger().info("plan_made")
    assert not state.exists()  # a dry run or a bad config leaves no state directory behind
    state.mkdir()
    structlog.get_logger().info("run_started")
    stop_log_file()
    structlog.get_logger().info("dry_run_done")
    assert [json.loads(line)["event"] for line in log_file_of(state).read_text().splitlines()] == [
        "run_started"
    ]


def test_short_secrets_are_redacted_only_as_whole_values() -> None:
    redactor = Redactor(["abc"])
    assert redactor.redact({"value": "abc", "text": "abcdef"}) == {"value": REDACTED, "text": "abcdef"}
