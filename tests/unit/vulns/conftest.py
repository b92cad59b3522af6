"""Fixtures shared by the vulnerability tests: the real feed excerpts of tests/data/vulns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.guests.osinfo import OsInfo, parse_os_release
from orchestrator.vulns.feeds import Feeds
from orchestrator.vulns.loading import load_feeds

DATA = Path(__file__).resolve().parents[2] / "data" / "vulns"
LOADED_AT = "2026-01-05T00:00:00+00:00"


def data(relative: str) -> Any:
    return json.loads((DATA / relative).read_text())


def os_release(**fields: str) -> OsInfo:
    return parse_os_release("\n".join(f'{k}="{v}"' for k, v in fields.items()))


def load_all() -> Feeds:
    """Every fixture: the OSV folder, both tracker excerpts and the KEV excerpt."""
    sources = [DATA / "osv", DATA / "debian-tracker" / "vunnel-excerpt.json",
               DATA / "debian-tracker" / "osv-dev-excerpt.json", DATA / "kev" / "known_exploited_vulnerabilities.json"]  # fmt: skip
    return load_feeds([str(s) for s in sources], now=lambda: LOADED_AT)


@pytest.fixture(scope="session")
def all_feeds() -> Feeds:
    return load_all()
