"""Periodic restore tests: the ``patchwave-verify-backups`` schedule starts ``VerifyBackups`` every
``[backup] verify_every``; each round restore-verifies the ``verify_per_round`` backups verified
longest ago (:func:`orchestrator.backup_fleet.due_for_verification`), one at a time.

Same shape as the assessment schedule (:mod:`orchestrator.engine.assessments`): an interval
schedule, overlap ``SKIP``, a catch-up window of one interval, the fingerprint in the action's memo;
``serve`` syncs it at start (created / updated / unchanged / deleted when ``verify_every`` is 0).
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
)

from orchestrator.config.settings import Settings
from orchestrator.engine.assessments import interval_schedule, sync_interval_schedule

SCHEDULE_ID = "patchwave-verify-backups"
MEMO_KEY = "patchwave_verify_backups_schedule"
VERIFY_WORKFLOW = "VerifyBackups"


def desired(settings: Settings) -> tuple[Schedule, str] | None:
    """The schedule ``[backup] verify_every`` asks for and its fingerprint; None when it asks for none."""
    every, per_round = settings.backup.verify_every_s, settings.backup.verify_per_round
    if not every:
        return None
    return interval_schedule(
        VERIFY_WORKFLOW, per_round, SCHEDULE_ID, MEMO_KEY, every,
        fingerprinted={"per_round": per_round},
        note=f"managed by patchwave ({settings.file}): [backup] verify_every {every}s, {per_round} per round",
    )  # fmt: skip


async def sync_verify_schedule(client: Client, settings: Settings) -> str:
    """Make ``patchwave-verify-backups`` match ``[backup] verify_every`` (see the module docstring)."""
    return await sync_interval_schedule(client, SCHEDULE_ID, MEMO_KEY, desired(settings))
