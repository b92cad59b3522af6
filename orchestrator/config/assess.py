"""The ``[assess]`` and ``[[baselines]]`` tables: vulnerability feeds, the fleet assessment's schedule,
exposure, and the patch baselines that groups pick (``[[groups]] baseline = "NAME"``).

```toml
[assess]
feeds = ["https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json",
         "/srv/feeds/debian-all.zip"]       # what `patchwave feeds load` (no argument) and `serve` load
releases = ["bookworm"]          # Debian Security Tracker: keep only these releases ([] = all)
every = "6h"                     # `serve`: assess the whole fleet this often ("0" = never, the default)
refresh_feeds = "24h"            # `serve`: reload the configured feeds older than this before assessing
stale = "48h"                    # `feeds list` warns about a feed loaded longer ago than this
exposure_tags = ["internet-facing"]   # these VM tags move a VM up the risk order (after KEV and CVSS)
notify_severity = "critical"     # vuln_found when a new CVE at least this severe appears (KEV: always)
batch_size = 500                 # VMs per assessment activity of `serve` (at most 500)
parallel = 8                     # guests asked at the same time (per CLI run, per activity)

[[baselines]]
name = "debian-prod"
os = "debian"                    # debian | rhel | suse
classification = "security"      # security | bugfix | all
min_severity = "important"       # security updates below this are not approved ("" = any)
approve_after = "7d"             # a fix is approved this long after its release ("0" = at once)
approve_kev = "immediately"      # fixes of known-exploited CVEs: "immediately" or a duration
approved = ["openssl*"]          # always approved (glob on the name, or "name=version")
rejected = ["linux-image-*"]     # never approved
holds = ["postgresql-15"]        # never updated (kept at the installed version)
```

Neither table is read by the workflows. ``[assess]`` does not change what a run does, so it is not part
of ``Settings.digest``; ``[[baselines]]`` decide what a run may install, so they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.names import NAME, NAME_FIX
from providers.settings import SettingsReader

ASSESS_KEYS = ("feeds", "releases", "every", "refresh_feeds", "stale", "exposure_tags", "notify_severity",
               "batch_size", "parallel")  # fmt: skip
BASELINE_KEYS = ("name", "os", "classification", "min_severity", "approve_after", "approve_kev", "approved",
                 "rejected", "holds")  # fmt: skip
#: The rated part of ``orchestrator.vulns.severity.SCALE`` (most severe first; a test keeps them equal).
SEVERITIES = ("critical", "important", "moderate", "low")
OS_FAMILIES = ("debian", "rhel", "suse")
CLASSIFICATIONS = ("security", "bugfix", "all")
#: The most VMs one assessment activity takes (its input and output stay small whatever the fleet).
MAX_BATCH = 500
_PACKAGE = re.compile(r"^[A-Za-z0-9*?\[\]][A-Za-z0-9*?\[\]+._:~-]*(=[A-Za-z0-9.+~:_^-]+)?$")


@dataclass(frozen=True)
class AssessSettings:
    feeds: tuple[str, ...] = ()  # paths (absolute, resolved against the config file) or https:// URLs
    releases: tuple[str, ...] = ()  # Debian codenames the tracker is cut to; () = all
    every_s: int = 0  # serve's fleet assessment interval; 0 = no schedule
    refresh_feeds_s: int = 86400
    stale_s: int = 2 * 86400
    exposure_tags: tuple[str, ...] = ("internet-facing",)
    notify_severity: str = "critical"
    batch_size: int = MAX_BATCH
    parallel: int = 8


@dataclass(frozen=True)
class BaselineSettings:
    """A patch baseline: which pending updates of a VM of family ``os`` a run may install
    (:func:`orchestrator.vulns.approval.approve` says exactly how)."""

    name: str
    os: str  # debian | rhel | suse
    classification: str = "security"  # security | bugfix | all
    min_severity: str = ""  # "" = any severity
    approve_after_s: int = 0  # seconds after the fix's release
    approve_kev_s: int = 0  # fixes of KEV CVEs: 0 = immediately
    approved: tuple[str, ...] = ()  # "glob" or "name=version"
    rejected: tuple[str, ...] = ()
    holds: tuple[str, ...] = ()  # package globs


def assess_table(t: SettingsReader, base: Path) -> AssessSettings:
    return AssessSettings(
        feeds=tuple(_feed(t, source, base) for source in t.strings("feeds")),
        releases=t.strings("releases"),
        every_s=t.seconds("every", 0, minimum=0),
        refresh_feeds_s=t.seconds("refresh_feeds", 86400, minimum=0),
        stale_s=t.seconds("stale", 2 * 86400),
        exposure_tags=t.strings("exposure_tags", ("internet-facing",)),
        notify_severity=t.text("notify_severity", "critical", choices=SEVERITIES),
        batch_size=t.integer("batch_size", MAX_BATCH, low=1, high=MAX_BATCH),
        parallel=t.integer("parallel", 8, low=1, high=64),
    )


def _feed(t: SettingsReader, source: str, base: Path) -> str:
    if source.startswith("http://"):
        raise t.error("feeds", f"{source!r}: plain http is refused", "use the https:// URL of the feed")
    if not source:
        raise t.error("feeds", "contains an empty entry", 'write feeds = ["/path/to/all.zip", "https://..."]')
    if source.startswith("https://"):
        return source
    path = Path(source).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def baselines_table(top: SettingsReader) -> tuple[BaselineSettings, ...]:
    found: list[BaselineSettings] = []
    for t in top.tables("baselines"):
        t = t.check_keys(BASELINE_KEYS)
        name = t.text("name", required=True)
        if not NAME.match(name):
            raise t.error("name", f"{name!r} is not a valid baseline name", NAME_FIX)
        if name in (b.name for b in found):
            raise t.error(
                "name", f"baseline {name!r} is defined twice", "give each [[baselines]] a unique name"
            )
        found.append(BaselineSettings(
            name=name, os=t.text("os", required=True, choices=OS_FAMILIES),
            classification=t.text("classification", "security", choices=CLASSIFICATIONS),
            min_severity=t.text("min_severity", "", choices=("", *SEVERITIES)),
            approve_after_s=t.seconds("approve_after", 0, minimum=0),
            approve_kev_s=_kev_delay(t), approved=_packages(t, "approved"), rejected=_packages(t, "rejected"),
            holds=_packages(t, "holds", versions=False),
        ))  # fmt: skip
    return tuple(found)


def _kev_delay(t: SettingsReader) -> int:
    if t.raw.get("approve_kev", "immediately") == "immediately":
        return 0
    return t.seconds("approve_kev", 0, minimum=0)


def _packages(t: SettingsReader, key: str, *, versions: bool = True) -> tuple[str, ...]:
    entries = t.strings(key)
    for entry in entries:
        if not _PACKAGE.match(entry) or (not versions and "=" in entry):
            example = '"openssl*"' + (', "openssl=3.0.15-1~deb12u1"' if versions else "")
            raise t.error(key, f"{entry!r} is not a package name or glob" + (" (with =version)" if versions else ""),
                          f"write {key} = [{example}]")  # fmt: skip
    return entries


def group_baselines(t: SettingsReader, baselines: tuple[BaselineSettings, ...]) -> tuple[str, ...]:
    """A ``[[groups]]`` table's ``baseline``: one name or a list, at most one per OS family."""
    raw = t.raw.get("baseline", [])
    names = (t.text("baseline", required=True),) if isinstance(raw, str) else t.strings("baseline")
    known = {b.name: b for b in baselines}
    families: dict[str, str] = {}
    for name in names:
        if name not in known:
            choices = ", ".join(known) or "none defined: add a [[baselines]] table"
            raise t.error("baseline", f"unknown baseline {name!r}", f"use one of: {choices}")
        family = known[name].os
        if family in families:
            raise t.error("baseline", f"{families[family]!r} and {name!r} are both for os {family!r}",
                          "pick one baseline per OS family")  # fmt: skip
        families[family] = name
    return names
