"""How much one VM is at risk from what a patch can fix, and the order that follows (pure).

A VM's risk is made of its findings **whose fix is available** (``Finding.fix_available``: a pending
candidate reaches the fixed version): the number of those that are known exploited (CISA KEV), the
worst severity and the highest CVSS score among them. A finding no update fixes yet does not make a
VM more urgent to patch, so it does not count here (it is listed by ``assess`` all the same).

The order, most urgent first (:func:`order_key`): KEV fixes (more first), then the worst severity,
then the highest CVSS score, then exposure (a VM carrying one of ``[assess] exposure_tags``), then
the caller's own tie-breaker (the planner: site, name, id). A VM never assessed has no risk and
sorts after every VM with a fix to install, by exposure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.vulns import severity
from orchestrator.vulns.findings import Finding


@dataclass(frozen=True, slots=True)
class VmRisk:
    kev: int = 0  # fixable findings of known-exploited CVEs
    severity: str = ""  # worst severity of the fixable findings ("" = none)
    cvss: float | None = None  # highest CVSS base score of the fixable findings
    fixable: int = 0  # findings a pending update fixes

    def describe(self) -> str:
        if not self.fixable:
            return "nothing fixable"
        score = f", CVSS {self.cvss:.1f}" if self.cvss is not None else ""
        kev = f"{self.kev} KEV, " if self.kev else ""
        return f"{kev}{self.severity}{score} ({self.fixable} fixable)"


NO_RISK = VmRisk()


def risk_of(findings: Iterable[Finding]) -> VmRisk:
    """The risk of a VM with ``findings`` (see the module docstring)."""
    fixable = [f for f in findings if f.fix_available]
    if not fixable:
        return NO_RISK
    scores = [f.cvss_score for f in fixable if f.cvss_score is not None]
    return VmRisk(
        kev=sum(f.kev for f in fixable),
        severity=severity.worst(*(f.severity for f in fixable)),
        cvss=max(scores, default=None),
        fixable=len(fixable),
    )


def order_key(risk: VmRisk | None, *, exposed: bool) -> tuple[int, int, float, bool]:
    """Sorts most urgent first: KEV fixes, worst severity, highest CVSS, then exposed VMs."""
    risk = risk or NO_RISK
    return (
        -risk.kev,
        -severity.rank(risk.severity),
        -(risk.cvss if risk.cvss is not None else -1.0),
        not exposed,
    )
