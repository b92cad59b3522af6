"""The notification events a configuration can name (pure, imports nothing): names, template fields, kinds.

``vuln_found`` is not a run's: the fleet assessment of ``patchwave serve`` sends it (its ``run_id`` is
the assessment round), once per CVE (:mod:`orchestrator.assessment.alerts`).

``[notifications] events`` and ``[notifications.templates.<event>]`` are validated against these;
:mod:`orchestrator.notify` renders and delivers them, and ``PatchRun`` sends them
(:mod:`orchestrator.engine.workflows.notices`; the one ``orchestrator.config`` module the
workflows may import, see ``.importlinter``).
"""

from __future__ import annotations

import enum


class NotifyEvent(enum.StrEnum):
    """A notification event, in the order a run produces them. The values are configuration
    (``events = [...]``, ``[notifications.templates.<event>]``): never rename one."""

    PLAN_PUBLISHED = "plan_published"
    WINDOW_PRENOTICE = "window_prenotice"
    RUN_STARTED = "run_started"
    VM_ROLLED_BACK = "vm_rolled_back"
    RUN_FINISHED = "run_finished"
    RUN_HALTED = "run_halted"
    VULN_FOUND = "vuln_found"  # a fleet assessment found a new critical or known-exploited CVE


_E = NotifyEvent
_RUN = ("run_id", "owners", "vms", "sites")
#: A `run --cve` run's proofs ("" for other runs); cve_lines: one line per CVE, or nothing.
_CVE = ("cves", "cve_fixed_active", "cve_pending_restart", "cve_still_open", "cve_unproven", "cve_lines")
#: The template fields of each event (keyed by the members, looked up by configuration text too).
FIELDS: dict[str, tuple[str, ...]] = {
    _E.PLAN_PUBLISHED: (*_RUN, "plan_id", "hosts", "waves", "blocked", "window", "window_start", "window_end",
                       "fits", "note", "wave_lines"),
    _E.WINDOW_PRENOTICE: (*_RUN, "window", "window_start", "window_end", "hours"),
    _E.RUN_STARTED: (*_RUN, "hosts", "waves", "window", "requested_by"),
    _E.VM_ROLLED_BACK: ("run_id", "owners", "vm", "site", "ring", "group", "error", "snapshot_id"),
    _E.RUN_FINISHED: (*_RUN, "status", "succeeded", "rolled_back", "failed", "skipped", "hosts_failed", *_CVE),
    _E.RUN_HALTED: (*_RUN, "reason", "succeeded", "rolled_back", "failed", "skipped", *_CVE),
    _E.VULN_FOUND: ("run_id", "cve", "severity", "cvss", "kev", "machines", "vm_names", "fixed_version",
                    "fixable", "published"),
}  # fmt: skip


#: apprise notify types per event ("info" | "success" | "warning" | "failure").
KINDS: dict[NotifyEvent, str] = {
    _E.PLAN_PUBLISHED: "info", _E.WINDOW_PRENOTICE: "info", _E.RUN_STARTED: "info",
    _E.VM_ROLLED_BACK: "warning", _E.RUN_FINISHED: "success", _E.RUN_HALTED: "failure",
    _E.VULN_FOUND: "warning",
}  # fmt: skip


#: The notification events, in the order a run produces them, then the fleet assessment's (the
#: configuration's default).
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = tuple(NotifyEvent)
