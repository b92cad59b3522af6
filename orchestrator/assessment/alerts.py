"""``vuln_found``: a critical (``[assess] notify_severity``) or known-exploited CVE new in the fleet.

After a fleet round, every CVE of the VMs' latest assessments that is in CISA KEV or rated at least
``notify_severity`` and not on record yet is recorded as first seen in that round
(:meth:`~orchestrator.facts.vuln_rounds.RoundStore.raise_alerts`). Each alert not delivered yet is
sent once — at most :data:`MAX_NOTICES` one by one per round, the rest in one summary notice — and
marked delivered when no destination failed (no destination routed for ``vuln_found`` counts as
delivered). A failed delivery is retried after the next round; a CVE is never announced twice, even
when it leaves the fleet and comes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.config.events import NotifyEvent
from orchestrator.config.settings import Settings
from orchestrator.facts.store import FactStore
from orchestrator.facts.vuln_rounds import Alert, CveSummary, RoundStore
from orchestrator.notify.notifier import Delivery
from orchestrator.vulns import severity

#: Alerts sent one by one per round; more are summed up in one notice.
MAX_NOTICES = 20
#: Machines named in one notice.
MAX_NAMES = 10


class Sender(Protocol):
    """What delivers a notice (:class:`orchestrator.notify.notifier.Notifier`)."""

    def send(self, event: NotifyEvent | str, context: Mapping[str, object], *, run_id: str = "",
             key: str = "") -> Delivery: ...  # fmt: skip


@dataclass(frozen=True)
class AlertCounts:
    pending: int = 0  # alerts not delivered before this round (new ones included)
    sent: int = 0  # notices delivered
    failed: int = 0  # notices that a destination refused (retried after the next round)


def send_alerts(facts: FactStore, settings: Settings, notifier: Sender, round_id: str) -> AlertCounts:
    """Record the round's new alerts and deliver every alert not delivered yet (see the module docstring)."""
    rounds = RoundStore(facts)
    alerts = rounds.raise_alerts(round_id, min_rank=severity.rank(settings.assess.notify_severity))
    if not alerts:
        return AlertCounts()
    one_by_one, summed = alerts[:MAX_NOTICES], alerts[MAX_NOTICES:]
    sent = failed = 0
    for alert in one_by_one:
        summary = rounds.cve_summary(cves=[alert.cve])
        names = [str(vm) for vm in rounds.machines_with(alert.cve, limit=MAX_NAMES + 1)]
        ok = _deliver(
            notifier, round_id, alert.cve, context(round_id, alert, summary[0] if summary else None, names)
        )
        sent, failed = sent + ok, failed + (not ok)
        if ok:
            rounds.mark_notified([alert.cve])
    if summed and _deliver(notifier, round_id, f"more:{len(summed)}", summary_context(round_id, summed)):
        sent += 1
        rounds.mark_notified(a.cve for a in summed)
    elif summed:
        failed += 1
    return AlertCounts(len(alerts), sent, failed)


def _deliver(notifier: Sender, round_id: str, key: str, values: dict[str, str]) -> bool:
    delivery = notifier.send(NotifyEvent.VULN_FOUND, values, run_id=round_id, key=f"vuln_found:{key}")
    return delivery.ok


def context(round_id: str, alert: Alert, summary: CveSummary | None, names: Sequence[str]) -> dict[str, str]:
    """The ``vuln_found`` template fields of one CVE."""
    shown = ", ".join(names[:MAX_NAMES]) + (", ..." if len(names) > MAX_NAMES else "")
    kev = "yes" + (f" (due {summary.kev_due})" if summary and summary.kev_due else "") if alert.kev else "no"
    return {
        "run_id": round_id,
        "cve": alert.cve,
        "severity": summary.severity if summary else alert.severity,
        "cvss": f"{summary.cvss:.1f}" if summary and summary.cvss is not None else "-",
        "kev": kev,
        "machines": str(summary.machines if summary else alert.machines),
        "vm_names": shown or "-",
        "fixed_version": (summary.fixed_version or f"{summary.fixed_versions} versions") if summary else "-",
        "fixable": str(summary.fixable) if summary else "0",
        "published": (summary.published[:10] if summary else "") or "-",
    }


def summary_context(round_id: str, alerts: Sequence[Alert]) -> dict[str, str]:
    """One notice for the alerts beyond :data:`MAX_NOTICES`."""
    cves = [a.cve for a in alerts]
    return {
        "run_id": round_id,
        "cve": ", ".join(cves[:MAX_NAMES])
        + (f" and {len(cves) - MAX_NAMES} more" if len(cves) > MAX_NAMES else ""),
        "severity": severity.worst(*(a.severity for a in alerts)),
        "cvss": "-",
        "kev": f"{sum(a.kev for a in alerts)} of {len(alerts)}",
        "machines": str(max(a.machines for a in alerts)),
        "vm_names": "see `patchwave assess --cached`",
        "fixed_version": "-",
        "fixable": "-",
        "published": "-",
    }
