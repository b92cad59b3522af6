"""The fact store's ``steps`` table: the step journal, append-only.

An *intent* record before every side effect, a *result* record after it, each with the typed
detail its :class:`~orchestrator.facts.actions.Action` takes (written as JSON through
:func:`~orchestrator.facts.records.scrub`, read back typed).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.facts.actions import JOURNAL_VERSION, Action, Phase, check_detail
from orchestrator.facts.database import Database
from orchestrator.facts.details import Detail, NotifyDetail
from orchestrator.facts.records import StepRecord, step_from_row, to_json


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


#: The step id of a run's notification deliveries.
NOTIFY_STEP = "notify"


class StepJournal(Database):
    def record_intent(
        self, run_id: str, step_id: str, action: Action, *, detail: Detail, target: str = ""
    ) -> int:
        """Append an intent record (before the side effect); returns its record id."""
        check_detail(action, Phase.INTENT, detail)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO steps (run_id, step_id, action, phase, target, ok, detail, error, recorded_at,"
                " schema_version) VALUES (?, ?, ?, 'intent', ?, NULL, ?, '', ?, ?)",
                (
                    run_id,
                    step_id,
                    action.value,
                    target,
                    to_json(detail.to_json()),
                    self._now(),
                    JOURNAL_VERSION,
                ),
            )
            return int(cur.lastrowid or 0)

    def record_result(
        self,
        run_id: str,
        step_id: str,
        action: Action,
        *,
        ok: bool,
        detail: Detail,
        error: str = "",
        target: str = "",
    ) -> None:
        """Append a result record (after the side effect)."""
        check_detail(action, Phase.RESULT, detail)
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (run_id, step_id, action, phase, target, ok, detail, error, recorded_at,"
                " schema_version) VALUES (?, ?, ?, 'result', ?, ?, ?, ?, ?, ?)",
                (run_id, step_id, action.value, target, int(ok), to_json(detail.to_json()), error, self._now(),
                 JOURNAL_VERSION),
            )  # fmt: skip

    def step_history(
        self, run_id: str, step_id: str | None = None, *, action: Action | None = None
    ) -> list[StepRecord]:
        """The run's records (of one step, of one action), oldest first."""
        sql, args = "SELECT * FROM steps WHERE run_id = ?", [run_id]
        if step_id is not None:
            sql, args = sql + " AND step_id = ?", [*args, step_id]
        if action is not None:
            sql, args = sql + " AND action = ?", [*args, action.value]
        return [step_from_row(r) for r in self._db().execute(sql + " ORDER BY id", args)]

    def attempts(self, run_id: str, step_id: str, action: Action) -> int:
        """How many intents were recorded for (run, step, action)."""
        row = (
            self._db()
            .execute(
                "SELECT COUNT(*) AS n FROM steps WHERE run_id = ? AND step_id = ? AND action = ? AND phase = 'intent'",
                (run_id, step_id, action.value),
            )
            .fetchone()
        )
        return int(row["n"])

    def action_durations(self, step_id: str, action: Action, *, limit: int = 5) -> list[float]:
        """Seconds from an intent of ``action`` to the ok result that followed it in the same run, for
        the latest ``limit`` such pairs of ``step_id`` across all runs (newest first): what the
        action took on this target before (e.g. how long this VM needs to reboot)."""
        rows = self._db().execute(
            "SELECT run_id, phase, ok, recorded_at FROM steps WHERE step_id = ? AND action = ?"
            " ORDER BY id DESC LIMIT 400",
            (step_id, action.value),
        )
        found: list[float] = []
        results: dict[str, str] = {}  # run -> the ok result seen (walking backwards) and not yet paired
        for row in rows:
            if row["phase"] == "result":
                results.pop(row["run_id"], None)
                if row["ok"]:
                    results[row["run_id"]] = row["recorded_at"]
            elif (ended := results.pop(row["run_id"], None)) is not None:
                found.append((_instant(ended) - _instant(row["recorded_at"])).total_seconds())
                if len(found) >= limit:
                    break
        return found

    # ---------------------------------------------------------------- notification deliveries
    def record_delivery(
        self, run_id: str, event: str, *, key: str, ok: bool, sent: int, failed: int, error: str = ""
    ) -> None:
        """A delivery of ``event`` (``key``: the notice within the run), on record as step "notify"
        (ValueError for an event without a notify action)."""
        detail = NotifyDetail(event, key, sent=sent, failed=failed)
        self.record_result(run_id, NOTIFY_STEP, Action.notify(event), ok=ok, detail=detail, error=error)

    def delivered(self, run_id: str, key: str) -> bool:
        """A delivery of the notice ``key`` of ``run_id`` succeeded before."""
        return any(
            r.ok and isinstance(r.detail, NotifyDetail) and r.detail.key == key
            for r in self.step_history(run_id, NOTIFY_STEP)
        )
