"""Data-driven parser tests: every captured real output parses to its reviewed expectation.

Each case directory under tests/data/guests/<manager>/ holds stdout.txt, stderr.txt, case.json
(command, exit status, parser, source) and expected.json. SOURCES.md in each folder says where every
case came from; a case it does not mention fails here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.zypper import Zypper
from providers.base import ExecResult
from tests.support import paths

DATA = paths.DATA / "guests"
MANAGERS = {"apt": Apt, "dnf": Dnf, "zypper": Zypper}
CASES = sorted(p.parent for p in DATA.glob("*/*/case.json"))


def plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def load(case: Path) -> tuple[dict, ExecResult, dict]:
    meta = json.loads((case / "case.json").read_text())
    result = ExecResult(
        exit_code=meta["exit_code"],
        stdout=(case / "stdout.txt").read_text(),
        stderr=(case / "stderr.txt").read_text(),
    )
    return meta, result, json.loads((case / "expected.json").read_text())


def test_every_manager_has_at_least_five_cases_with_errors_and_locks() -> None:
    for manager in MANAGERS:
        cases = [c for c in CASES if c.parent.name == manager]
        expected = [load(c)[2] for c in cases]
        assert len(cases) >= 5, manager
        assert any(e.get("error", {}).get("code") == "lock_timeout" for e in expected), manager
        assert any(e.get("error", {}).get("code") == f"{manager}_failed" for e in expected), manager


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_capture_parses_as_expected(case: Path) -> None:
    meta, result, expected = load(case)
    manager = MANAGERS[case.parent.name]()
    parse = getattr(manager, f"parse_{meta['parser']}")
    if "error" in expected:
        with pytest.raises(PackageManagerError) as info:
            parse(result)
        assert info.value.code == expected["error"]["code"]
        assert info.value.retryable is expected["error"]["retryable"]
        assert info.value.output  # the error carries a snippet of what the tool said
    else:
        assert plain(parse(result)) == expected["result"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_capture_has_recorded_provenance(case: Path) -> None:
    meta = json.loads((case / "case.json").read_text())
    assert meta["source"].strip()
    assert f"`{case.name}`" in (case.parent / "SOURCES.md").read_text()


def test_apt_security_origins_from_the_real_mirror() -> None:
    """This machine's real simulation: security is exactly the Debian-Security origin set."""
    _, result, _ = load(DATA / "apt" / "host-apt-get-s-upgrade")
    updates = {u.name: u for u in Apt().parse_updates(result)}
    origin_lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("Inst ")}
    assert set(updates) == set(origin_lines)
    for name, update in updates.items():
        assert update.security == ("Debian-Security:" in origin_lines[name]), name
    assert updates["libgcrypt20"].security  # two origins: oldstable and oldstable-security
    assert not updates["base-files"].security


def test_apt_both_listing_formats_agree() -> None:
    _, simulated, _ = load(DATA / "apt" / "host-apt-get-s-upgrade")
    _, listed, _ = load(DATA / "apt" / "host-apt-list-upgradable")
    a = {(u.name, u.current, u.candidate, u.security) for u in Apt().parse_updates(simulated)}
    b = {(u.name, u.current, u.candidate, u.security) for u in Apt().parse_updates(listed)}
    assert a == b and len(a) > 100
