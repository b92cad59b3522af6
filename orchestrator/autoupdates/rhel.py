"""dnf-automatic (RHEL 8+, Fedora, Rocky, Alma, Oracle, Amazon Linux 2023): files and read-back (pure).

dnf-automatic has no drop-in directory for its own settings (checked against the sources): dnf 4
reads exactly one file, the one ``dnf-automatic.service`` passes (``/usr/bin/dnf-automatic
/etc/dnf/automatic.conf --timer``); dnf5's ``dnf5 automatic`` reads
``/usr/share/dnf5/dnf5-plugins/automatic.conf`` (defaults), the deprecated
``/etc/dnf/dnf5-plugins/automatic.conf``, then ``/etc/dnf/automatic.conf`` (later wins; the
``libdnf5.conf.d`` drop-ins are for dnf's main configuration only). So patchwave writes all of
``/etc/dnf/automatic.conf`` (the first time it keeps the file as it was as
``automatic.conf.patchwave-orig``):

* ``[commands]`` ``upgrade_type = security``, ``download_updates = yes``, ``apply_updates = yes``
  (what ``dnf-automatic.timer`` / ``dnf5-automatic.timer`` do), ``random_sleep = 0`` (the timer
  already randomises), ``reboot = never`` — or ``when-needed`` with dnf's documented
  ``reboot_command``; ``reboot = "window"`` is patchwave's reboot timer, so ``never`` here;
* ``[emitters]`` ``emit_via = stdio`` (the service's output goes to the journal), plus ``email``
  (``[email] email_to``, through the SMTP server on ``localhost``) when ``mail`` is set;
* ``[base]`` (dnf's own options, for dnf-automatic only) ``excludepkgs`` = the held packages: the
  updater cannot see them, while patchwave's own ``dnf install name-version`` is unaffected (a
  ``versionlock`` would block both).
"""

from __future__ import annotations

import configparser
import re

from orchestrator.autoupdates.findings import Expectation
from orchestrator.autoupdates.policy import AutoUpdatePolicy
from orchestrator.autoupdates.units import DNF_REBOOT_COMMAND

CONF_PATH = "/etc/dnf/automatic.conf"
#: The files dnf5 reads, in order (dnf 4 reads only CONF_PATH).
DNF5_CONF_PATHS = (
    "/usr/share/dnf5/dnf5-plugins/automatic.conf",
    "/etc/dnf/dnf5-plugins/automatic.conf",
    CONF_PATH,
)
#: dnf 4's built-in values (dnf/automatic/main.py) for keys the file does not set.
DNF4_DEFAULTS = {
    "commands.upgrade_type": ("default",),
    "commands.apply_updates": ("no",),
    "commands.download_updates": ("no",),
    "commands.reboot": ("never",),
    "emitters.emit_via": ("email", "stdio", "motd"),
}
_LIST_KEYS = frozenset({"emitters.emit_via", "base.excludepkgs", "base.exclude", "email.email_to"})


def conf_text(policy: AutoUpdatePolicy, holds: tuple[str, ...]) -> str:
    lines = [
        f"# Managed by patchwave (`patchwave autoupdates apply`): group {_group(policy)}, mode {policy.mode!r}.",
        "# The next apply overwrites changes made here (the original is automatic.conf.patchwave-orig);",
        "# `patchwave autoupdates status` reports drift. dnf-automatic has no drop-in directory.",
        "[commands]",
        *(f"{key} = {value}" for key, value in _commands(policy)),
        "",
        "[emitters]",
        f"emit_via = {', '.join(_emitters(policy))}",
    ]
    if policy.mail:
        lines += ["", "[email]", "email_from = root", f"email_to = {policy.mail}", "email_host = localhost"]
    lines += ["", "[base]", "# dnf.conf options for dnf-automatic only", "debuglevel = 1"]
    if holds:
        lines += ["# held for patchwave's pinned rollout", f"excludepkgs = {' '.join(holds)}"]
    return "\n".join(lines) + "\n"


def _group(policy: AutoUpdatePolicy) -> str:
    return repr(policy.group or "default")


def _commands(policy: AutoUpdatePolicy) -> list[tuple[str, str]]:
    reboot = "when-needed" if policy.reboot == "when-needed" else "never"
    pairs = [("upgrade_type", "security"), ("random_sleep", "0"), ("download_updates", "yes"),
             ("apply_updates", "yes"), ("reboot", reboot)]  # fmt: skip
    if reboot == "when-needed":
        pairs.append(("reboot_command", f'"{DNF_REBOOT_COMMAND}"'))
    return pairs


def _emitters(policy: AutoUpdatePolicy) -> tuple[str, ...]:
    return ("stdio", "email") if policy.mail else ("stdio",)


def expectations(policy: AutoUpdatePolicy, holds: tuple[str, ...]) -> tuple[Expectation, ...]:
    if not policy.enabled:
        return ()
    found = [
        Expectation("commands.upgrade_type", ("security",)),
        Expectation("commands.apply_updates", ("yes",), boolean=True),
        Expectation("commands.download_updates", ("yes",), boolean=True),
        Expectation("commands.reboot", ("when-needed" if policy.reboot == "when-needed" else "never",)),
        Expectation("emitters.emit_via", _emitters(policy)),
    ]
    if policy.mail:
        found.append(Expectation("email.email_to", (policy.mail,)))
    if holds:
        found.append(Expectation("base.excludepkgs", holds, how="includes"))
    return tuple(found)


def parse_conf(texts: list[str], *, dnf5: bool) -> dict[str, tuple[str, ...]]:
    """The effective settings from the files read in order (``section.key`` -> values); dnf 4's
    built-in defaults fill what its one file leaves unset (dnf5's defaults are its first file)."""
    found: dict[str, tuple[str, ...]] = {} if dnf5 else dict(DNF4_DEFAULTS)
    for text in texts:
        parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
        try:
            parser.read_string(text)
        except configparser.Error:
            continue  # dnf refuses it too; the drift shows as missing settings
        for section in parser.sections():
            for key, value in parser.items(section):
                name = f"{section}.{key}"
                found[name] = _values(name, value)
    if "base.exclude" in found:  # dnf's older name of excludepkgs
        found["base.excludepkgs"] = found.get("base.excludepkgs", ()) + found.pop("base.exclude")
    return found


def _values(name: str, value: str) -> tuple[str, ...]:
    value = value.strip().strip('"')
    if name in _LIST_KEYS:
        return tuple(v for v in re.split(r"[,\s]+", value) if v)
    return (value,)
