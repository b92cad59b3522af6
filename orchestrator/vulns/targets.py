"""A package of a VM that a ``run --cve`` upgrades, with the fixed version its proof checks: the value
the planner (:mod:`orchestrator.planning.cve`) produces and the fact store keeps per run."""

from __future__ import annotations

from dataclasses import dataclass

from providers.base import VmRef


@dataclass(frozen=True)
class CveTarget:
    """One package of one VM that a CVE run upgrades to at least ``fixed_version``."""

    step_id: str
    vm: VmRef
    cve: str
    package: str
    installed: str  # the version the assessment saw
    fixed_version: str
    severity: str = "unrated"
    kev: bool = False
    published: str = ""  # the advisory's publication date: "since when" the fleet is exposed
    assessed_at: str = ""  # the assessment the target comes from
