"""CVSS scores with the cvss library, and every distribution's words on one scale."""

from __future__ import annotations

import pytest

from orchestrator.facts.records import severity_bucket
from orchestrator.vulns.severity import SCALE, bucket, cvss_score, score_bucket, worst


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),  # UBUNTU-CVE-2023-4911
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),  # USN-6986-1 cves_map
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N", 8.7),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),  # CVSS v2
        ("CVSS:3.1/AV:N", None),
        ("medium", None),
    ],
)
def test_cvss_base_scores(vector: str, score: float | None) -> None:
    assert cvss_score(vector) == score


@pytest.mark.parametrize(
    ("word", "expected"),
    [("Critical", "critical"), ("Important", "important"), ("high**", "important"), ("HIGH", "important"),
     ("Moderate", "moderate"), ("medium", "moderate"), ("low**", "low"), ("unimportant", "low"),
     ("negligible", "low"), ("not yet assigned", "unrated"), ("end-of-life", "unrated"), ("", "unrated")],
)  # fmt: skip
def test_distribution_words_land_on_the_scale(word: str, expected: str) -> None:
    assert bucket(word) == expected


def test_the_scale_is_the_fact_stores() -> None:
    for word in ("Critical", "urgent", "Important", "high", "Moderate", "medium", "Low", "nonsense"):
        assert bucket(word) == severity_bucket(True, word)
    assert set(SCALE) <= {"critical", "important", "moderate", "low", "unrated", "other"}


@pytest.mark.parametrize(("score", "expected"), [(9.8, "critical"), (9.0, "critical"), (7.8, "important"),
                                                 (5.5, "moderate"), (3.1, "low"), (0.0, "unrated"), (None, "unrated")])  # fmt: skip
def test_score_buckets(score: float | None, expected: str) -> None:
    assert score_bucket(score) == expected


def test_worst() -> None:
    assert worst("low", "critical", "unrated") == "critical"
    assert worst() == "unrated"
