"""The order of a ring's VMs: most at risk first (pure; the ranking is :mod:`orchestrator.vulns.risk`).

Inside a ring (and so inside each of its waves) VMs are sorted by: fixes of known-exploited CVEs,
the worst severity and the highest CVSS score of what their pending updates fix, exposure (a
``[assess] exposure_tags`` tag), then site, name and id. Without vulnerability assessments every
key but exposure is equal, and the order is exposure, then the planner's old (site, name, id).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from orchestrator.model import VmStep
from orchestrator.vulns.risk import VmRisk, order_key


def by_risk(steps: Iterable[VmStep], risks: Mapping[str, VmRisk], exposed: Collection[str]) -> list[VmStep]:
    """``steps`` most at risk first; ``risks`` and ``exposed`` are keyed by step id."""
    return sorted(
        steps,
        key=lambda s: (
            *order_key(risks.get(s.step_id), exposed=s.step_id in exposed),
            s.vm.site,
            s.vm.name,
            s.vm.id,
        ),
    )
