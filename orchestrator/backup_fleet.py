"""``patchwave backups list|verify`` and the restore-test rounds of ``serve`` (everything callable).

* :func:`backup_list` — the backups on record (fact store only; no provider connection);
* :func:`verify_backups` — restore-verify now: for each selected VM its newest backup on record
  (state ``created``) is restored into an isolated copy, probed, destroyed
  (:func:`orchestrator.backups.verify`), the verdict on record;
* :func:`due_for_verification` — a round's pick: the VMs whose newest backup was verified longest ago
  (never first), at most ``[backup] verify_per_round``: a round's work is bounded, whatever the fleet.

The probes are the ``command`` health checks that apply to the VM (``[[health]]`` ``kind =
"command"``), run in the restored copy through its agent; without any, the copy's agent (or Tools
heartbeat) answering is the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator import backups
from orchestrator.config.settings import Settings
from orchestrator.context import Context
from orchestrator.facts.backups import BackupRecord, BackupStore, VerificationRecord
from orchestrator.facts.store import FactStore, open_store
from providers.backups import RestoreProbe
from providers.base import Capability
from providers.errors import ProviderError

VERIFY_STEP_PREFIX = "verify:"


@dataclass(frozen=True)
class VerifyRow:
    """One VM's restore test: its backup, and the verification or why there is none."""

    backup: BackupRecord
    verification: VerificationRecord | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.verification is not None and self.verification.ok


def selected(record: BackupRecord, names: Sequence[str]) -> bool:
    return not names or record.vm.name in names or str(record.vm) in names


def backup_list(facts: FactStore, *, names: Sequence[str] = ()) -> list[BackupRecord]:
    """Every backup on record (oldest first), or those of the VMs named (``name`` or ``site/name``)."""
    return [r for r in BackupStore(facts).backups() if selected(r, names)]


def newest_backups(facts: FactStore, *, names: Sequence[str] = ()) -> list[BackupRecord]:
    """Per VM, its newest backup that exists (state ``created``), ordered by VM."""
    newest: dict[tuple[str, str], BackupRecord] = {}
    for record in BackupStore(facts).backups(state="created"):
        if selected(record, names):
            newest[(record.vm.site, record.vm.id)] = record  # oldest first: the newest wins
    return [newest[k] for k in sorted(newest)]


def due_for_verification(facts: FactStore, *, limit: int) -> list[BackupRecord]:
    """At most ``limit`` newest backups, least recently verified first (never verified: first)."""
    candidates = newest_backups(facts)
    candidates.sort(key=lambda r: (r.verified_at or "", r.vm.site, r.vm.name))
    return candidates[:limit]


def probes_for(ctx: Context, record: BackupRecord) -> tuple[RestoreProbe, ...]:
    """The VM's ``command`` health checks, as probes run in the restored copy."""
    return tuple(
        RestoreProbe(check.name, ("/bin/sh", "-c", check.command), timeout=check.timeout_s)
        for check in ctx.settings.health
        if check.kind == "command"
        and (check.match.empty or check.match.matches(record.vm.name, (), record.vm.site))
    )


def verify_one(ctx: Context, record: BackupRecord, *, run_id: str) -> VerifyRow:
    """Restore-verify ``record``; a provider without BACKUP_VERIFY or a transient failure is the row's error."""
    site = record.vm.site
    if site not in ctx.settings.sites:
        return VerifyRow(record, error=f"site {site!r} is no longer configured")
    provider = ctx.provider(site)
    if Capability.BACKUP_VERIFY not in provider.capabilities:
        return VerifyRow(record, error=f"the provider of site {site!r} cannot restore-verify backups")
    deps = backups.BackupDeps(provider, ctx.facts, clock=ctx.clock, log=ctx.log)
    timeout = float(ctx.settings.backup.verify_timeout_s)
    try:
        done = backups.verify(
            deps, record, run_id=run_id, step_id=f"{VERIFY_STEP_PREFIX}{record.step_id}",
            probes=probes_for(ctx, record), timeout=timeout,
        )  # fmt: skip
    except ProviderError as exc:
        return VerifyRow(record, error=str(exc))
    return VerifyRow(record, done, "" if done.ok else done.error or "the restored copy failed its checks")


def verify_run_id(now: datetime) -> str:
    return f"backup-verify-{now.strftime('%Y%m%dT%H%M%SZ')}"


def verify_backups(ctx: Context, *, names: Sequence[str] = (), now: datetime) -> list[VerifyRow]:
    """``patchwave backups verify [--vm NAME]``: the newest backup of each (selected) VM, one at a time."""
    run_id = verify_run_id(now)
    return [verify_one(ctx, record, run_id=run_id) for record in newest_backups(ctx.facts, names=names)]


def verify_now(settings: Settings, *, names: Sequence[str] = (), now: datetime) -> list[VerifyRow]:
    """:func:`verify_backups` with the configuration's fact store and providers (the CLI's entry)."""
    facts = open_store(settings)
    ctx = Context(settings, facts)
    try:
        return verify_backups(ctx, names=names, now=now)
    finally:
        ctx.close()
        facts.close()
