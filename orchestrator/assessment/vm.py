"""THE function that assesses one VM: :func:`assess_vm` (the CLI's thread pool and the engine's
``vm_assess_vulns`` batches both call it, nothing else assesses a VM).

1. scan the guest through its configured channel, read-only (:mod:`.guest`);
2. load from the fact store's feed cache only the records that can concern it (its OSV ecosystems,
   its Debian release, its binary and source package names; KEV whole) and match
   (:func:`orchestrator.vulns.findings.assess`);
3. record the assessment (findings, pending updates, OS family, package count, risk, round) and note
   when each pending candidate was first seen.

A guest that cannot be read is a result with a note ("not assessed: ..."), never an exception: one
guest never stops a fleet. A fact store that cannot be written raises (that is not the guest's fault).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from orchestrator.assessment.guest import GuestScan, scan_guest
from orchestrator.context import Context
from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import RoundStore
from orchestrator.facts.vulns import VulnStore
from orchestrator.guests.channel import GuestChannel
from orchestrator.guests.errors import PackageManagerError
from orchestrator.vulns import findings
from orchestrator.vulns.ecosystems import scope_for
from orchestrator.vulns.risk import risk_of
from providers.base import VmInfo, VmRef


@dataclass(frozen=True)
class VmResult:
    """One VM's assessment in counts (what crosses Temporal; the findings are in the fact store)."""

    vm: VmRef
    assessed: bool
    note: str = ""  # why it was not assessed
    os: str = ""
    assessment_id: int = 0
    packages: int = 0
    pending: int = 0
    findings: int = 0
    kev: int = 0
    critical: int = 0
    fixable: int = 0


def assess_vm(ctx: Context, vm: VmRef, info: VmInfo | None, *, round_id: str, refresh: bool = False,
              now: datetime | None = None) -> VmResult:  # fmt: skip
    """Scan ``vm`` read-only, match the cached feeds and record the assessment in ``round_id``."""
    moment = now or ctx.clock.now()
    channel: GuestChannel | None = None
    try:
        channel = ctx.guest_channel(vm, info)
        scan = scan_guest(channel, ctx.clock, refresh=refresh)
    except PackageManagerError as exc:
        if exc.code == "metadata_not_cached":
            return VmResult(vm, False, "not assessed: the guest has no package lists yet (assess --refresh)")
        return VmResult(vm, False, f"not assessed: {exc}")
    except Exception as exc:  # noqa: BLE001 - one guest's failure is a result for that guest, never raised
        ctx.log.warning("vuln_assessment_failed", vm=str(vm), error=str(exc))
        return VmResult(vm, False, f"not assessed: {exc or type(exc).__name__}")
    finally:
        if channel is not None:
            channel.close()
    return record_scan(ctx.facts, vm, scan, round_id=round_id, now=moment)


def record_scan(facts: FactStore, vm: VmRef, scan: GuestScan, *, round_id: str, now: datetime) -> VmResult:
    """Match ``scan`` with the cached feeds and record it (the part of :func:`assess_vm` after the guest)."""
    store = VulnStore(facts)
    names = {p.name for p in scan.packages} | {p.source_name for p in scan.packages}
    names |= {u.name for u in scan.pending}
    feeds = store.load(scope_for(scan.os), names)
    today: date = now.astimezone(UTC).date()
    found = findings.assess(scan.os, scan.packages, scan.pending, feeds, today=today)
    risk = risk_of(found)
    aid = store.record_assessment(
        vm, taken_at=now.astimezone(UTC).isoformat(timespec="seconds"), os=scan.os_name, findings=found,
        feeds=feeds.versions(), pending=scan.pending, family=scan.os.family, packages=len(scan.packages),
        round_id=round_id, risk=risk,
    )  # fmt: skip
    RoundStore(facts).record_candidates(scan.os.family, scan.pending)
    return VmResult(
        vm, True, os=scan.os_name, assessment_id=aid, packages=len(scan.packages), pending=len(scan.pending),
        findings=len(found), kev=sum(f.kev for f in found), critical=sum(f.severity == "critical" for f in found),
        fixable=risk.fixable,
    )  # fmt: skip
