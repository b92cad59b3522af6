"""Data-driven parser tests: real captured outputs of the autoupdates commands parse as reviewed.

Cases live under tests/data/guests/autoupdates/<family>/<case>/ (stdout.txt, stderr.txt, case.json
with the command, exit status, parser, the OS and policy the parser is given and ``now``, and
expected.json); SOURCES.md says where each came from (``capture.py`` re-creates the lab ones). The
real files the builders and parsers rely on (the unattended-upgrades package's own files, dnf's
automatic.conf files) are in ``files/``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.autoupdates import AutoUpdatePolicy, rhel
from orchestrator.autoupdates.change import parse_apply
from orchestrator.autoupdates.debian import parse_apt_config, parse_log
from orchestrator.autoupdates.pause import parse_marker, parse_pause, parse_restore
from orchestrator.autoupdates.status import parse_status
from orchestrator.guests.osinfo import OsInfo
from providers.base import ExecResult
from providers.errors import ProviderError
from tests.support.paths import DATA

HERE = DATA / "guests" / "autoupdates"
CASES = sorted(p.parent for p in HERE.glob("*/*/case.json"))


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def parse(meta: dict[str, Any], result: ExecResult) -> Any:
    """Parse ``result`` the way case.json says (also used by capture.py to write expected.json)."""
    parser = meta["parser"]
    if parser == "status":
        policy = AutoUpdatePolicy(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in meta["policy"].items()}
        )
        return parse_status(
            result, OsInfo(**_os(meta["os"])), policy, now=datetime.fromisoformat(meta["now"])
        )
    return {"apply": parse_apply, "pause": parse_pause, "restore": parse_restore}[parser](result)


def _os(raw: dict[str, Any]) -> dict[str, Any]:
    return {**raw, "id_like": tuple(raw.get("id_like", ()))}


def load(case: Path) -> tuple[dict[str, Any], ExecResult, dict[str, Any]]:
    meta = json.loads((case / "case.json").read_text())
    result = ExecResult(exit_code=meta["exit_code"], stdout=(case / "stdout.txt").read_text(),
                        stderr=(case / "stderr.txt").read_text())  # fmt: skip
    return meta, result, json.loads((case / "expected.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_capture_parses_as_expected(case: Path) -> None:
    meta, result, expected = load(case)
    if "error" in expected:
        with pytest.raises(ProviderError) as info:
            parse(meta, result)
        assert (info.value.code, info.value.retryable) == (
            expected["error"]["code"],
            expected["error"]["retryable"],
        )
    else:
        assert plain(parse(meta, result)) == expected["result"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_capture_has_recorded_provenance(case: Path) -> None:
    meta = json.loads((case / "case.json").read_text())
    assert meta["source"].strip()
    assert f"`{case.parent.name}/{case.name}`" in (HERE / "SOURCES.md").read_text()


def test_the_captures_cover_every_state_status_and_pause_report() -> None:
    names = {f"{c.parent.name}/{c.name}" for c in CASES}
    assert {"debian/status-fresh-image", "debian/status-compliant", "debian/status-drift", "debian/status-paused",
            "debian/status-running", "debian/status-after-upgrade", "debian/status-after-failed-run",
            "debian/pause-busy", "debian/pause-adopted", "debian/restore-other-run", "debian/apply-while-paused",
            "rhel/status-not-installed"} <= names  # fmt: skip


# ------------------------------------------------------------------------------ reviewed highlights
def case_status(name: str) -> Any:
    meta, result, _ = load(HERE / "debian" / name)
    return parse(meta, result)


def test_the_fresh_image_drifts_from_coexist_in_exactly_the_expected_ways() -> None:
    found = case_status("status-fresh-image-coexist")
    items = {d.item: d for d in found.drift}
    assert items["apt-daily.timer"].actual == "masked" and items["apt-daily-upgrade.timer"].actual == "masked"
    # the distribution's default list: the main archive and the old security label, not only -security
    assert (
        "origin=Debian,codename=${distro_codename},label=Debian"
        in items["Unattended-Upgrade::Origins-Pattern"].actual
    )
    assert case_status("status-fresh-image").drift == ()  # unmanaged: nothing is compared


def test_a_manual_change_shows_as_drift_and_a_pause_is_reported_not_drift() -> None:
    drift = {d.item for d in case_status("status-drift").drift}
    assert drift == {"Unattended-Upgrade::Automatic-Reboot", "apt-daily-upgrade.timer"}
    paused = case_status("status-paused")
    assert paused.drift == () and paused.paused is not None and paused.paused.run_id == "run-a"


def test_last_runs_from_the_log_and_systemd() -> None:
    running = case_status("status-running").last_run
    assert running.result == "running"
    upgraded = case_status("status-after-upgrade").last_run
    assert (upgraded.result, upgraded.packages, upgraded.error) == ("upgraded", ("demo-app",), "")
    failed = case_status("status-after-failed-run").last_run
    assert failed.result == "failed" and "Lock could not be acquired" in failed.error
    assert case_status("status-after-dry-run").last_run == failed  # a dry run is not an automatic run


def test_apt_config_dump_lists_collect_their_items() -> None:
    stdout = (HERE / "debian" / "status-fresh-image" / "stdout.txt").read_text()
    config = parse_apt_config(stdout.split("### patchwave:config\n", 1)[1].split("### patchwave:exit=", 1)[0])
    assert config["APT::Periodic::Unattended-Upgrade"] == ("1",)
    assert len(config["Unattended-Upgrade::Origins-Pattern"]) == 3
    assert (
        "Unattended-Upgrade::Package-Blacklist" not in config
    )  # the distribution's empty list is not dumped


def test_a_log_without_any_run_says_unknown() -> None:
    assert parse_log("").result == "unknown" and parse_log("").started_at == ""


def test_a_marker_without_a_run_id_is_no_marker() -> None:
    assert parse_marker("") is None and parse_marker("unit=x enabled=enabled active=active\n") is None


# ------------------------------------------------------------------------------ dnf's real files
def test_dnf4s_shipped_automatic_conf_downloads_but_does_not_apply_anything() -> None:
    effective = rhel.parse_conf([(HERE / "files" / "dnf4-automatic.conf").read_text()], dnf5=False)
    assert effective["commands.upgrade_type"] == ("default",)
    assert effective["commands.apply_updates"] == ("no",) and effective["commands.download_updates"] == (
        "yes",
    )
    assert effective["emitters.emit_via"] == ("stdio",)
    assert effective["commands.reboot_command"] == (
        "shutdown -r +5 'Rebooting after applying package updates'",
    )


def test_dnf5_reads_the_vendor_defaults_then_etc_and_patchwaves_file_wins() -> None:
    from orchestrator.autoupdates import plan, resolve_policy
    from orchestrator.config.autoupdates import AutoUpdateSettings

    vendor = (HERE / "files" / "dnf5-vendor-automatic.conf").read_text()
    assert rhel.parse_conf([vendor, "", ""], dnf5=True)["commands.apply_updates"] == ("no",)
    policy = resolve_policy(AutoUpdateSettings(mode="coexist"), now=datetime.fromisoformat("2026-12-04T00:00:00+00:00"),
                            pins=("demo-app-1.1-1.fc41.noarch",))  # fmt: skip
    ours = next(
        f.content for f in plan(OsInfo("fedora", "41", "rhel"), policy).files if f.path == rhel.CONF_PATH
    )
    effective = rhel.parse_conf([vendor, "", ours], dnf5=True)
    from orchestrator.autoupdates.findings import compare

    assert compare(effective, rhel.expectations(policy, ("demo-app",))) == ()
    assert effective["email.email_to"] == ("root",)  # vendor values we do not set stay
