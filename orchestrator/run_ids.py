"""What a run id may look like — for ``run --run-id`` and the RUN of status/approve/rollback/resume.

A run id is the PatchRun's Temporal workflow id, the prefix of its children's ids (``RUN/STEP``,
``RUN-rollback-TIME``), a key of the fact store and a word in the commands patchwave prints
(``patchwave resume RUN``). The grammar keeps it all of those at once:

* 1 to :data:`MAX_RUN_ID` characters: ASCII letters, digits, ``.``, ``_``, ``-`` and ``:``;
* starting with a letter or a digit (never ``-``: it would read as an option).

Generated ids fit (``run-20261204-143210-ab12``), and so do the ids Temporal gives scheduled runs
(the schedule id ``patchwave-sched-<site>-<group>`` — site and group names are made of the same
characters — plus ``-`` and the scheduled time, ``2026-11-28T21:00:00Z``).
"""

from __future__ import annotations

import re

from orchestrator.errors import InvalidRunId

#: The longest run id (Temporal allows 1000 bytes per id; child ids append the step id to it).
MAX_RUN_ID = 200
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*")


def check_run_id(run_id: object) -> str:
    """``run_id`` if it follows the grammar, else :class:`~orchestrator.errors.InvalidRunId`."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidRunId(run_id, "is empty")
    if len(run_id) > MAX_RUN_ID:
        raise InvalidRunId(run_id, f"is {len(run_id)} characters long, more than {MAX_RUN_ID}")
    if not RUN_ID.fullmatch(run_id):
        raise InvalidRunId(run_id, "has a character a run id cannot have")
    return run_id
