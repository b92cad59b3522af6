"""What ``apply`` does to one guest, as data, and the shell text that does it (pure).

An :class:`AutoUpdateChange` lists files to write, patchwave's own files to remove, a package to
install when missing, and units to unmask / enable / disable. :func:`apply_command` renders it as
one idempotent ``/bin/sh`` script in ``### patchwave:`` sections (see
:mod:`orchestrator.guests.packages.base`):

* first a guard: refuses (exit 3, ``paused-by <run>``) while a patchwave run has this VM's updater
  paused — enabling timers now would undo the pause; ``restore`` (or ``patchwave doctor`` for a
  dead run) comes first;
* ``install`` — the updater package, only when it is missing (the package manager's own command,
  which waits for the dpkg/rpm lock);
* ``files`` — each file written atomically (a temporary file in the same directory, then ``mv``)
  and only when its content differs; a file that may be the distribution's keeps one copy as
  ``<path>.patchwave-orig`` (the first time only); prints ``changed|unchanged|removed|kept <path>``;
* ``disable`` — ``disable`` + ``stop`` (before the files: a unit stops before its file goes);
* ``units`` — ``unmask`` (only units that are masked), one ``daemon-reload`` when a unit file or
  drop-in changed, then ``enable`` + ``start``; prints one line per action.

Contents travel base64-encoded in the script, so no quoting of file text is ever needed.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from dataclasses import dataclass

from orchestrator.autoupdates.errors import AutoUpdateError
from orchestrator.guests.packages.base import section_command, split_sections
from providers.base import ExecResult

MARKER = "/var/lib/patchwave/autoupdates.paused"
#: Exit status of the ``guard`` section when a run has the updater paused.
PAUSED_EXIT = 3

# pw_put PATH MODE KEEP-ORIGINAL BASE64: write atomically when different; pw_rm PATH: remove if present.
PUT_FUNCTIONS = (
    "pw_units=0; "
    'pw_put() { pw_tmp="$1.pw-tmp.$$"; mkdir -p "$(dirname "$1")" || return 1; '
    'printf \'%s\' "$4" | base64 -d > "$pw_tmp" || { rm -f "$pw_tmp"; return 1; }; '
    'if [ -f "$1" ] && [ "$(sha256sum < "$pw_tmp")" = "$(sha256sum < "$1")" ]; then '
    'rm -f "$pw_tmp"; echo "unchanged $1"; return 0; fi; '
    'if [ "$3" = 1 ] && [ -f "$1" ] && [ ! -e "$1.patchwave-orig" ]; then '
    'cp -p "$1" "$1.patchwave-orig" && echo "kept $1.patchwave-orig"; fi; '
    'chmod "$2" "$pw_tmp" && mv -f "$pw_tmp" "$1" || { rm -f "$pw_tmp"; return 1; }; '
    'case "$1" in /etc/systemd/*) pw_units=1;; esac; echo "changed $1"; }; '
    'pw_rm() { if [ -e "$1" ]; then rm -f "$1" || return 1; '
    'case "$1" in /etc/systemd/*) pw_units=1;; esac; echo "removed $1"; fi; }; '
)


@dataclass(frozen=True)
class GuestFile:
    path: str
    content: str
    mode: int = 0o644
    keep_original: bool = False  # may be the distribution's file: keep a first copy (.patchwave-orig)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()

    def put_command(self) -> str:
        encoded = base64.b64encode(self.content.encode()).decode()
        keep = "1" if self.keep_original else "0"
        return f"pw_put {shlex.quote(self.path)} {self.mode:o} {keep} {encoded}"


@dataclass(frozen=True)
class AutoUpdateChange:
    """What ``apply`` writes and switches on one guest (from :func:`orchestrator.autoupdates.plan`)."""

    family: str  # debian | rhel | suse | unknown
    updater: str  # unattended-upgrades | dnf-automatic | "" (nothing to manage)
    mode: str
    install: str = ""  # shell text installing the updater when missing ("" = do not install)
    installed_check: str = ""  # shell text that exits 0 when the updater is installed
    files: tuple[GuestFile, ...] = ()
    remove: tuple[str, ...] = ()  # patchwave's own files, removed when present
    unmask: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()  # enabled and started
    disable: tuple[str, ...] = ()  # disabled and stopped
    holds: tuple[str, ...] = ()  # packages the updater leaves alone
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.install or self.files or self.remove or self.unmask or self.enable or self.disable)

    def summary(self) -> dict[str, object]:
        """What the journal records before the change (contents by hash)."""
        return {
            "family": self.family,
            "updater": self.updater,
            "mode": self.mode,
            "install": bool(self.install),
            "files": {f.path: f.sha256 for f in self.files},
            "remove": list(self.remove),
            "unmask": list(self.unmask),
            "enable": list(self.enable),
            "disable": list(self.disable),
            "holds": list(self.holds),
        }


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did on one guest (parsed from the script's output)."""

    installed: bool  # the updater package was installed now
    changed: tuple[str, ...]  # files written
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]  # .patchwave-orig copies made now
    units: tuple[str, ...]  # "enabled apt-daily.timer", "unmasked apt-daily.service", ...

    @property
    def changed_anything(self) -> bool:
        return bool(self.installed or self.changed or self.removed or self.units)


def apply_command(change: AutoUpdateChange) -> str:
    """The idempotent script for ``change`` (see the module docstring)."""
    guard = f"if [ -f {MARKER} ]; then echo \"paused-by $(sed -n 's/^run_id=//p' {MARKER})\"; exit {PAUSED_EXIT}; fi"
    parts = [PUT_FUNCTIONS + "pw_fail=0", guard]
    if change.install:
        install = f"if {change.installed_check}; then echo 'already installed'; else {change.install}; fi"
        parts.append(section_command("install", install))
    if change.disable:  # before the files: a unit is stopped before its file is removed
        parts.append(section_command("disable", disable_command(change.disable)))
    files = [f.put_command() for f in change.files] + [f"pw_rm {shlex.quote(p)}" for p in change.remove]
    parts.append(section_command("files", " && ".join(files) if files else "true"))
    parts.append(section_command("units", enable_command(change.unmask, change.enable)))
    return "; ".join(parts)


def disable_command(units: tuple[str, ...]) -> str:
    """Disable and stop ``units`` (those that are enabled / active); failures fail the section."""
    steps = []
    for unit in units:
        u = shlex.quote(unit)
        steps.append(
            f'if [ "$(systemctl is-enabled {u} 2>/dev/null)" = enabled ]; then '
            f'systemctl disable --no-reload {u} >/dev/null 2>&1 && echo "disabled {unit}" '
            f'|| {{ echo "failed disable {unit}"; pw_fail=1; }}; fi; '
            f'if systemctl is-active -q {u}; then systemctl stop {u} && echo "stopped {unit}" '
            f'|| {{ echo "failed stop {unit}"; pw_fail=1; }}; fi'
        )
    return "; ".join([*steps, '[ "$pw_fail" = 0 ]'])


def enable_command(unmask: tuple[str, ...], enable: tuple[str, ...]) -> str:
    """Unmask (the masked ones), one daemon-reload when a unit file changed, enable + start."""
    steps = []
    if unmask:
        names = " ".join(shlex.quote(u) for u in unmask)
        steps.append(
            f'for u in {names}; do if [ "$(systemctl is-enabled "$u" 2>/dev/null)" = masked ]; then '
            'if systemctl unmask --no-reload "$u" >/dev/null 2>&1; then echo "unmasked $u"; pw_units=1; '
            'else echo "failed unmask $u"; pw_fail=1; fi; fi; done'
        )
    steps.append(
        'if [ "$pw_units" = 1 ]; then systemctl daemon-reload && echo "daemon-reload" || pw_fail=1; fi'
    )
    for unit in enable:
        u = shlex.quote(unit)
        steps.append(
            f'if [ "$(systemctl is-enabled {u} 2>/dev/null)" != enabled ]; then '
            f'systemctl enable --no-reload {u} >/dev/null 2>&1 && echo "enabled {unit}" '
            f'|| {{ echo "failed enable {unit}"; pw_fail=1; }}; fi; '
            f'systemctl is-active -q {u} || {{ systemctl start {u} && echo "started {unit}" '
            f'|| {{ echo "failed start {unit}"; pw_fail=1; }}; }}'
        )
    return "; ".join([*steps, '[ "$pw_fail" = 0 ]'])


def parse_apply(result: ExecResult, *, target: str = "") -> ApplyReport:
    """The report of :func:`apply_command`'s output; :class:`AutoUpdateError` when it failed."""
    if result.exit_code == PAUSED_EXIT and result.stdout.startswith("paused-by"):
        run = result.stdout.splitlines()[0].removeprefix("paused-by").strip()
        raise AutoUpdateError(
            f"a patchwave run ({run or 'unknown'}) has this VM's automatic updater paused; apply after it"
            " ends (a dead run's pause is restored by `patchwave doctor`)",
            code="paused",
            target=target,
        )
    sections = split_sections(result.stdout)
    for name, (body, status) in sections.items():
        if status != 0:
            raise AutoUpdateError(
                f"apply failed in step {name!r} (exit {status if status is not None else result.exit_code})",
                code="apply_failed",
                target=target,
                output=body + "\n" + result.stderr,
            )
    if not result.ok or "units" not in sections:
        raise AutoUpdateError(
            f"apply failed (exit {result.exit_code})",
            code="apply_failed",
            target=target,
            output=result.stdout + result.stderr,
        )
    return _report(sections)


def _report(sections: dict[str, tuple[str, int | None]]) -> ApplyReport:
    lines = {"changed": [], "unchanged": [], "removed": [], "kept": []}  # type: dict[str, list[str]]
    for line in sections.get("files", ("", 0))[0].splitlines():
        verb, _, path = line.partition(" ")
        if verb in lines and path:
            lines[verb].append(path.removesuffix(".patchwave-orig") if verb == "kept" else path)
    install = sections.get("install", ("already installed", 0))[0]
    units = tuple(
        line.strip()
        for name in ("disable", "units")
        for line in sections.get(name, ("", 0))[0].splitlines()
        if line.strip()
    )
    return ApplyReport(
        installed="already installed" not in install,
        changed=tuple(lines["changed"]),
        unchanged=tuple(lines["unchanged"]),
        removed=tuple(lines["removed"]),
        kept=tuple(lines["kept"]),
        units=units,
    )
