"""unattended-upgrades (Debian, Ubuntu): the files patchwave writes and what it reads back (pure).

Files (``security``/``coexist``):

* ``/etc/apt/apt.conf.d/90patchwave-unattended-upgrades`` — patchwave's own file; the distribution's
  ``50unattended-upgrades`` is never edited. apt reads ``apt.conf.d`` in lexical (byte) order; a
  later file overrides a *scalar* (``Automatic-Reboot``), but a *list* (``Origins-Pattern``) only
  grows: apt.conf(5) — "lists and scopes can't be overridden, only cleared" with ``#clear``. So the
  file must sort *after* ``50unattended-upgrades`` (``50patchwave-...`` would sort before it — ``p``
  < ``u`` — and the distribution's list, which on Debian includes the main archive
  ``origin=Debian,codename=${distro_codename},label=Debian``, would be appended after patchwave's
  clear) and clears ``Origins-Pattern`` and ``Allowed-Origins`` (unattended-upgrades merges both)
  before setting the security origins. ``90`` also sorts after the ``52unattended-upgrades-local``
  that Ubuntu documents for local overrides. A file sorting later still wins; ``status`` reports
  that as drift (it compares the *effective* configuration, ``apt-config dump``).
* ``/etc/apt/apt.conf.d/20auto-upgrades`` — the periodic switch, byte for byte the package's own
  file (``APT::Periodic::Update-Package-Lists "1"; APT::Periodic::Unattended-Upgrade "1";``, in
  ``off``: ``"0"``), which its postinst manages with ucf: identical content means no ucf conflict
  on the next package upgrade, and the package's debconf question reads its answer from it.

Holds (``coexist``): ``Unattended-Upgrade::Package-Blacklist`` entries, which only
unattended-upgrades reads — it matches each as a Python regex anchored at the start of the package
name, so ``^name$`` (with ``.`` and ``+`` in brackets: apt.conf values may not contain backslashes).
Not ``apt-mark hold``: a hold also stops patchwave's own pinned install (``apt-get install
pkg=version`` fails with "Held packages were changed and -y was used without
--allow-change-held-packages", measured in the lab).
"""

from __future__ import annotations

import re

from orchestrator.autoupdates.errors import AutoUpdateError
from orchestrator.autoupdates.findings import Expectation, LastRun
from orchestrator.autoupdates.policy import AutoUpdatePolicy
from orchestrator.guests.osinfo import OsInfo

CONF_PATH = "/etc/apt/apt.conf.d/90patchwave-unattended-upgrades"
PERIODIC_PATH = "/etc/apt/apt.conf.d/20auto-upgrades"
LOG_PATH = "/var/log/unattended-upgrades/unattended-upgrades.log"
#: Security origins per distribution (``${distro_id}``/``${distro_codename}`` are unattended-upgrades').
DEFAULT_ORIGINS: dict[str, tuple[str, ...]] = {
    "debian": ("origin=Debian,codename=${distro_codename}-security,label=Debian-Security",),
    "ubuntu": (
        "origin=${distro_id},archive=${distro_codename}-security",
        "origin=${distro_id}ESMApps,archive=${distro_codename}-apps-security",
        "origin=${distro_id}ESM,archive=${distro_codename}-infra-security",
    ),
}
UU = "Unattended-Upgrade::"
_LOG_LINE = re.compile(r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ (?P<level>[A-Z]+) (?P<text>.*)$")
_DUMP_LINE = re.compile(r'^(?P<key>[^\s"]+) "(?P<value>.*)";$')
#: A dry run logs one of these (the first only when it found something to upgrade).
_DRY_RUN = ("Option --dry-run given", "The list of kept packages can't be calculated in dry-run mode")
#: Lines unattended-upgrades logs before "Starting ..." (they would end the previous run otherwise).
_PREAMBLE = ("Enabled logging to syslog", "Checking if system is running on battery",
             "Checking if connection is metered")  # fmt: skip


def origins_for(os_info: OsInfo, policy: AutoUpdatePolicy) -> tuple[str, ...]:
    """The distribution's security origins plus ``origins``; refused when neither is known."""
    found = (*DEFAULT_ORIGINS.get(os_info.id, ()), *policy.origins)
    if not found:
        raise AutoUpdateError(
            f"no security origin is known for {os_info.pretty_name or os_info.id!r}; list it in"
            ' [autoupdates] origins, e.g. "origin=Devuan,codename=${distro_codename}-security"',
            code="no_origins",
        )
    return tuple(dict.fromkeys(found))


def blacklist_entry(package: str) -> str:
    """``^name$`` for unattended-upgrades' regex match (``.``/``+`` bracketed: no backslashes in apt.conf)."""
    return "^" + package.replace(".", "[.]").replace("+", "[+]") + "$"


def periodic_text(on: bool) -> str:
    flag = "1" if on else "0"
    return f'APT::Periodic::Update-Package-Lists "{flag}";\nAPT::Periodic::Unattended-Upgrade "{flag}";\n'


def conf_text(os_info: OsInfo, policy: AutoUpdatePolicy, holds: tuple[str, ...]) -> str:
    lines = [
        f"// Managed by patchwave (`patchwave autoupdates apply`): group {policy.group or 'default'!r}, mode {policy.mode!r}.",
        "// The next apply overwrites changes made here; `patchwave autoupdates status` reports drift.",
        "// apt reads apt.conf.d in lexical order: this file comes after 50unattended-upgrades, so its",
        "// single values win, and the origin lists (which later files could only extend) are cleared first.",
        "#clear Unattended-Upgrade::Origins-Pattern;",
        "#clear Unattended-Upgrade::Allowed-Origins;",
        "Unattended-Upgrade::Origins-Pattern {",
        *(f'        "{origin}";' for origin in origins_for(os_info, policy)),
        "};",
    ]
    if holds:
        lines += ["// Held for patchwave's pinned rollout (only unattended-upgrades reads this list):"]
        lines += [
            "Unattended-Upgrade::Package-Blacklist {",
            *(f'        "{blacklist_entry(h)}";' for h in holds),
            "};",
        ]
    for key, value in _scalars(policy):
        lines.append(f'{UU}{key} "{value}";')
    return "\n".join(lines) + "\n"


def _scalars(policy: AutoUpdatePolicy) -> list[tuple[str, str]]:
    pairs = [("Automatic-Reboot", "true" if policy.reboot == "when-needed" else "false")]
    if policy.reboot == "when-needed":
        pairs.append(("Automatic-Reboot-Time", "now"))
    if policy.mail:
        pairs += [("Mail", policy.mail), ("MailReport", policy.mail_report)]
    if policy.syslog:
        pairs.append(("SyslogEnable", "true"))
    return pairs


def expectations(
    os_info: OsInfo, policy: AutoUpdatePolicy, holds: tuple[str, ...]
) -> tuple[Expectation, ...]:
    """What ``apt-config dump`` must show for ``policy`` (the same values :func:`conf_text` writes)."""
    if not policy.enabled:
        return (Expectation("APT::Periodic::Unattended-Upgrade", ("0",), default=("0",)),)
    found = [
        Expectation("APT::Periodic::Update-Package-Lists", ("1",)),
        Expectation("APT::Periodic::Unattended-Upgrade", ("1",)),
        Expectation("APT::Periodic::Enable", ("0",), how="not"),
        Expectation(f"{UU}Origins-Pattern", origins_for(os_info, policy)),
        Expectation(f"{UU}Allowed-Origins", ()),
    ]
    if holds:
        found.append(
            Expectation(f"{UU}Package-Blacklist", tuple(blacklist_entry(h) for h in holds), how="includes")
        )
    for key, value in _scalars(policy):
        boolean = value in ("true", "false")
        found.append(
            Expectation(f"{UU}{key}", (value,), default=("false",) if boolean else (), boolean=boolean)
        )
    return tuple(found)


# ------------------------------------------------------------------------------ reading back
def parse_apt_config(text: str) -> dict[str, tuple[str, ...]]:
    """``apt-config dump`` lines -> {key: values}; list items (``Key:: "v";``) collect under ``Key``."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _DUMP_LINE.match(line.strip())
        if match is None:
            continue
        key, value = match["key"], match["value"]
        if key.endswith("::"):
            found.setdefault(key[:-2], []).append(value)
        elif value:
            found[key] = [value]
        else:
            found.setdefault(key, [])
    return {k: tuple(v) for k, v in found.items()}


def parse_log(text: str) -> LastRun:
    """The last run in unattended-upgrades.log that was not a ``--dry-run`` (:class:`LastRun`)."""
    runs: list[list[tuple[str, str, str]]] = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        entry = (match["at"], match["level"], match["text"].strip())
        if entry[2].startswith(_PREAMBLE):
            continue
        if entry[2] == "Starting unattended upgrades script" or not runs:
            runs.append([])
        runs[-1].append(entry)
    real = [r for r in runs if any(e[2] == "Starting unattended upgrades script" for e in r)]
    real = [r for r in real if not any(e[2].startswith(_DRY_RUN) for e in r)]
    if not real:
        return LastRun(source=LOG_PATH)
    return _run_of(real[-1])


def _run_of(entries: list[tuple[str, str, str]]) -> LastRun:
    packages: tuple[str, ...] = ()
    errors = [text for _, level, text in entries if level in ("ERROR", "CRITICAL")]
    result = "incomplete"
    for _, _, text in entries:
        if text.startswith("Packages that will be upgraded:"):
            packages = tuple(text.split(":", 1)[1].split())
        elif text == "All upgrades installed":
            result = "upgraded"
        elif text.startswith("No packages found that can be upgraded unattended"):
            result = "nothing"
    if errors:
        result = "failed"
    return LastRun(
        started_at=entries[0][0],
        finished_at=entries[-1][0],
        result=result,
        packages=packages,
        error=errors[0] if errors else "",
        source=LOG_PATH,
    )
