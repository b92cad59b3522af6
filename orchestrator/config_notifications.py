"""The ``[notifications]`` table: apprise URLs (secrets), per-event routing, pre-notice, templates.

```toml
[notifications]
urls = [{ env = "PATCHWAVE_NOTIFY_URL" }]        # apprise URLs; every event below goes to them
events = ["plan_published", "run_started", "vm_rolled_back", "run_finished", "run_halted"]  # default: all
prenotice = "12h"                                # window_prenotice this long before a window opens
owner_label = "owner"                            # VM label owner=team-web (or tag owner:team-web) -> @team-web
timeout = "10s"

[[notifications.routes]]                         # more destinations for some events
urls = [{ file = "/etc/patchwave/pager.url" }]
events = ["vm_rolled_back", "run_halted"]

[notifications.templates.run_halted]             # string.Template text with $fields
title = "patchwave: run $run_id halted"
body = "$reason\\n$owners"
```

Apprise URLs usually embed tokens, so they are given by reference. A plain string is accepted only
for the token-less generic webhooks (``json://``, ``xml://``, ``form://`` and their ``s`` variants)
without a password; every URL is kept as a :class:`~providers.base.Secret` (never logged), and the
referenced ones join the log redaction set. The table is not part of ``Settings.digest`` (it does not change a plan).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from orchestrator import secrets as secret_refs
from orchestrator.config import NOTIFY_EVENTS, MessageTemplate, NotificationSettings, NotifyRoute
from orchestrator.config_reader import TableReader, suggest, type_name
from orchestrator.notify_messages import FIELDS
from providers.base import Secret

KEYS = ("urls", "events", "prenotice", "owner_label", "timeout", "routes", "templates")
PLAIN_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")


def notifications_table(t: TableReader, *, environ: Mapping[str, str]) -> tuple[NotificationSettings, list[Secret]]:
    """Validate ``[notifications]``; also returns the URL secrets (for the log redactor).

    References inside lists are left unresolved by :func:`orchestrator.secrets.resolve_table`;
    they are resolved here.
    """
    found: list[Secret] = []
    routes: list[NotifyRoute] = []
    if t.has("urls") or t.has("events"):
        routes.append(NotifyRoute(urls=_urls(t, environ, found), events=_events(t)))
    for r in t.tables("routes"):
        r = r.check_keys(("urls", "events"))
        if not r.has("urls"):
            raise r.error("urls", "is required", 'write urls = [{ env = "PAGER_URL" }]')
        routes.append(NotifyRoute(urls=_urls(r, environ, found), events=_events(r)))
    settings = NotificationSettings(
        routes=tuple(routes),
        prenotice_s=t.duration("prenotice", 0, minimum=0),
        owner_label=t.text("owner_label", "owner") or "owner",
        templates=_templates(t.table("templates")),
        timeout_s=t.duration("timeout", 10),
    )
    return settings, found


def _events(t: TableReader) -> tuple[str, ...]:
    events = t.strings("events", NOTIFY_EVENTS)
    for event in events:
        if event not in NOTIFY_EVENTS:
            raise t.error("events", f"unknown event {event!r}", _event_hint(event))
    return tuple(dict.fromkeys(events))


def _event_hint(event: str) -> str:
    hint = suggest(event, NOTIFY_EVENTS)
    return hint if hint.startswith("did you mean") else f"use one of: {', '.join(NOTIFY_EVENTS)}"


def _urls(t: TableReader, environ: Mapping[str, str], found: list[Secret]) -> tuple[Secret, ...]:
    raw_items: Any = t.raw.get("urls", [])
    if not isinstance(raw_items, list):
        raise t.error("urls", f"must be a list, not {type_name(raw_items)}", 'write urls = [{ env = "NOTIFY_URL" }]')
    urls: list[Secret] = []
    for index, item in enumerate(raw_items):
        field = f"{t.field('urls')}[{index}]"
        if secret_refs.is_reference(item):
            secret = secret_refs.resolve_reference(item, file=Path(t.file), field=field, environ=environ)
            found.append(secret)  # a referenced URL is redacted wherever it would appear in a log
        elif isinstance(item, str) and item.strip():
            _check_plain(t, item.strip(), index)
            secret = Secret(item.strip())  # token-less, but handled like the others (never logged)
        else:
            raise t.error("urls", f"item {index} must be an apprise URL or a secret reference",
                          'write urls = [{ env = "NOTIFY_URL" }] or ["json://host:port/path"]')  # fmt: skip
        urls.append(secret)
    return tuple(urls)


def _check_plain(t: TableReader, url: str, index: int) -> None:
    """Refuse a plain URL that may embed a token (unknown scheme) or a password."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in PLAIN_SCHEMES or parts.password:
        # never echo the URL itself: it may be a secret
        raise t.error(
            "urls",
            f"item {index} ({parts.scheme or 'no scheme'}://...) may embed a token or password and is written in plain text",
            'give it by reference: { env = "NOTIFY_URL" } or { file = "/etc/patchwave/notify.url" }',
        )


def _templates(t: TableReader) -> tuple[MessageTemplate, ...]:
    templates = []
    for event in sorted(t.raw):
        if event not in NOTIFY_EVENTS:
            raise t.error(event, "unknown event", _event_hint(event))
        m = t.table(event, ("title", "body"))
        for key in ("title", "body"):
            text = m.text(key)
            template = Template(text)
            if not template.is_valid():
                raise m.error(key, "is not a valid template", "write $field or ${field}; a literal $ is $$")
            unknown = sorted(set(template.get_identifiers()) - set(FIELDS[event]))
            if unknown:
                raise m.error(key, f"unknown field ${unknown[0]}",
                              f"use the fields of {event}: {', '.join('$' + f for f in FIELDS[event])}")  # fmt: skip
        templates.append(MessageTemplate(event=event, title=m.text("title"), body=m.text("body")))
    return tuple(templates)
