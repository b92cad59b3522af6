"""A pinned rollout's holds (``orchestrator.autoupdates.holds``): the record, the files per OS family,
the script (run for real by ``sh`` on files in a temporary directory), ``plan`` keeping them on RHEL,
``status`` expecting them, and the journal detail that says what a restore held."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.autoupdates import AutoUpdateError, plan, resolve_policy, rhel
from orchestrator.autoupdates import debian as deb
from orchestrator.autoupdates import holds as h
from orchestrator.autoupdates.change import GuestFile
from orchestrator.autoupdates.policy import AutoUpdatePolicy
from orchestrator.autoupdates.status import parse_status
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.facts.details import AutoUpdatePauseDetail
from orchestrator.guests.errors import GuestUnreachable
from orchestrator.guests.osinfo import OsInfo
from providers.base import ExecResult
from tests.support.paths import DATA

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DEBIAN = OsInfo("debian", "12", "debian", "Debian GNU/Linux 12 (bookworm)")
ROCKY = OsInfo("rocky", "9.4", "rhel", "Rocky Linux 9.4 (Blue Onyx)", ("rhel", "centos", "fedora"))
LAB_ORIGIN = "origin=patchwave-lab,codename=${distro_codename}-security,label=patchwave-lab-Security"
HELD = h.RunHolds("run-7", "web/pw-web-1", "2026-12-04T12:00:00+00:00", ("demo-app", "libssl3"))


def policy(mode: str = "coexist", *, pins: tuple[str, ...] = ()) -> AutoUpdatePolicy:
    settings = AutoUpdateSettings(mode=mode, origins=(LAB_ORIGIN,))
    return resolve_policy(settings, now=NOW, group="web", pins=pins)


# ------------------------------------------------------------------------------ record + files
def test_the_record_round_trips_and_ignores_what_is_not_a_package_name() -> None:
    assert h.parse_record(h.record_text(HELD)) == HELD
    assert h.parse_record("") is None and h.parse_record("package=x\n") is None
    tampered = h.record_text(HELD) + "package=evil; rm -rf /\n"
    assert h.parse_record(tampered) == HELD


def test_package_names_are_sorted_unique_and_what_is_not_a_name_is_set_apart() -> None:
    assert h.package_names(["libssl3", "demo-app", "libssl3"]) == (("demo-app", "libssl3"), ())
    assert h.package_names(["demo-app", '"; };']) == (("demo-app",), ('"; };',))


def test_debian_holds_are_package_blacklist_entries_in_a_file_that_sorts_after_apply_s() -> None:
    files, remove = h.hold_files("debian", HELD, None)
    assert remove == ()
    written = {f.path: f.content for f in files}
    assert set(written) == {h.RECORD, h.DEBIAN_PATH}
    # apt reads apt.conf.d in byte order and list entries add up: after 90patchwave-unattended-upgrades
    assert sorted([h.DEBIAN_PATH, deb.CONF_PATH]) == [deb.CONF_PATH, h.DEBIAN_PATH]
    lines = written[h.DEBIAN_PATH].splitlines()
    assert "Unattended-Upgrade::Package-Blacklist {" in lines
    assert '        "^demo-app$";' in lines and '        "^libssl3$";' in lines
    assert "run-7" in lines[0]


def test_a_run_without_pins_releases_the_previous_runs_holds() -> None:
    released = h.RunHolds("run-8", "web/pw-web-1", "2026-12-05T12:00:00+00:00", ())
    assert h.hold_files("debian", released, None) == ((), (h.RECORD, h.DEBIAN_PATH))
    conf = GuestFile(rhel.CONF_PATH, "conf\n")
    assert h.hold_files("rhel", released, conf) == ((conf,), (h.RECORD,))


def test_rhel_holds_go_into_automatic_conf_which_plan_renders_with_the_groups_pins() -> None:
    change = plan(ROCKY, policy(pins=("openssl-1:3.0.7-27.el9.x86_64",)), run_holds=HELD.packages)
    conf = next(f for f in change.files if f.path == rhel.CONF_PATH)
    assert "excludepkgs = openssl demo-app libssl3" in conf.content.splitlines()
    assert rhel.parse_conf([conf.content], dnf5=False)["base.excludepkgs"] == (
        "openssl",
        "demo-app",
        "libssl3",
    )
    files, remove = h.hold_files("rhel", HELD, conf)
    assert [f.path for f in files] == [h.RECORD, rhel.CONF_PATH] and remove == ()


def test_only_coexist_holds_and_debian_apply_leaves_the_run_holds_file_alone() -> None:
    security = plan(ROCKY, policy("security"), run_holds=HELD.packages)
    assert "excludepkgs" not in next(f for f in security.files if f.path == rhel.CONF_PATH).content
    debian = plan(DEBIAN, policy(), run_holds=HELD.packages)
    assert h.DEBIAN_PATH not in {f.path for f in debian.files} | set(debian.remove)
    assert "Package-Blacklist" not in next(f for f in debian.files if f.path == deb.CONF_PATH).content
    with pytest.raises(AutoUpdateError) as info:
        h.hold_files("suse", HELD, None)
    assert info.value.code == "unsupported_os"


# ------------------------------------------------------------------------------ the script
def _run(script: str) -> ExecResult:
    done = subprocess.run(["sh", "-c", script], check=False, capture_output=True, text=True, timeout=30)
    return ExecResult(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def test_the_script_writes_only_what_differs_and_removes_what_is_released(tmp_path: Path) -> None:
    record, holds_file = tmp_path / "lib" / "autoupdates.holds", tmp_path / "apt" / "91holds"
    files = (GuestFile(str(record), h.record_text(HELD)), GuestFile(str(holds_file), h.debian_text(HELD)))
    first = h.parse_hold(_run(h.hold_command(files, ())))
    assert set(first.changed) == {str(record), str(holds_file)} and not first.unchanged
    assert h.parse_record(record.read_text()) == HELD
    again = h.parse_hold(_run(h.hold_command(files, ())))
    assert not again.changed and set(again.unchanged) == {str(record), str(holds_file)}
    released = h.parse_hold(_run(h.hold_command((), (str(record), str(holds_file)))))
    assert set(released.removed) == {str(record), str(holds_file)}
    assert not record.exists() and not holds_file.exists()
    assert h.parse_hold(_run(h.hold_command((), (str(record),)))) == h.HoldReport()  # released twice = once


def test_the_record_is_removed_first_and_written_last() -> None:
    files, _ = h.hold_files("debian", HELD, None)
    script = h.hold_command(tuple(reversed(files)), ())
    assert script.index(h.DEBIAN_PATH) < script.index(h.RECORD)
    script = h.hold_command((), (h.DEBIAN_PATH, h.RECORD))
    assert script.index(h.RECORD) < script.index(h.DEBIAN_PATH)


def test_a_failed_write_is_an_error_and_a_dropped_channel_is_retryable() -> None:
    with pytest.raises(AutoUpdateError) as info:
        h.parse_hold(ExecResult(exit_code=1, stdout="", stderr="read-only file system"))
    assert (info.value.code, info.value.retryable) == ("hold_failed", False)
    with pytest.raises(GuestUnreachable) as dropped:
        h.parse_hold(ExecResult(exit_code=None, stdout="", stderr="", signal=9))
    assert dropped.value.retryable


# ------------------------------------------------------------------------------ status
def _status_with(config_extra: str, record: str) -> ExecResult:
    case = DATA / "guests" / "autoupdates" / "debian" / "status-compliant"
    meta = json.loads((case / "case.json").read_text())
    stdout = (case / "stdout.txt").read_text()
    end_of_config = "### patchwave:exit=0\n### patchwave:log"
    stdout = stdout.replace(end_of_config, config_extra + end_of_config, 1)
    stdout += f"### patchwave:run-holds\n{record}### patchwave:exit=0\n"
    return ExecResult(exit_code=meta["exit_code"], stdout=stdout, stderr="")


def _compliant_policy() -> AutoUpdatePolicy:
    meta = json.loads(
        (DATA / "guests" / "autoupdates" / "debian" / "status-compliant" / "case.json").read_text()
    )
    return AutoUpdatePolicy(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["policy"].items()})


def test_status_expects_the_run_holds_and_reports_drift_when_their_entries_are_gone() -> None:
    now = datetime(2026, 12, 4, 17, 8, 5, tzinfo=UTC)
    record = h.record_text(HELD)
    held = 'Unattended-Upgrade::Package-Blacklist:: "^demo-app$";\nUnattended-Upgrade::Package-Blacklist:: "^libssl3$";\n'
    found = parse_status(_status_with(held, record), DEBIAN, _compliant_policy(), now=now)
    assert found.run_holds == HELD and found.compliant, found.drift
    assert any("holds of run run-7" in n for n in found.notes)
    gone = parse_status(_status_with("", record), DEBIAN, _compliant_policy(), now=now)
    assert [d.item for d in gone.drift] == ["Unattended-Upgrade::Package-Blacklist"], gone.drift
    none = parse_status(_status_with("", ""), DEBIAN, _compliant_policy(), now=now)
    assert none.run_holds is None and none.compliant


# ------------------------------------------------------------------------------ the journal
def test_the_restore_detail_says_whether_holds_were_written_released_or_left_alone() -> None:
    for holds in (None, (), ("demo-app",)):
        detail = AutoUpdatePauseDetail("restored", ("apt-daily.timer",), holds=holds)
        assert AutoUpdatePauseDetail.from_json(json.loads(json.dumps(detail.to_json()))) == detail
    assert "holds" not in AutoUpdatePauseDetail("restored").to_json()
    assert AutoUpdatePauseDetail("restored", holds=()).to_json()["holds"] == []
