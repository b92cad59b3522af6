"""A run's holds: the packages a guest's automatic updater must leave alone after a pinned rollout
(pure: the record, the files, the script and its parser).

With pinned promotion (``[policy] promotion = "pinned"``) a VM of a later ring installs exactly the
versions its first ring tested, and every newer candidate is *held back*; a patch baseline does the
same with its approved set. Left alone, ``unattended-upgrades`` / ``dnf-automatic`` would install the
held-back versions the next night — versions no canary ever ran. So, in ``coexist`` mode, the step
that restores the updater after the patch first writes the run's holds:

* the **record** ``/var/lib/patchwave/autoupdates.holds`` — the run, the step, when, one
  ``package=<name>`` line per held package (the names of the run's pins for this VM and of the
  packages it held back). ``apply`` and ``status`` read it: a later ``apply`` keeps the holds,
  ``status`` expects them (drift otherwise);
* **Debian/Ubuntu**: ``/etc/apt/apt.conf.d/91patchwave-run-holds`` — extra
  ``Unattended-Upgrade::Package-Blacklist`` entries (apt lists add up across files; only
  unattended-upgrades reads this list, so patchwave's own pinned ``apt-get install`` is not blocked,
  unlike ``apt-mark hold``). A file of its own, so ``apply`` never rewrites it;
* **RHEL family**: dnf-automatic has no drop-in directory, so its ``automatic.conf`` (patchwave's
  in ``coexist``) is written again with ``excludepkgs`` = the group's pins + the run's holds.

The latest run that patched the VM decides: its holds replace the previous run's; a run whose patch
on the VM had no pins (the first ring, ``promotion = "latest"``) releases them (the record and the
Debian file are removed). A run that never reached the VM's patch leaves the holds as they are.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from orchestrator.autoupdates.change import PUT_FUNCTIONS, GuestFile
from orchestrator.autoupdates.debian import blacklist_entry
from orchestrator.autoupdates.errors import AutoUpdateError
from orchestrator.guests.errors import GuestUnreachable
from providers.base import ExecResult

RECORD = "/var/lib/patchwave/autoupdates.holds"
DEBIAN_PATH = "/etc/apt/apt.conf.d/91patchwave-run-holds"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:-]{0,199}$")


@dataclass(frozen=True)
class RunHolds:
    """The holds one run left on a guest (what :data:`RECORD` says)."""

    run_id: str
    step_id: str = ""
    held_at: str = ""
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoldReport:
    """What writing a run's holds did on the guest (paths as ``apply`` reports them)."""

    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def package_names(names: tuple[str, ...] | list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the sorted unique package names, what is not a package name): a name no package manager
    would accept never ends up in a configuration file."""
    valid = {n for n in names if _NAME.match(n)}
    return tuple(sorted(valid)), tuple(sorted(set(names) - valid))


def record_text(holds: RunHolds) -> str:
    lines = [f"run_id={holds.run_id}", f"step_id={holds.step_id}", f"held_at={holds.held_at}"]
    return "\n".join([*lines, *(f"package={p}" for p in holds.packages)]) + "\n"


def parse_record(text: str) -> RunHolds | None:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value.strip())
    if not fields.get("run_id"):
        return None
    names = [p for p in fields.get("package", []) if _NAME.match(p)]
    return RunHolds(
        fields["run_id"][0], fields.get("step_id", [""])[0], fields.get("held_at", [""])[0], tuple(names)
    )


def debian_text(holds: RunHolds) -> str:
    return (
        "\n".join(
            [
                f"// Written by patchwave run {holds.run_id} (step {holds.step_id}) at {holds.held_at}: the packages",
                "// its pinned rollout pinned or held back on this VM. unattended-upgrades leaves them alone until",
                "// the next patchwave run on this VM replaces or releases them. Do not edit.",
                "Unattended-Upgrade::Package-Blacklist {",
                *(f'        "{blacklist_entry(p)}";' for p in holds.packages),
                "};",
            ]
        )
        + "\n"
    )


def hold_files(
    family: str, holds: RunHolds, conf: GuestFile | None
) -> tuple[tuple[GuestFile, ...], tuple[str, ...]]:
    """(files to write, files to remove) for ``holds`` on a guest of ``family``; ``conf``: the RHEL
    family's automatic.conf rendered with the holds (``plan(..., run_holds=...)``)."""
    if family == "debian":
        if not holds.packages:
            return (), (RECORD, DEBIAN_PATH)
        return (GuestFile(RECORD, record_text(holds)), GuestFile(DEBIAN_PATH, debian_text(holds))), ()
    if family == "rhel":
        files = (conf,) if conf is not None else ()
        if not holds.packages:
            return files, (RECORD,)
        return (GuestFile(RECORD, record_text(holds)), *files), ()
    raise AutoUpdateError(f"no automatic updater holds for OS family {family!r}", code="unsupported_os")


def hold_command(files: tuple[GuestFile, ...], remove: tuple[str, ...]) -> str:
    """Write ``files`` (only when different) and remove ``remove``; prints ``apply``'s lines. The
    record is written last and removed first, so it never names holds a file does not have yet."""
    ordered = sorted(files, key=lambda f: f.path == RECORD)
    steps = [f"pw_rm {shlex.quote(p)}" for p in sorted(remove, key=lambda p: p != RECORD)]
    steps += [f.put_command() for f in ordered]
    return PUT_FUNCTIONS + " && ".join(steps or ["true"])


def parse_hold(result: ExecResult, *, target: str = "") -> HoldReport:
    if result.exit_code is None:
        raise GuestUnreachable(f"writing the run's holds ended by signal {result.signal}", target=target)
    if not result.ok:
        raise AutoUpdateError(
            f"writing the run's holds failed (exit {result.exit_code})", code="hold_failed", target=target,
            output=result.stdout + result.stderr,
        )  # fmt: skip
    found: dict[str, list[str]] = {"changed": [], "unchanged": [], "removed": []}
    for line in result.stdout.splitlines():
        verb, _, path = line.partition(" ")
        if verb in found and path:
            found[verb].append(path)
    return HoldReport(tuple(found["changed"]), tuple(found["unchanged"]), tuple(found["removed"]))


def read_record_command() -> str:
    return f"cat {RECORD} 2>/dev/null || true"
