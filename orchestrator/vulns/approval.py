"""Which pending updates a run may install on a VM: its patch baseline's approved set (pure).

Input: the VM's pending updates and findings (its latest assessment), its OS family, the baseline
its group picked for that family (``[[groups]] baseline``; None: the group's ``[policy] updates``
decides, as it always did), today's date and when patchwave first saw each candidate pending.

Per pending update ``u`` of a VM with baseline ``b``, the first rule that applies decides:

1. ``u.name`` matches ``b.holds`` (a glob) -> **held** (never updated, whatever the version).
2. ``u`` matches ``b.rejected`` (a glob on the name, or ``name=version`` for that candidate) -> rejected.
3. ``u`` matches ``b.approved`` -> approved (whatever its classification, severity or age).
4. Classification: ``security`` takes updates the package manager marks as security (apt: a
   ``*-security`` origin; dnf: a security advisory; zypper: a security patch) and any update that
   fixes a finding (its candidate reaches the finding's fixed version); ``bugfix`` also takes
   updates that carry any advisory (dnf errata, zypper patches) and, on Debian-family systems
   (whose stable releases take only bug and security fixes, and apt has no advisories), every
   update; ``all`` takes every update. Not in the classification -> not approved.
5. Its **severity** is the worst of the package manager's rating and the findings it fixes
   ("unrated" when neither rates it). Fixes of a known-exploited CVE (KEV) are approved once
   ``b.approve_kev`` has passed since the fix's release ("immediately": at once) — severity and
   ``approve_after`` do not hold them back.
6. Below ``b.min_severity`` (when set) -> not approved.
7. ``b.approve_after`` (days since the fix's release): the release is the newest publication date
   of the advisories of the findings it fixes, else the day patchwave first saw that candidate
   pending on any machine of the family; unknown -> not approved while ``approve_after`` > 0.

The approved set is what the patch activity will install as exact pins (apt ``name=version``, dnf and
zypper NEVRA: :attr:`Decision.pin`); :func:`fixes` is which findings installing it fixes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from orchestrator.config.assess import BaselineSettings
from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages.base import PendingUpdate
from orchestrator.guests.patcher import pin_target
from orchestrator.model import UpdateMode
from orchestrator.vulns import severity
from orchestrator.vulns.findings import Finding
from orchestrator.vulns.versions import Ordering, at_least

ORDERINGS: dict[str, Ordering] = {"debian": "dpkg", "rhel": "rpm", "suse": "rpm"}
MANAGERS = {"debian": "apt", "rhel": "dnf", "suse": "zypper"}


@dataclass(frozen=True, slots=True)
class Decision:
    update: PendingUpdate
    approved: bool
    reason: str
    severity: str = ""  # the update's (see the module docstring); "" without a baseline
    kev: bool = False  # it fixes a known-exploited CVE
    released: str = ""  # YYYY-MM-DD of the fix's release ("" = unknown)
    cves: tuple[str, ...] = ()  # the CVEs of the findings it fixes
    family: str = "debian"

    @property
    def pin(self) -> str:
        """The exact pin that installs this candidate (apt ``name=version``, rpm NEVRA)."""
        u = self.update
        if self.family == "debian":
            return f"{u.name}={u.candidate}"
        return f"{u.name}-{u.candidate}.{u.arch}" if u.arch else f"{u.name}-{u.candidate}"


@dataclass(frozen=True)
class Approval:
    baseline: str  # "" = no baseline: the group's [policy] updates decided
    decisions: tuple[Decision, ...] = ()

    @property
    def approved(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.approved)

    @property
    def pins(self) -> tuple[str, ...]:
        return tuple(d.pin for d in self.approved)


def approve(baseline: BaselineSettings | None, pending: Sequence[PendingUpdate], findings: Sequence[Finding], *,
            family: str, today: date, first_seen: Mapping[tuple[str, str], str] | None = None,
            mode: UpdateMode = UpdateMode.ALL, pins: Sequence[str] = ()) -> Approval:  # fmt: skip
    """Every pending update with its decision (see the module docstring), in the order given."""
    if baseline is None:
        return Approval("", tuple(_by_policy(u, mode, pins, family) for u in pending))
    seen = first_seen or {}
    ordering = ORDERINGS.get(family)
    decisions = []
    for u in pending:
        fixed = _fixed_by(u, findings, ordering)
        rating = severity.worst(severity.bucket(u.severity or ""), *(f.severity for f in fixed))
        kev = any(f.kev for f in fixed)
        released = max((f.published[:10] for f in fixed if f.published), default="")
        released = released or seen.get((u.name, u.candidate), "")[:10]
        cves = tuple(sorted({f.cve for f in fixed} | set(u.cves)))
        reason, ok = _decide(baseline, u, bool(fixed), rating, kev, released, today, family)
        decisions.append(Decision(u, ok, reason, rating, kev, released, cves, family))
    return Approval(baseline.name, tuple(decisions))


def fixes(findings: Sequence[Finding], approved: Sequence[PendingUpdate], family: str) -> tuple[Finding, ...]:
    """The findings that installing ``approved`` fixes: the fix is available and an approved candidate
    of the finding's package reaches its fixed version."""
    ordering = ORDERINGS.get(family)
    if ordering is None:
        return ()
    candidates: dict[str, list[str]] = {}
    for u in approved:
        candidates.setdefault(u.name, []).append(u.candidate)
    return tuple(
        f for f in findings
        if f.fix_available and f.fixed_version
        and any(at_least(ordering, c, f.fixed_version) for c in candidates.get(f.package, ()))
    )  # fmt: skip


def _fixed_by(u: PendingUpdate, findings: Sequence[Finding], ordering: Ordering | None) -> list[Finding]:
    if ordering is None or not u.candidate:
        return []
    return [f for f in findings if f.package == u.name and f.fixed_version and at_least(ordering, u.candidate, f.fixed_version)]  # fmt: skip


def _decide(b: BaselineSettings, u: PendingUpdate, fixes_cve: bool, rating: str, kev: bool, released: str,
            today: date, family: str) -> tuple[str, bool]:  # fmt: skip
    if any(fnmatch.fnmatchcase(u.name, h) for h in b.holds):
        return "held", False
    if _listed(u, b.rejected):
        return "rejected", False
    if _listed(u, b.approved):
        return "approved by name", True
    if not _classified(b.classification, u, fixes_cve, family):
        return f"not in classification {b.classification!r}", False
    age = _age_s(released, today)
    if kev:
        if age is not None and age >= b.approve_kev_s or b.approve_kev_s == 0:
            return "fixes a known-exploited CVE", True
        return _too_young(age, b.approve_kev_s, "approve_kev"), False
    if b.min_severity and severity.rank(rating) < severity.rank(b.min_severity):
        return f"{rating} is below min_severity {b.min_severity!r}", False
    if b.approve_after_s and (age is None or age < b.approve_after_s):
        return _too_young(age, b.approve_after_s, "approve_after"), False
    return "approved by the baseline's rules", True


def _listed(u: PendingUpdate, entries: Sequence[str]) -> bool:
    for entry in entries:
        name, _, version = entry.partition("=")
        if fnmatch.fnmatchcase(u.name, name) and (not version or version == u.candidate):
            return True
    return False


def _classified(classification: str, u: PendingUpdate, fixes_cve: bool, family: str) -> bool:
    if classification == "all":
        return True
    if u.security or fixes_cve:
        return True
    return classification == "bugfix" and (bool(u.advisories) or family == "debian")


def _age_s(released: str, today: date) -> int | None:
    try:
        return (today - date.fromisoformat(released[:10])).days * 86400
    except ValueError:
        return None


def _too_young(age: int | None, wanted_s: int, key: str) -> str:
    days = -(-wanted_s // 86400)
    if age is None:
        return f"release date unknown ({key} {days}d needs it)"
    return f"released {age // 86400}d ago ({key} {days}d)"


def _by_policy(u: PendingUpdate, mode: UpdateMode, pins: Sequence[str], family: str) -> Decision:
    if mode is UpdateMode.SECURITY:
        return Decision(u, u.security, "[policy] updates = security", family=family)
    if mode is UpdateMode.PINNED:
        return Decision(u, u.name in _pinned_names(pins, family), "[policy] updates = pinned", family=family)
    return Decision(u, True, "[policy] updates = all", family=family)


def _pinned_names(pins: Sequence[str], family: str) -> set[str]:
    names = set()
    for pin in pins:
        try:
            names.add(pin_target(MANAGERS.get(family, "apt"), pin)[0])
        except PackageManagerError:
            continue  # a run refuses such a pin (invalid_selection): nothing of it is installed
    return names
