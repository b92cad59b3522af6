"""The CISA KEV catalog: which CVEs are known exploited, their due dates, ransomware use."""

from __future__ import annotations

import pytest

from orchestrator.vulns.errors import FeedError
from orchestrator.vulns.kev import KevEntry, compact, parse_kev
from tests.unit.vulns.conftest import data


def test_catalog_is_read_per_cve() -> None:
    kev = parse_kev(data("kev/known_exploited_vulnerabilities.json"), origin="kev.json")
    assert kev.version == "2025.08.25" and kev.released == "2025-08-25T17:04:19.9796Z"
    assert sorted(kev.entries) == ["CVE-2017-1000253", "CVE-2021-3156", "CVE-2023-4911", "CVE-2025-48384"]
    assert kev.get("CVE-2023-4911") == KevEntry(
        "CVE-2023-4911", "GNU", "GNU C Library", "GNU C Library Buffer Overflow Vulnerability", "2023-11-21",
        "2023-12-12", False,
    )  # fmt: skip
    assert kev.entries["CVE-2017-1000253"].ransomware is True
    assert kev.get("CVE-2024-6119") is None


def test_compact_entries_read_back() -> None:
    kev = parse_kev(data("kev/known_exploited_vulnerabilities.json"), origin="kev.json")
    again = parse_kev({"catalogVersion": kev.version, "vulnerabilities": [compact(e) for e in kev.entries.values()]},
                      origin="cache")  # fmt: skip
    assert dict(again.entries) == dict(kev.entries)


@pytest.mark.parametrize(
    "raw",
    [
        {"vulnerabilities": []},
        {"catalogVersion": "1", "vulnerabilities": {}},
        {"catalogVersion": "1", "vulnerabilities": [{}]},
    ],
)
def test_bad_catalogs_are_refused(raw: object) -> None:
    with pytest.raises(FeedError):
        parse_kev(raw, origin="kev.json")
