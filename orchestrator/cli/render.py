"""How the CLI shows things: rich tables for people, JSON for machines. No logic, no I/O but output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table

from orchestrator.dry_run import DryRun
from orchestrator.dry_run import VmPreview as DryRunVm
from orchestrator.engine.payloads import RunProgress
from orchestrator.engine.runs import RunStatus
from orchestrator.facts.store import RunRecord, SnapshotRecord
from orchestrator.model import Plan, RunSummary, StepStatus, VmOutcome, VmStep
from orchestrator.operations import PromotionView
from providers.base import Inventory

STATUS_STYLE = {
    StepStatus.PENDING: "dim",
    StepStatus.RUNNING: "cyan",
    StepStatus.SUCCEEDED: "green",
    StepStatus.ROLLED_BACK: "yellow",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "magenta",
}


def to_json(value: Any) -> str:
    def plain(v: Any) -> Any:
        if hasattr(v, "__dataclass_fields__"):
            return asdict(v)
        if isinstance(v, list | tuple):
            return [plain(i) for i in v]
        return v

    return json.dumps(plain(value), indent=2, default=str)


def inventory_tables(inventories: Sequence[Inventory]) -> list[Table]:
    tables = []
    for inv in inventories:
        hosts = Table(title=f"site {inv.site}: hosts")
        for col in ("host", "state", "failure domain", "version", "build", "VMs"):
            hosts.add_column(col)
        for h in inv.hosts:
            hosts.add_row(h.ref.name, h.state.value, h.failure_domain, h.version, h.build, str(h.running_vms))
        vms = Table(title=f"site {inv.site}: guests")
        for col in ("vm", "power", "host", "tags", "guest os", "ip", "agent"):
            vms.add_column(col)
        for v in inv.vms:
            vms.add_row(
                v.ref.name,
                v.power.value,
                v.host.name if v.host else "",
                ", ".join(v.tags),
                v.guest_os,
                ", ".join(v.ip_addresses[:2]),
                "yes" if v.agent_ready else "no",
            )
        tables += [hosts, vms]
    return tables


def plan_tables(plan: Plan) -> list[Table]:
    head = Table(title=f"plan {plan.plan_id[:12]} ({plan.created_at})", show_header=False)
    head.add_row("sites", ", ".join(plan.sites))
    head.add_row("failure budget", str(plan.failure_budget))
    for fit in plan.window_fits or (plan.window,):
        cutoff = f" (new work until {fit.cutoff})" if fit.cutoff else ""
        head.add_row("window", f"{fit.window or '(none: runs now)'} {fit.start} .. {fit.end}{cutoff}".strip())
        head.add_row("fits", "yes" if fit.fits else f"NO: {fit.note}")
    tables = [head]
    if plan.host_phase:
        hosts = Table(title="hypervisor phase (one host at a time)")
        for col in (
            "domain",
            "host",
            "patch",
            "reboot",
            "evacuate",
            "est.",
            "window",
            "worst case",
            "est. start .. end",
        ):
            hosts.add_column(col)
        for domain in plan.host_phase:
            when = f"{domain.est_start} .. {domain.est_end}" if domain.est_start else "never"
            for i, h in enumerate(domain.hosts):
                first = i == 0
                hosts.add_row(
                    domain.domain_id,
                    str(h.host),
                    "none (report only)" if h.patch == "none" else h.patch,
                    h.reboot.value,
                    str(h.evacuate),
                    f"{h.est_duration_s}s",
                    (domain.window or "(none)") if first else "",
                    f"{domain.worst_case_s}s" if first and domain.window else "",
                    when if first else "",
                )
        tables.append(hosts)
    waves = Table(title="guest waves")
    for col in ("wave", "ring", "vms", "concurrency", "soak", "approval", "window", "est. start", "fits"):
        waves.add_column(col)
    for w in plan.waves:
        names = ", ".join(s.vm.name for s in w.vms)
        waves.add_row(
            w.wave_id,
            w.ring,
            names,
            str(w.concurrency),
            f"{w.soak_s}s",
            "yes" if w.approval else "",
            w.window,
            w.est_start,
            "yes" if w.fits else "NO",
        )
    tables.append(waves)
    if plan.warnings:
        notes = Table(title="notes (not blocking)")
        for col in ("target", "code", "note"):
            notes.add_column(col)
        for warning in plan.warnings:
            notes.add_row(warning.target, warning.code, warning.reason)
        tables.append(notes)
    if plan.blocked:
        blocked = Table(title="blockers (not patched)")
        for col in ("target", "code", "reason"):
            blocked.add_column(col)
        for b in plan.blocked:
            blocked.add_row(b.target, b.code, b.reason)
        tables.append(blocked)
    return tables


def dry_run_tables(dry: DryRun) -> list[Table]:
    """``run --dry-run``: the plan, each planned VM's pending updates, what the run would do."""
    pending = Table(
        title="pending updates, listed read-only (package lists not refreshed; a run refreshes them first)"
    )
    for col in ("vm", "os", "pending", "run would apply", "updates"):
        pending.add_column(col)
    for vm in dry.vms:
        if not vm.assessed:
            pending.add_row(escape(str(vm.step.vm)), "", f"[yellow]{escape(vm.note)}[/]", "", "")
            continue
        security = sum(1 for u in vm.updates if u.security)
        names = [f"{u.name} {u.current or '(new)'}->{u.candidate}" for u in vm.updates]
        pending.add_row(
            escape(str(vm.step.vm)), escape(f"{vm.os} ({vm.manager})"), f"{len(vm.updates)} ({security} security)",
            f"{len(vm.selected)} ({vm.step.policy.update_mode.value})",
            escape(", ".join(names[:8]) + (" ..." if len(names) > 8 else "")),
        )  # fmt: skip
    tables = [*plan_tables(dry.plan), pending, _would_do(dry)]
    if dry.notes:
        notes = Table(title="notes", show_header=False)
        for note in dry.notes:
            notes.add_row(escape(note))
        tables.append(notes)
    return tables


def _would_do(dry: DryRun) -> Table:
    table = Table(title="what `patchwave run` would do (in this order)")
    for col in ("step", "target", "what"):
        table.add_column(col)
    for domain in dry.plan.host_phase:
        for h in domain.hosts:
            what = ("report only: list its pending updates" if h.patch == "none" else
                    f"maintenance{' (evacuate)' if h.evacuate else ''}, patch ({h.patch}), reboot {h.reboot.value}, "
                    "verify, exit maintenance")  # fmt: skip
            table.add_row(f"hosts {domain.domain_id}", str(h.host), what)
    previews = {vm.step.step_id: vm for vm in dry.vms}
    for wave in dry.plan.waves:
        for step in wave.vms:
            table.add_row(
                f"wave {wave.wave_id}", escape(str(step.vm)), _vm_actions(step, previews.get(step.step_id))
            )
        gates = [f"soak {_span(wave.soak_s)}, then check the ring's health"] if wave.soak_s else []
        gates += ["wait for `patchwave approve RUN`"] if wave.approval else []
        if gates:
            table.add_row(f"after {wave.wave_id}", f"ring {wave.ring}", "; ".join(gates))
    expired = ", ".join(f"{s.vm} {s.snapshot_id} (run {s.run_id}, expired {s.expires_at})"
                        for s in dry.expired_snapshots)  # fmt: skip
    table.add_row(
        "cleanup",
        ", ".join(dry.plan.sites),
        escape(f"delete expired snapshots: {expired or 'none expired now'}"),
    )
    return table


def _vm_actions(step: VmStep, vm: DryRunVm | None) -> str:
    policy = step.policy
    if vm is None or not vm.assessed:
        apply = "apply the pending updates"
    else:
        apply = f"apply {len(vm.selected)} update(s)" if vm.selected else "apply nothing (none pending now)"
    return (
        f"check health, snapshot (kept {_span(policy.snapshot_ttl_s)}), refresh lists + {apply} "
        f"({policy.update_mode.value}), reboot {policy.reboot.value}, check health "
        f"(<= {_span(policy.health_deadline_s)}), revert if unhealthy"
    )


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _since(iso: str, now: datetime) -> str:
    try:
        return _clock((now - datetime.fromisoformat(iso)).total_seconds()) if iso else ""
    except ValueError:
        return ""


def progress_waits(p: RunProgress) -> str:
    """What the run waits for now (ring, window, soak, approval), or ""."""
    waits = [f"ring {p.ring}"] if p.ring else []
    waits += (
        [f"waiting for approval of ring {p.waiting_for} (patchwave approve {p.run_id})"]
        if p.waiting_for
        else []
    )
    waits += [f"soaking until {p.soak_until}"] if p.soak_until else []
    waits += [f"paused: waiting for window {p.window_until}"] if p.window_until else []
    return ", ".join(waits)


def eta_text(p: RunProgress, now: datetime) -> str:
    eta = p.eta(now)
    if eta is None:
        return ""
    return f"ETA {eta.astimezone():%H:%M} (in {_clock((eta - now).total_seconds())}, learned durations)"


def progress_table(p: RunProgress, now: datetime | None = None) -> Table:
    """The run's counters per status, its waits and ETA in the title; one row per VM in flight (never
    every VM): its stage (snapshot -> patch -> reboot -> verify -> revert ...), time in that stage,
    time since it started against its learned estimate, channel."""
    now = now or datetime.now(UTC)
    counts = " · ".join(f"{s.value.replace('_', ' ')} {p.count(s)}" for s in StepStatus if p.count(s))
    head = [f"{p.run_id}: {p.phase}", progress_waits(p), f"VMs {p.done}/{p.total} done ({counts or 'none yet'})",
            f"failed {p.failed}/{p.failure_budget} budget", f"hosts {p.hosts_done}/{p.hosts_total}" if p.hosts_total else "",
            eta_text(p, now)]  # fmt: skip
    table = Table(title=" — ".join(part for part in head if part), title_justify="left")
    for col in ("vm", "ring", "stage", "in stage", "elapsed / est.", "channel", "note"):
        table.add_column(col)
    for vm in p.vms:
        style = STATUS_STYLE.get(vm.status, "")
        elapsed = _since(vm.started, now)
        est = f" / {_clock(vm.est_s)}" if vm.est_s and elapsed else ""
        table.add_row(
            f"{vm.site}/{vm.name}", vm.ring, f"[{style}]{escape(vm.stage or vm.status.value)}[/]",
            _since(vm.since, now), elapsed + est, vm.channel, escape(vm.note[:80]),
        )  # fmt: skip
    return table


def vm_lines(p: RunProgress, seen: dict[str, str]) -> list[str]:
    """For a pipe: one line per VM whose stage changed since ``seen`` (updated), and one per VM that
    left the set in flight (concluded: its outcome is in the counters)."""
    lines, now_in = [], {}
    for vm in p.vms:
        key = vm.step_id or f"{vm.site}/{vm.name}"
        stage = vm.stage or vm.status.value
        now_in[key] = f"{vm.site}/{vm.name}"
        if seen.get(key, "").partition("|")[0] != stage:
            via = f" via {vm.channel}" if vm.channel else ""
            lines.append(f"{vm.site}/{vm.name} [{vm.ring}] {stage}{via}")
        seen[key] = f"{stage}|{vm.site}/{vm.name}"
    for key in [k for k in seen if k not in now_in]:
        lines.append(f"{seen.pop(key).partition('|')[2]} concluded")
    return lines


def counts_line(counts: Mapping[str, int], planned: int) -> str:
    """``planned 10000: succeeded=9990 failed=2 ...`` (a run's recorded VM outcomes)."""
    shown = " ".join(f"{s.value}={counts[s.value]}" for s in StepStatus if counts.get(s.value))
    return f"planned {planned} VM(s): {shown or 'no outcome recorded yet'}"


def promotion_lines(view: PromotionView) -> list[str]:
    """The pin set a run promoted and the versions its later rings held back (none: no lines)."""
    lines = []
    pins = view.pin_set
    if pins is not None:
        lines.append(
            f"pinned promotion: pin set {pins.pin_set_id}: {len(pins.entries)} version(s) from "
            f"{pins.contributors} patched and healthy VM(s) of ring {pins.ring!r}"
            + (f" ({pins.excluded} not healthy, not counted)" if pins.excluded else "")
        )
    if view.held:
        lines.append(f"held back: {view.held} package version(s) on {view.held_vms} VM(s) (not installed)")
        for record in view.sample:
            held = record.held
            gets = f", installed {held.pinned}" if held.pinned else ""
            lines.append(f"  {record.vm}: {held.name} {held.candidate} held back{gets}: {held.reason}")
        if view.held > len(view.sample):
            lines.append(f"  ... and {view.held - len(view.sample)} more")
    return lines


def progress_line(p: RunProgress) -> str:
    counts = " ".join(f"{s.value}={p.count(s)}" for s in StepStatus if p.count(s))
    waits = f" waiting_for_approval={p.waiting_for}" if p.waiting_for else ""
    waits += f" soak_until={p.soak_until}" if p.soak_until else ""
    waits += f" window={p.window_until.replace(' ', '_')}" if p.window_until else ""
    return f"{p.run_id} phase={p.phase} ring={p.ring or '-'}{waits} {counts}".strip()


def summary_table(summary: RunSummary) -> Table:
    shown = len(summary.vms)
    more = f" (showing {shown} of {summary.vms_total} VMs: `patchwave status {summary.run_id} --page N`)"
    table = Table(
        title=f"run {summary.run_id}: {summary.status}" + (more if summary.vms_total > shown else "")
    )
    for col in ("target", "status", "snapshot", "changed", "rebooted", "error"):
        table.add_column(col)
    for h in summary.hosts:
        table.add_row(
            f"host {h.host}",
            _styled(h.status),
            "",
            h.detail or f"{h.build_before}->{h.build_after}",
            str(h.rebooted),
            h.error,
        )
    for v in summary.vms:
        table.add_row(
            str(v.vm), _styled(v.status), v.snapshot_id, str(v.packages_changed), str(v.rebooted), v.error
        )
    return table


def demo_tables(report: Any) -> list[Table]:
    """The lab demo's summary (an ``patchwave_lab.demo.DemoReport``): per VM, hosts, stage timings."""
    vms = Table(title=f"demo {report.summary.run_id}: per VM")
    for col in ("vm", "channel", "status", "packages changed", "snapshot", "reboots", "demo-app", "error"):
        vms.add_column(col)
    for v in report.vms:
        vms.add_row(
            v.name, v.channel, _styled(v.status), ", ".join(str(c) for c in v.changed) or "-", v.snapshot or "-",
            str(v.reboots), v.version or "?", v.error[:100],
        )  # fmt: skip
    tables = [vms]
    if report.hosts:
        hosts = Table(title="hypervisor phase")
        for col in ("host", "result"):
            hosts.add_column(col)
        for name, what in report.hosts:
            hosts.add_row(name, what)
        tables.append(hosts)
    stages = Table(title="stages")
    for col in ("stage", "seconds"):
        stages.add_column(col)
    for name, seconds in report.stages:
        stages.add_row(name, f"{seconds:.1f}")
    stages.add_row("total", f"{sum(s for _, s in report.stages):.1f}")
    tables.append(stages)
    return tables


def outcomes_table(title: str, outcomes: Sequence[VmOutcome]) -> Table:
    table = Table(title=title)
    for col in ("vm", "status", "snapshot", "error"):
        table.add_column(col)
    for v in outcomes:
        table.add_row(str(v.vm), _styled(v.status), v.snapshot_id, v.error)
    return table


def unplanned_status(live: RunStatus) -> str:
    """Lines for a run the engine knows and the fact store does not (it was never planned)."""
    if live.failure is not None:
        failure = live.failure
        return f"run {live.run_id}: {failure.message}\nfix: {failure.fix}"
    return f"run {live.run_id}: {live.workflow}, not planned yet (the fact store has no record of it)"


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table(title="runs")
    for col in ("run", "status", "reason", "plan", "created", "updated"):
        table.add_column(col)
    for r in runs:
        table.add_row(r.run_id, r.status, r.reason[:60], r.plan_id[:12], r.created_at, r.updated_at)
    return table


def snapshots_table(records: Sequence[SnapshotRecord]) -> Table:
    table = Table(title="snapshots recorded by patchwave")
    for col in ("run", "vm", "snapshot", "state", "created", "expires"):
        table.add_column(col)
    for s in records:
        table.add_row(s.run_id, str(s.vm), s.snapshot_id or s.name, s.state, s.created_at, s.expires_at)
    return table


def findings_table(findings: Sequence[Any]) -> Table:
    """``patchwave doctor``: the leftovers of dead runs (orchestrator.reconcile.Finding)."""
    table = Table(title=f"leftovers of runs that are no longer running: {len(findings)}")
    for col in ("#", "kind", "target", "run", "why", "--fix would"):
        table.add_column(col)
    for index, f in enumerate(findings, 1):
        table.add_row(str(index), f.kind, f.target, f.run_id, f.reason, f.action)
    return table


def _styled(status: StepStatus) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status.value}[/]"


def console(stderr: bool = False) -> Console:
    """A console for tables: the terminal's width on a TTY, wide (no wrapping) in logs and pipes."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 200)


class ProgressView:
    """Live progress of a run: a table redrawn in place on a TTY, one line per change otherwise."""

    def __init__(self) -> None:
        self._console = console()
        self._tty = self._console.is_terminal
        self._live: Live | None = None
        self._last = ""
        self._seen: dict[str, str] = {}  # VM in flight -> its stage last printed (pipe mode)
        self.latest: RunProgress | None = None

    def __enter__(self) -> Self:
        if self._tty:
            self._live = Live(console=self._console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def __call__(self, progress: RunProgress) -> None:
        self.latest = progress
        line = progress_line(progress)
        if self._live is not None:
            self._live.update(progress_table(progress))
        else:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            if line != self._last:
                self._console.print(f"{stamp} {line}", soft_wrap=True, markup=False, highlight=False)
            for vm_line in vm_lines(progress, self._seen):
                self._console.print(f"{stamp} {vm_line}", soft_wrap=True, markup=False, highlight=False)
        self._last = line


class StageView:
    """Live stages of a long command without VMs (``lab up``): on a TTY one line redrawn in place (a
    spinner, the stage, its elapsed time and the total); in a pipe one line per stage."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._console = console()
        self._live: Live | None = None
        self._stage = "starting"
        self._started = self._stage_started = time.monotonic()
        self.stages: list[tuple[str, float]] = []  # (stage, seconds) of the stages that ended

    def __rich__(self) -> Spinner:
        now = time.monotonic()
        return Spinner(
            "dots",
            f"{self._title}: {escape(self._stage)} ({_clock(now - self._stage_started)}, "
            f"total {_clock(now - self._started)})",
        )

    def __enter__(self) -> Self:
        if self._console.is_terminal:
            self._live = Live(self, console=self._console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_stage()
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _end_stage(self) -> None:
        self.stages.append((self._stage, time.monotonic() - self._stage_started))

    def __call__(self, stage: str) -> None:
        self._end_stage()
        self._stage, self._stage_started = stage, time.monotonic()
        if self._live is None:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            self._console.print(
                f"{stamp} {self._title}: {stage}", soft_wrap=True, markup=False, highlight=False
            )
