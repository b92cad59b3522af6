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
without a password; every URL is kept as a :class:`~providers.settings.Secret` (never logged), and the
referenced ones join the log redaction set. The table is not part of ``Settings.digest`` (it does not change a plan).

Every URL must be one apprise can use: apprise's own parser decides (``Apprise.instantiate``, what the
notifier calls to deliver), at load, so a mistyped URL is a config error instead of notifications
that silently never arrive. The error names the field and, for a service apprise knows, its scheme —
never the URL (it may hold a token); apprise's log lines about it are kept away from every handler.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from orchestrator import secrets as secret_refs
from orchestrator.config.events import FIELDS, NOTIFY_EVENTS
from orchestrator.config.settings import MessageTemplate, NotificationSettings, NotifyRoute
from providers.settings import Secret, SettingsError, SettingsReader, suggest, type_name

KEYS = ("urls", "events", "prenotice", "owner_label", "timeout", "routes", "templates")
PLAIN_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")
APPRISE_LOGGER = "apprise"


def notifications_table(
    t: SettingsReader, *, file: Path, environ: Mapping[str, str]
) -> tuple[NotificationSettings, list[Secret]]:
    """Validate ``[notifications]``; also returns the URL secrets (for the log redactor).

    References inside lists are left unresolved by :func:`orchestrator.secrets.resolve_table`;
    they are resolved here (a relative ``{ file = ... }`` against ``file``, the configuration).
    """
    found: list[Secret] = []
    routes: list[NotifyRoute] = []
    if t.has("urls") or t.has("events"):
        routes.append(NotifyRoute(urls=_urls(t, file, environ, found), events=_events(t)))
    for r in t.tables("routes"):
        r = r.check_keys(("urls", "events"))
        if not r.has("urls"):
            raise r.error("urls", "is required", 'write urls = [{ env = "PAGER_URL" }]')
        routes.append(NotifyRoute(urls=_urls(r, file, environ, found), events=_events(r)))
    settings = NotificationSettings(
        routes=tuple(routes),
        prenotice_s=t.seconds("prenotice", 0, minimum=0),
        owner_label=t.text("owner_label", "owner") or "owner",
        templates=_templates(t.table("templates")),
        timeout_s=t.seconds("timeout", 10),
    )
    return settings, found


def _events(t: SettingsReader) -> tuple[str, ...]:
    events = t.strings("events", NOTIFY_EVENTS)
    for event in events:
        if event not in NOTIFY_EVENTS:
            raise t.error("events", f"unknown event {event!r}", _event_hint(event))
    return tuple(dict.fromkeys(events))


def _event_hint(event: str) -> str:
    hint = suggest(event, NOTIFY_EVENTS)
    return hint if hint.startswith("did you mean") else f"use one of: {', '.join(NOTIFY_EVENTS)}"


def _urls(
    t: SettingsReader, file: Path, environ: Mapping[str, str], found: list[Secret]
) -> tuple[Secret, ...]:
    raw_items: Any = t.raw.get("urls", [])
    if not isinstance(raw_items, list):
        raise t.error(
            "urls", f"must be a list, not {type_name(raw_items)}", 'write urls = [{ env = "NOTIFY_URL" }]'
        )
    urls: list[Secret] = []
    for index, item in enumerate(raw_items):
        field = f"{t.field('urls')}[{index}]"
        if secret_refs.is_reference(item):
            secret = secret_refs.resolve_reference(item, file=file, field=field, environ=environ)
            found.append(secret)  # a referenced URL is redacted wherever it would appear in a log
        elif isinstance(item, str) and item.strip():
            _check_plain(t, item.strip(), index)
            secret = Secret(item.strip())  # token-less, but handled like the others (never logged)
        else:
            raise t.error("urls", f"item {index} must be an apprise URL or a secret reference",
                          'write urls = [{ env = "NOTIFY_URL" }] or ["json://host:port/path"]')  # fmt: skip
        _check_usable(t, secret, index)
        urls.append(secret)
    return tuple(urls)


@contextmanager
def quiet_apprise() -> Iterator[logging.Logger]:
    """apprise logs through the stdlib logger "apprise", naming URLs: keep it from every handler
    (the root logger's, and Python's last-resort stderr handler before logging is configured)."""
    logger = logging.getLogger(APPRISE_LOGGER)
    logger.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    yield logger


def _check_usable(t: SettingsReader, url: Secret, index: int) -> None:
    """Refuse a URL apprise cannot parse (unknown scheme, missing token...); never echo it."""
    import apprise  # lazy: only a configuration with notifications needs it

    with quiet_apprise():
        asset = apprise.AppriseAsset(app_id="patchwave", secure_logging=True)
        try:
            usable = apprise.Apprise.instantiate(url.reveal(), asset=asset) is not None
        except Exception:  # noqa: BLE001 - a plugin that chokes on the text refuses it too
            usable = False
    if usable:
        return
    scheme = _scheme(url.reveal())
    known = scheme and scheme in apprise.NotificationManager().schemas()  # type: ignore[no-untyped-call]
    what = f"a {scheme}:// URL apprise cannot parse (missing or malformed parts)" if known else (
        "not a URL of a service apprise knows")  # fmt: skip
    raise SettingsError(
        f"{t.field('urls')}[{index}]",
        f"apprise cannot use it: {what}",
        "write it as that service's apprise URL (https://github.com/caronc/apprise/wiki), e.g. json://host:port/path",
    )


def _scheme(url: str) -> str:
    """The scheme of ``url`` in lower case ("" for none or an unparsable URL)."""
    try:
        return urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError:  # e.g. an unclosed "[" in the host
        return ""


def _check_plain(t: SettingsReader, url: str, index: int) -> None:
    """Refuse a plain URL that may embed a token (unknown scheme) or a password."""
    try:
        scheme, password = _scheme(url), urlsplit(url).password
    except ValueError:  # unparsable: apprise cannot use it either (_check_usable says so)
        scheme, password = _scheme(url), None
    if scheme not in PLAIN_SCHEMES or password:
        # never echo the URL itself: it may be a secret
        raise t.error(
            "urls",
            f"item {index} ({scheme or 'no scheme'}://...) may embed a token or password and is written in plain text",
            'give it by reference: { env = "NOTIFY_URL" } or { file = "/etc/patchwave/notify.url" }',
        )


def _templates(t: SettingsReader) -> tuple[MessageTemplate, ...]:
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
