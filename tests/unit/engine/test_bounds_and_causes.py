"""The pieces behind "bad input is bad input", one by one.

* No timeout the configuration can produce overflows: the activity options built from the longest
  ``patch_timeout``/``health_deadline`` fit ``timedelta``, and the local channel waits for (or
  refuses before starting) a command with the longest (or a longer) timeout.
* A full disk is recognised by its codes (SQLite's ``SQLITE_FULL``, ``ENOSPC``) and becomes one line
  naming the state directory and the fix; the free-space watch reads "full" as what we can write.
* A failed run's advice: the cause's own fix when it named one, ``resume`` to continue or retry.
* libvirt's refusals at connection time: bad input by code and domain, a daemon that is down not.
* Child processes get the allow-listed environment only.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import libvirt
import pytest
from temporalio.exceptions import ApplicationError

from orchestrator.cli.errors import classify
from orchestrator.engine.activities.translation import application_error, translated
from orchestrator.engine.failures import cause_of
from orchestrator.engine.names import ActivityName
from orchestrator.engine.retry import options
from orchestrator.engine.state_disk import MIN_FREE_BYTES, free_bytes, is_disk_full
from orchestrator.environment import allow_listed_environ, child_environment
from orchestrator.errors import ConfigChanged, RunFailed, StateDiskFull
from orchestrator.guests.channel import GUEST_ENV, LocalChannel
from providers.errors import EndpointInvalid, ProviderUnavailable
from providers.libvirt.connection import translate_open_error
from providers.settings import MAX_DURATION_S, MAX_TIMEOUT_S

# ------------------------------------------------------------------------------ timeouts


@pytest.mark.parametrize(
    "name", [ActivityName.VM_PATCH, ActivityName.VM_VERIFY_HEALTH, ActivityName.HOST_PATCH]
)
@pytest.mark.parametrize("seconds", [MAX_TIMEOUT_S, MAX_DURATION_S])
def test_activity_options_from_the_longest_policy_values_fit(name: ActivityName, seconds: int) -> None:
    opts = options(name, timeout_s=seconds)
    assert opts.start_to_close.total_seconds() >= seconds  # a timedelta, no OverflowError
    assert opts.retry_policy.maximum_attempts >= 1


def test_the_local_channel_waits_with_the_longest_timeout() -> None:
    assert LocalChannel().run("echo ok", timeout=MAX_TIMEOUT_S).stdout == "ok\n"


@pytest.mark.parametrize("timeout", [MAX_TIMEOUT_S + 1, 25 * 86400, float("inf"), 0, -1])
def test_the_local_channel_refuses_a_timeout_it_cannot_wait_for_before_starting(
    tmp_path: Path, timeout
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="timeout"):
        LocalChannel().run(f"touch {marker}", timeout=timeout)
    assert not marker.exists()  # nothing was started that could not be waited for


# ------------------------------------------------------------------------------ a full disk


def sqlite_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return error


def test_a_full_disk_is_recognised_by_code_not_by_text() -> None:
    assert is_disk_full(sqlite_full())
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(
        sqlite3.OperationalError("database or disk is full")
    )  # no code: not ours to guess
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_the_cli_names_the_state_directory_and_the_fix() -> None:
    line, code = classify(sqlite_full(), "/var/lib/patchwave")
    assert code == 1
    assert line == (
        "error: state: the disk of the state directory /var/lib/patchwave is full (database or disk is full) "
        "(fix: free space on that disk, then run the command again)"
    )
    other, _ = classify(
        OSError(errno.ENOSPC, "No space left on device", "/tmp/report.html"), "/var/lib/patchwave"
    )
    assert "state directory" not in other and "No space left on device: /tmp/report.html" in other


def test_an_activity_that_cannot_write_the_fact_store_fails_retryably_saying_why() -> None:
    @translated
    def records() -> None:
        raise sqlite_full()

    with pytest.raises(ApplicationError) as raised:
        records()
    assert raised.value.type == "StateDiskFull" and not raised.value.non_retryable
    assert "is full" in raised.value.message


def test_free_bytes_is_what_this_process_can_write(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    assert free is not None and free > MIN_FREE_BYTES
    assert free_bytes(tmp_path / "missing") is None


# ------------------------------------------------------------------------------ a failed run's advice


def test_a_failed_run_points_at_resume_and_the_causes_own_fix() -> None:
    planned = RunFailed("run-1", "ProviderUnavailable: vc down")
    assert planned.fix == "fix the cause named here, then `patchwave resume run-1` continues the run"
    early = planned.before_planning()
    assert early.message.startswith("failed before planning, nothing was changed: ProviderUnavailable")
    assert early.fix.endswith("then `patchwave resume run-1` retries the run")
    changed = ConfigChanged("run-1", "a" * 64, "b" * 64)
    bad = RunFailed("run-1", changed.message, bad_input=True, fix=changed.fix)
    assert bad.exit_code == 2 and bad.fix == changed.fix and str(bad).count("(fix: ") == 1


def test_an_activitys_operator_error_keeps_its_reason_and_fix_apart() -> None:
    err = application_error(ConfigChanged("run-1", "a" * 64, "b" * 64))
    cause = cause_of(err)
    assert cause.type == "ConfigChanged" and cause.fix.startswith("restore the configuration")
    assert cause.reason.startswith("resume: run run-1 was planned") and "(fix:" not in cause.reason
    full = application_error(StateDiskFull("/srv/state"))
    assert not full.non_retryable  # freeing space lets another attempt succeed


# ------------------------------------------------------------------------------ libvirt refusals


def open_error(uri: str) -> libvirt.libvirtError:
    libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
    with pytest.raises(libvirt.libvirtError) as raised:
        libvirt.open(uri)
    return raised.value


@pytest.mark.parametrize("uri", ["test:///nonexistent/node.xml", "test://", "qemu:///system?mode=bogus"])
def test_a_uri_libvirt_refuses_is_endpoint_invalid(uri: str) -> None:
    error = translate_open_error(libvirt, open_error(uri), uri=uri, site="lab")
    assert isinstance(error, EndpointInvalid) and not error.retryable and error.code == "uri"
    assert str(error).startswith(f"providers.lab.uri: libvirt cannot use {uri!r}") and "(fix: " in str(error)


def test_a_daemon_that_does_not_answer_stays_unavailable() -> None:
    uri = "qemu:///system?socket=/nonexistent/pw-libvirt-sock"
    error = translate_open_error(libvirt, open_error(uri), uri=uri, site="lab")
    assert isinstance(error, ProviderUnavailable) and error.retryable


# ------------------------------------------------------------------------------ child environments


def test_a_child_gets_the_allow_list_and_what_it_needs_only() -> None:
    ours = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": "/root", "TMPDIR": "/t",
            "PATCHWAVE_NOTIFY_URL": "json://h/secret", "VCENTER_PASSWORD": "x", "http_proxy": "http://u:p@proxy",
            "PYTHONPATH": "/src", "SSH_AUTH_SOCK": "/s"}  # fmt: skip
    assert child_environment(environ=ours) == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "HOME": "/root", "TMPDIR": "/t"
    }  # fmt: skip
    assert child_environment({"PYTHONPATH": "/lab"}, environ=ours)["PYTHONPATH"] == "/lab"
    assert child_environment(GUEST_ENV, environ={}) == dict(GUEST_ENV)


def test_a_library_imported_under_the_allow_list_sees_only_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("PATCHWAVE_NOTIFY_URL", "json://h/secret")
    with allow_listed_environ():
        assert "PATCHWAVE_NOTIFY_URL" not in os.environ and "PATH" in os.environ
    assert os.environ["PATCHWAVE_NOTIFY_URL"] == "json://h/secret"
