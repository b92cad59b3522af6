"""The ``[windows.X]`` and ``[holidays.X]`` tables: maintenance windows and their blackout dates.

```toml
[windows.weekend]
cron = "0 22 * * SAT"            # or: rrule = "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0"
duration = "6h"                  # elapsed time
timezone = "Europe/Berlin"
cutoff = "30m"
exdates = ["2026-12-26", "2027-01-02T22:00"]   # a date: no window starting that day; a date-time: that one
holidays = ["de"]                # [holidays.de] lists: no window starts on those dates

[holidays.de]
dates = ["2026-12-25", "2026-12-26"]
path = "holidays-de.ics"         # optional: one YYYY-MM-DD per line, or an iCalendar file (VEVENT DTSTARTs)
```
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from orchestrator.config.names import NAME, NAME_FIX
from orchestrator.windows import NoWindow, WindowSpec, next_window
from orchestrator.windows.rules import RuleError, croniter, parse_rrule  # the one croniter import
from providers.settings import SettingsReader, suggest

WINDOW_KEYS = ("cron", "rrule", "duration", "timezone", "cutoff", "exdates", "holidays")
_ICS_DATE = re.compile(r"^DTSTART(?:;[^:]*)?:(\d{8})", re.IGNORECASE)
#: A fixed probe time for "does this window ever open?" (config loading reads no clock).
_PROBE = datetime(2026, 1, 1, tzinfo=UTC)


def holidays_table(t: SettingsReader, base: Path) -> dict[str, tuple[str, ...]]:
    """``[holidays.NAME]`` -> sorted ISO dates (from ``dates`` and the optional ``path``).

    (``path``, not ``file``: a table ``{ file = "..." }`` is a secret reference.)
    """
    lists: dict[str, tuple[str, ...]] = {}
    for name in sorted(t.raw):
        if not NAME.match(name):
            raise t.error(name, f"{name!r} is not a valid holiday list name", NAME_FIX)
        h = t.table(name, ("dates", "path"))
        found = {_date(h, "dates", text) for text in h.strings("dates")}
        path = h.path("path", base=base)
        if path is not None:
            found |= _dates_from_file(h, path)
        lists[name] = tuple(sorted(found))
    return lists


def _date(t: SettingsReader, key: str, text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise t.error(
            key, f"{text!r} is not a date", 'write dates as "YYYY-MM-DD", e.g. "2026-12-25"'
        ) from None


def _dates_from_file(t: SettingsReader, path: Path) -> set[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise t.error(
            "path",
            f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})",
            "point file at a readable list of dates (one YYYY-MM-DD per line) or an .ics file",
        ) from None
    found: set[str] = set()
    if "BEGIN:VCALENDAR" in text.upper():
        for line in text.splitlines():
            if match := _ICS_DATE.match(line.strip()):
                raw = match.group(1)
                found.add(f"{raw[:4]}-{raw[4:6]}-{raw[6:]}")
        return found
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            found.add(date.fromisoformat(line).isoformat())
        except ValueError:
            raise t.error(
                "path",
                f"{path}:{number}: {line!r} is not a date",
                "write one YYYY-MM-DD per line (# starts a comment)",
            ) from None
    return found


def windows_table(t: SettingsReader, holidays: dict[str, tuple[str, ...]]) -> tuple[WindowSpec, ...]:
    specs = []
    for name in sorted(t.raw):
        if not NAME.match(name):
            raise t.error(name, f"{name!r} is not a valid window name", NAME_FIX)
        specs.append(_window(name, t.table(name, WINDOW_KEYS), holidays))
    return tuple(specs)


def _window(name: str, w: SettingsReader, holidays: dict[str, tuple[str, ...]]) -> WindowSpec:
    cron, rule = _recurrence(w)
    zone = w.text("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError, OSError):
        raise w.error(
            "timezone", f"unknown time zone {zone!r}", 'write an IANA name, e.g. "Europe/Berlin"'
        ) from None
    if not w.has("duration"):
        raise w.error("duration", "is required", 'write e.g. duration = "6h"')
    duration = w.seconds("duration", 0)
    cutoff = w.seconds("cutoff", 0, minimum=0)
    if cutoff >= duration:
        raise w.error("cutoff", "must be shorter than the window's duration", 'write e.g. cutoff = "30m"')
    blackout, exdates = _exdates(w)
    for list_name in w.strings("holidays"):
        if list_name not in holidays:
            known = sorted(holidays)
            hint = suggest(list_name, known) if known else f"define [holidays.{list_name}] with dates = [...]"
            raise w.error("holidays", f"unknown holiday list {list_name!r}", hint)
        blackout |= set(holidays[list_name])
    spec = WindowSpec(name=name, cron=cron, duration_s=duration, timezone=zone, cutoff_s=cutoff, rrule=rule,
                      blackout_dates=tuple(sorted(blackout)), exdates=tuple(sorted(exdates)))  # fmt: skip
    if rule:
        try:
            next_window(spec, _PROBE)
        except NoWindow:
            raise w.error("rrule", "never opens after 2026-01-01 (COUNT/UNTIL ended, or everything is a blackout)",
                          "extend UNTIL/COUNT or remove the rule") from None  # fmt: skip
    return spec


def _recurrence(w: SettingsReader) -> tuple[str, str]:
    if w.has("cron") == w.has("rrule"):
        raise w.error("cron", "needs exactly one of cron and rrule",
                      'write cron = "0 22 * * SAT" or rrule = "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0"')  # fmt: skip
    if w.has("rrule"):
        text = w.text("rrule", required=True)
        try:
            parse_rrule(text)
        except RuleError as exc:
            raise w.error(
                "rrule", str(exc), 'write e.g. rrule = "FREQ=WEEKLY;BYDAY=SA;BYHOUR=22;BYMINUTE=0"'
            ) from None
        return "", text
    cron = w.text("cron", required=True)
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise w.error("cron", f"{cron!r} is not a five-field cron expression",
                      'write e.g. cron = "0 22 * * SAT" (minute hour day month weekday)')  # fmt: skip
    try:
        croniter(cron, datetime(2026, 1, 1)).get_next(datetime)
    except (ValueError, KeyError, ArithmeticError) as exc:  # CroniterBadDateError: e.g. February 30
        raise w.error("cron", f"{cron!r} never fires ({exc})", "pick a day that exists") from None
    return cron, ""


def _exdates(w: SettingsReader) -> tuple[set[str], set[str]]:
    dates: set[str] = set()
    moments: set[str] = set()
    for text in w.strings("exdates"):
        try:
            if "T" not in text and " " not in text.strip():
                dates.add(date.fromisoformat(text).isoformat())
                continue
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise w.error(
                "exdates",
                f"{text!r} is neither a date nor a local date-time",
                'write "2026-12-24" (no window that day) or "2026-12-26T22:00" (that occurrence)',
            ) from None
        if moment.tzinfo is not None:
            raise w.error(
                "exdates",
                f"{text!r} has a UTC offset; exdates are local times in the window's timezone",
                'drop the offset, e.g. "2026-12-26T22:00"',
            )
        moments.add(moment.strftime("%Y-%m-%dT%H:%M"))
    return dates, moments
