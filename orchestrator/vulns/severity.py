"""Severities: CVSS base scores (the ``cvss`` library) and distribution ratings, in one scale.

The scale is the fact store's (``orchestrator.facts.records.SEVERITIES``): critical, important,
moderate, low, and "unrated" when nothing rates the issue. Kept here too so that ``vulns`` does not
import the fact store; ``test_severity`` checks both agree.
"""

from __future__ import annotations

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

#: Most severe first; "unrated" sorts last.
SCALE = ("critical", "important", "moderate", "low", "unrated")
_RANK = {name: len(SCALE) - i for i, name in enumerate(SCALE)}

#: Distribution words -> the scale. Red Hat / SUSE / AlmaLinux / Rocky (Critical, Important,
#: Moderate, Low), Debian tracker urgencies (high, medium, low, unimportant; "**" marks an urgency
#: taken from NVD), Ubuntu priorities (critical, high, medium, low, negligible), CVSS qualitative
#: ratings (CRITICAL, HIGH, MEDIUM, LOW).
_WORDS = {
    "critical": "critical", "urgent": "critical",
    "important": "important", "high": "important",
    "moderate": "moderate", "medium": "moderate",
    "low": "low", "unimportant": "low", "negligible": "low",
}  # fmt: skip


def bucket(word: str) -> str:
    """The scale's name for a distribution's rating word ("unrated" when unknown or unassigned)."""
    return _WORDS.get(word.strip().lower().rstrip("*").strip(), "unrated")


def rank(severity: str) -> int:
    """Higher is more severe; for sorting."""
    return _RANK.get(severity, 0)


def worst(*severities: str) -> str:
    """The most severe of ``severities`` ("unrated" for none)."""
    return max(severities, key=rank, default="unrated") if severities else "unrated"


def cvss_score(vector: str) -> float | None:
    """The base score of a CVSS v2, v3.x or v4.0 vector; None when it is not a valid vector."""
    vector = vector.strip()
    try:
        if vector.startswith("CVSS:4."):
            return float(CVSS4(vector).base_score)
        if vector.startswith("CVSS:3."):
            return float(CVSS3(vector).base_score)
        if vector.startswith("AV:"):
            return float(CVSS2(vector).base_score)
    except (CVSSError, ValueError, KeyError):
        return None
    return None


def score_bucket(score: float | None) -> str:
    """CVSS v3/v4 qualitative rating of a base score, in the scale (9.0 critical, 7.0 high, 4.0 medium)."""
    if score is None:
        return "unrated"
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "important"
    if score >= 4.0:
        return "moderate"
    return "low" if score > 0 else "unrated"
