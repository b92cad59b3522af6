"""How the CLI shows things: rich tables for people, JSON for machines. No logic, no I/O but output."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Self

from rich.console import Console
from rich.live import Live
from rich.table import Table

from orchestrator.facts import RunRecord, SnapshotRecord
from orchestrator.messages import RunProgress
from orchestrator.model import Plan, RunSummary, StepStatus, VmOutcome
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
        for col in ("domain", "host", "patch", "reboot", "evacuate", "est."):
            hosts.add_column(col)
        for domain in plan.host_phase:
            for h in domain.hosts:
                hosts.add_row(
                    domain.domain_id,
                    str(h.host),
                    "none (report only)" if h.patch == "none" else h.patch,
                    h.reboot.value,
                    str(h.evacuate),
                    f"{h.est_duration_s}s",
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
        for w in plan.warnings:
            notes.add_row(w.target, w.code, w.reason)
        tables.append(notes)
    if plan.blocked:
        blocked = Table(title="blockers (not patched)")
        for col in ("target", "code", "reason"):
            blocked.add_column(col)
        for b in plan.blocked:
            blocked.add_row(b.target, b.code, b.reason)
        tables.append(blocked)
    return tables


def progress_table(p: RunProgress) -> Table:
    extra = f", waiting for approval of ring {p.waiting_for}" if p.waiting_for else ""
    extra += f", soaking until {p.soak_until}" if p.soak_until else ""
    table = Table(
        title=f"{p.run_id}: {p.phase}{extra} — failed {p.failed}/{p.failure_budget} budget, "
        f"hosts {p.hosts_done}/{p.hosts_total}"
    )
    for col in ("vm", "site", "ring", "status", "note"):
        table.add_column(col)
    for vm in p.vms:
        style = STATUS_STYLE.get(vm.status, "")
        table.add_row(vm.name, vm.site, vm.ring, f"[{style}]{vm.status.value}[/]", vm.note[:80])
    return table


def progress_line(p: RunProgress) -> str:
    counts = " ".join(f"{s.value}={p.count(s)}" for s in StepStatus if p.count(s))
    return f"{p.run_id} phase={p.phase} ring={p.ring or '-'} {counts}".strip()


def summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"run {summary.run_id}: {summary.status}")
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
    """The lab demo's summary (an ``orchestrator.demo.DemoReport``): per VM, hosts, stage timings."""
    vms = Table(title=f"demo {report.summary.run_id}: per VM")
    for col in ("vm", "channel", "status", "packages changed", "snapshot", "reboots", "demo-app", "error"):
        vms.add_column(col)
    for v in report.vms:
        vms.add_row(
            v.name, v.channel, _styled(v.status), ", ".join(v.changed) or "-", v.snapshot or "-",
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
        elif line != self._last:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            self._console.print(f"{stamp} {line}", soft_wrap=True)
        self._last = line
