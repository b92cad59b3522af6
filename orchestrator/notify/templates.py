"""Notification messages (pure): the events, their fields, built-in templates, owners and contexts.

A message is rendered from a flat context of strings with ``string.Template`` (``$field``); a
``[notifications.templates.<event>]`` table overrides the title and/or the body. Owners come from
the VMs' labels/tags: label ``owner=team-web`` or tag ``owner:team-web`` -> ``@team-web``.
No I/O here; :mod:`orchestrator.notify` delivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from string import Template
from zoneinfo import ZoneInfo

from orchestrator.config.events import FIELDS, KINDS, NotifyEvent
from orchestrator.config.settings import NotificationSettings
from orchestrator.model import Plan, RunSummary, StepStatus, VmOutcome, VmStep

#: The built-in (title, body) of each event.
DEFAULTS: dict[NotifyEvent, tuple[str, str]] = {
    NotifyEvent.PLAN_PUBLISHED: (
        "patchwave: plan for $run_id published",
        (
            "Run $run_id will patch $vms VM(s) and $hosts host(s) on $sites in $waves wave(s).\n"
            "Window: $window $window_start - $window_end (fits: $fits). $note\n"
            "Blocked: $blocked.\n$wave_lines\nOwners: $owners"
        ),
    ),
    NotifyEvent.WINDOW_PRENOTICE: (
        "patchwave: maintenance window $window opens in $hours h",
        (
            "Window $window opens $window_start and closes $window_end.\n"
            "Run $run_id will patch $vms VM(s) on $sites then.\nOwners: $owners"
        ),
    ),
    NotifyEvent.RUN_STARTED: (
        "patchwave: run $run_id started",
        (
            "Run $run_id started ($requested_by): $vms VM(s), $hosts host(s), $waves wave(s) on $sites; "
            "window $window.\nOwners: $owners"
        ),
    ),
    NotifyEvent.VM_ROLLED_BACK: (
        "patchwave: $vm rolled back (run $run_id)",
        (
            "VM $vm on $site (ring $ring, group $group) was reverted to snapshot $snapshot_id after: $error\n"
            "Owners: $owners"
        ),
    ),
    NotifyEvent.RUN_FINISHED: (
        "patchwave: run $run_id $status",
        (
            "Run $run_id finished: $status. Succeeded $succeeded, rolled back $rolled_back, failed $failed, "
            "skipped $skipped (of $vms VM(s)); hosts failed: $hosts_failed.\nOwners: $owners$cve_lines"
        ),
    ),
    NotifyEvent.RUN_HALTED: (
        "patchwave: run $run_id HALTED",
        (
            "Run $run_id halted: $reason\nSucceeded $succeeded, rolled back $rolled_back, failed $failed, "
            "skipped $skipped (of $vms VM(s)).\nOwners: $owners$cve_lines"
        ),
    ),
    NotifyEvent.VULN_FOUND: (
        "patchwave: $cve ($severity, known exploited: $kev) on $machines machine(s)",
        (
            "$cve ($severity, CVSS $cvss, known exploited: $kev; published $published) is new in the "
            "fleet's vulnerability assessment $run_id: $machines machine(s): $vm_names.\n"
            "Fixed version: $fixed_version; the fix is available to $fixable of them."
        ),
    ),
}


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    body: str
    kind: str  # apprise notify type


def render(event: NotifyEvent, context: Mapping[str, object], settings: NotificationSettings) -> Message:
    """The event's message; unknown/missing fields stay as ``$name`` (never raises on content)."""
    if event not in FIELDS:
        raise ValueError(f"unknown notification event {event!r}; use one of {', '.join(FIELDS)}")
    title, body = DEFAULTS[event]
    custom = settings.template(event)
    if custom is not None:
        title, body = custom.title or title, custom.body or body
    values = {key: str(value) for key, value in context.items()}
    return Message(
        event=event,
        title=Template(title).safe_substitute(values),
        body=Template(body).safe_substitute(values),
        kind=KINDS[event],
    )


def mentions(owners: Iterable[str]) -> str:
    """``@team-db @team-web`` (sorted, unique), or ``nobody`` when there is no owner."""
    unique = sorted({o for o in owners if o})
    return " ".join(f"@{o}" for o in unique) if unique else "nobody"


# ------------------------------------------------------------------------------------ contexts
def local_time(iso: str, zone: str) -> str:
    """``2026-11-28 22:00 CET`` from an ISO UTC string (``""`` stays ``-``)."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def _steps_owners(steps: Iterable[VmStep]) -> str:
    return mentions(o for step in steps for o in step.owners)


def run_context(run_id: str, plan: Plan, *, zone: str = "UTC") -> dict[str, str]:
    """Fields shared by the run events (and the plan's window, shown in ``zone``)."""
    fit = plan.window
    lines = [
        f"- {w.wave_id}: {len(w.vms)} VM(s) from {local_time(w.est_start, zone)}"
        + ("" if w.fits else " (does not fit; continues in a later window)")
        for w in plan.waves
    ]
    return {
        "run_id": run_id,
        "plan_id": plan.plan_id[:12],
        "owners": _steps_owners(plan.vm_steps),
        "vms": str(len(plan.vm_steps)),
        "hosts": str(len(plan.host_steps)),
        "waves": str(len(plan.waves)),
        "sites": ", ".join(plan.sites) or "-",
        "blocked": str(len(plan.blocked)),
        "window": fit.window or "none",
        "window_start": local_time(fit.start, zone),
        "window_end": local_time(fit.end, zone),
        "fits": "yes" if fit.fits else "no",
        "note": fit.note,
        "wave_lines": "\n".join(lines),
    }


def vm_context(run_id: str, step: VmStep, outcome: VmOutcome) -> dict[str, str]:
    return {
        "run_id": run_id,
        "owners": mentions(step.owners),
        "vm": step.vm.name,
        "site": step.vm.site,
        "ring": step.ring,
        "group": step.group,
        "error": outcome.error or "-",
        "snapshot_id": outcome.snapshot_id or "-",
    }


def summary_context(summary: RunSummary, plan: Plan | None = None) -> dict[str, str]:
    owners = _steps_owners(plan.vm_steps) if plan is not None else "nobody"
    return {
        "run_id": summary.run_id,
        "owners": owners,
        "vms": str(len(summary.vms)),
        "sites": ", ".join(plan.sites) if plan is not None else "-",
        "status": summary.status,
        "reason": summary.halted_reason or "-",
        "succeeded": str(summary.count(StepStatus.SUCCEEDED)),
        "rolled_back": str(summary.count(StepStatus.ROLLED_BACK)),
        "failed": str(summary.count(StepStatus.FAILED)),
        "skipped": str(summary.count(StepStatus.SKIPPED)),
        "hosts_failed": str(sum(1 for h in summary.hosts if h.status is StepStatus.FAILED)),
        "cve_lines": "",  # a `run --cve` run's proofs (the notify activity adds them)
    }
