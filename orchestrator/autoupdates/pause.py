"""Pausing a guest's automatic updater while a patchwave run patches it, and restoring it (pure).

``pause(run_id, step_id)`` — one script:

1. the pause guards (:func:`orchestrator.autoupdates.units.guard_files`) are written when missing
   (one ``daemon-reload`` then): from here on the updater's services do not start while the marker
   exists, even when a timer fires after a reboot in the middle of the run;
2. the **marker** ``/var/lib/patchwave/autoupdates.paused`` records the run, the step, the time and
   every pausable timer's previous state (``unit=<name> enabled=<state> active=<state>``), written
   atomically *before* anything is stopped — a crash leaves the evidence ``resume``/``doctor`` need.
   Already there for this run: kept (paused twice = once). There for another run (a dead one):
   adopted — its unit states are the original ones and are kept; ``adopted_from=<run>`` says so.
   The guards, the marker and their directories are flushed to disk (``sync FILE...``) before a
   timer is stopped: a guest that crashes or is reset right after the pause boots still paused;
3. the timers that are active are stopped (runtime only: enablement is not touched);
4. it waits, bounded by ``wait_s``, until no updater service runs (a oneshot service is
   ``activating`` while it works) and no manual run (``unattended-upgrade``, ``dnf-automatic``) is
   left — never killing one; the dpkg/rpm lock itself is waited for by patchwave's own package
   manager commands. Still busy at the deadline: exit 75, :class:`UpdaterBusy` (retryable; the
   pause stays in effect, a retry only waits again).

``restore(run_id)`` starts exactly the timers the marker recorded as active, then removes the
marker (in that order: a crash in between still leaves the marker). No marker: nothing to do
(restored twice = once). Another run's marker: refused unless ``any_run`` (``doctor``, after it
made sure that run is dead).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from orchestrator.autoupdates.change import MARKER, PUT_FUNCTIONS
from orchestrator.autoupdates.errors import AutoUpdateError, UpdaterBusy
from orchestrator.autoupdates.units import Updater, busy_function, guard_files
from providers.base import ExecResult

BUSY_EXIT = 75
OTHER_RUN_EXIT = 3
_ID = re.compile(r"^[A-Za-z0-9._:@/+-]{1,200}$")


@dataclass(frozen=True)
class UnitRecord:
    unit: str
    enabled: str  # systemctl is-enabled before the pause ("not-found" when there is no such unit)
    active: str  # systemctl is-active before the pause


@dataclass(frozen=True)
class PauseMarker:
    run_id: str
    step_id: str = ""
    paused_at: str = ""
    units: tuple[UnitRecord, ...] = ()
    adopted_from: tuple[str, ...] = ()  # runs whose pause this one took over


@dataclass(frozen=True)
class PauseResult:
    marker: PauseMarker
    state: str  # new | kept | adopted
    stopped: tuple[str, ...]
    guards_written: tuple[str, ...]
    waited_s: int


@dataclass(frozen=True)
class RestoreResult:
    restored: bool  # False: there was nothing paused
    started: tuple[str, ...] = ()
    marker: PauseMarker | None = None
    failed: tuple[str, ...] = ()  # timers that would not start again (reported, marker removed anyway)


def _checked(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r} is not usable in a pause marker (letters, digits, ._:@/+-)")
    return value


def pause_command(updater: Updater, run_id: str, step_id: str, *, wait_s: int) -> str:
    run, step = shlex.quote(_checked(run_id, "run id")), shlex.quote(_checked(step_id or "-", "step id"))
    units = " ".join(shlex.quote(u) for u in updater.pausable) or "''"
    guards = " && ".join(f.put_command() for f in guard_files(updater)) or "true"
    stop = f'for u in {units}; do if systemctl is-active -q "$u"; then systemctl stop "$u" && echo "stopped $u"; fi; done'
    wait = (
        f"pw_t=0; while pw_busy >/dev/null; do if [ $pw_t -ge {int(wait_s)} ]; then pw_busy; exit {BUSY_EXIT}; fi; "
        'sleep 2; pw_t=$((pw_t + 2)); done; echo "waited $pw_t"'
    )
    return "; ".join(
        [
            PUT_FUNCTIONS + busy_function(updater.services, updater.processes),
            f'm={MARKER}; mkdir -p "$(dirname "$m")" || exit 1',
            f'{guards} || exit 1; if [ "$pw_units" = 1 ]; then systemctl daemon-reload || exit 1; fi',
            _marker_script(run, step, units),
            _flush_command(updater),
            stop,
            wait,
            'echo "### marker"; cat "$m"',
        ]
    )


def _flush_command(updater: Updater) -> str:
    """fsync the guards, the marker and their directories (a rename is durable once its directory
    is); a ``sync`` that takes no file arguments (coreutils < 8.24) flushes everything instead."""
    paths = sorted({p for f in guard_files(updater) for p in (f.path, f.path.rsplit("/", 1)[0])})
    files = " ".join(shlex.quote(p) for p in paths)
    return f'sync "$m" "$(dirname "$m")" {files} 2>/dev/null || sync'


def _marker_script(run: str, step: str, units: str) -> str:
    """Keep this run's marker; adopt another run's (its unit states are the originals); else record
    every pausable unit's state — written to a temporary file, then moved into place."""
    record = (
        f'for u in {units}; do e=$(systemctl is-enabled "$u" 2>/dev/null); a=$(systemctl is-active "$u" 2>/dev/null); '
        'echo "unit=$u enabled=${e:-not-found} active=${a:-unknown}"; done'
    )
    adopt = 'sed -n -e "s/^run_id=/adopted_from=/p" -e t -e "/^adopted_from=/p" -e "/^unit=/p" "$m"'
    return (
        f'if [ -f "$m" ] && grep -qx "run_id="{run} "$m"; then echo "marker kept"; else '
        f'{{ echo "run_id="{run}; echo "step_id="{step}; echo "paused_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; '
        f'if [ -f "$m" ]; then {adopt}; else {record}; fi; }} > "$m.tmp.$$" && mv -f "$m.tmp.$$" "$m" || exit 1; '
        'if grep -q "^adopted_from=" "$m"; then echo "marker adopted"; else echo "marker new"; fi; fi'
    )


def restore_command(run_id: str, *, any_run: bool = False) -> str:
    run = shlex.quote(_checked(run_id, "run id"))
    owner_check = (
        ""
        if any_run
        else (
            f'if ! grep -qx "run_id="{run} "$m"; then echo "owner $(sed -n "s/^run_id=//p" "$m")"; exit {OTHER_RUN_EXIT}; fi; '
        )
    )
    return (
        f'm={MARKER}; if [ ! -f "$m" ]; then echo "nothing paused"; exit 0; fi; {owner_check}'
        'echo "### marker"; cat "$m"; echo "### started"; '
        'grep "^unit=" "$m" | while read -r u e a; do u=${u#unit=}; a=${a#active=}; '
        'if [ "$a" = active ] && ! systemctl is-active -q "$u"; then '
        'if systemctl start "$u"; then echo "started $u"; else echo "failed $u"; fi; fi; done; '
        'rm -f "$m" && echo "restored"'
    )


def read_marker_command() -> str:
    return f"cat {MARKER} 2>/dev/null || true"


# ------------------------------------------------------------------------------ parsing
def parse_marker(text: str) -> PauseMarker | None:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    if not fields.get("run_id"):
        return None
    units = []
    for value in fields.get("unit", []):
        parts = dict(p.partition("=")[::2] for p in ("unit=" + value).split())
        units.append(UnitRecord(parts.get("unit", ""), parts.get("enabled", ""), parts.get("active", "")))
    return PauseMarker(
        run_id=fields["run_id"][0],
        step_id=(fields.get("step_id") or [""])[0],
        paused_at=(fields.get("paused_at") or [""])[0],
        units=tuple(units),
        adopted_from=tuple(fields.get("adopted_from", [])),
    )


def parse_pause(result: ExecResult, *, target: str = "") -> PauseResult:
    lines = result.stdout.splitlines()
    if result.exit_code == BUSY_EXIT:
        busy = next((line.split()[1:] for line in reversed(lines) if line.startswith("busy")), [])
        raise UpdaterBusy(
            f"the automatic updater is still running ({' '.join(busy) or 'busy'}); the pause is in effect,"
            " another attempt waits again",
            busy=tuple(busy),
            target=target,
            output=result.stdout,
        )
    head, _, marker_text = result.stdout.partition("### marker\n")
    marker = parse_marker(marker_text)
    if not result.ok or marker is None:
        raise AutoUpdateError(
            f"pausing the automatic updater failed (exit {result.exit_code})",
            code="apply_failed",
            target=target,
            output=result.stdout + result.stderr,
        )
    words = [line.split(maxsplit=1) for line in head.splitlines() if line.strip()]
    state = next((w[1] for w in words if w[0] == "marker" and len(w) > 1), "new")
    waited = next((w[1] for w in words if w[0] == "waited" and len(w) > 1), "0")
    return PauseResult(
        marker=marker,
        state=state,
        stopped=tuple(w[1] for w in words if w[0] == "stopped" and len(w) > 1),
        guards_written=tuple(w[1] for w in words if w[0] == "changed" and len(w) > 1),
        waited_s=int(waited) if waited.isdigit() else 0,
    )


def parse_restore(result: ExecResult, *, target: str = "") -> RestoreResult:
    text = result.stdout
    if result.exit_code == OTHER_RUN_EXIT and text.startswith("owner"):
        raise AutoUpdateError(
            f"the automatic updater was paused by another run ({text.split(maxsplit=1)[1].strip() or '?'});"
            " `patchwave doctor` restores the pause of a run that is gone",
            code="paused_by_other_run",
            target=target,
        )
    if result.ok and text.strip() == "nothing paused":
        return RestoreResult(restored=False)
    marker_text, _, started_text = text.partition("### marker\n")[2].partition("### started\n")
    if not result.ok or "restored" not in started_text.split():
        raise AutoUpdateError(
            f"restoring the automatic updater failed (exit {result.exit_code})",
            code="apply_failed",
            target=target,
            output=text + result.stderr,
        )
    words = [line.split(maxsplit=1) for line in started_text.splitlines() if line.strip()]
    return RestoreResult(
        restored=True,
        started=tuple(w[1] for w in words if w[0] == "started" and len(w) > 1),
        marker=parse_marker(marker_text),
        failed=tuple(w[1] for w in words if w[0] == "failed" and len(w) > 1),
    )
