"""Notifications through apprise URLs: :class:`Notifier` ``send(event, context)`` never raises.

Which URLs get an event is ``[notifications]`` routing (:class:`~orchestrator.config.NotifyRoute`);
the text is :func:`orchestrator.notify.templates.render`. A failed delivery is logged (event
``notification_failed``) and, with a run id and a fact store, recorded as a step result
(``step_id="notify"``, ``action="notify_<event>"``) — it never fails or slows a run beyond the
per-delivery timeout.

URLs are secrets: they are never logged, never put in an error, never returned. apprise's own log
lines (which can name hosts or tokens) are kept away from the root logger and only their gist is
kept, with every part of every URL redacted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import structlog

from orchestrator.config.events import NOTIFY_EVENTS, NotifyEvent
from orchestrator.config.notifications import quiet_apprise
from orchestrator.config.settings import NotificationSettings
from orchestrator.logs import Redactor
from orchestrator.notify.templates import Message, render
from providers.settings import Secret

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What happened to one event: counts, and one redacted reason per failed destination."""

    event: str
    sent: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed == 0


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _url_parts(url: Secret) -> list[str]:
    """The URL and every piece of it that could be a token (for redacting apprise's messages)."""
    text = url.reveal()
    parts = urlsplit(text)
    pieces = [text, parts.netloc, parts.hostname or "", parts.username or "", parts.password or ""]
    pieces += [segment for segment in parts.path.split("/") if segment]
    pieces += [value for _, value in parse_qsl(parts.query)]
    return [p for p in pieces if len(p) >= 4]


class DeliveryJournal(Protocol):
    """Where deliveries are on record (the fact store's step journal, step "notify")."""

    def record_delivery(
        self, run_id: str, event: str, *, key: str, ok: bool, sent: int, failed: int, error: str
    ) -> None: ...

    def delivered(self, run_id: str, key: str) -> bool: ...


class Notifier:
    """Sends events to the configured apprise URLs. Thread-safe (one delivery at a time)."""

    def __init__(self, settings: NotificationSettings, *, facts: DeliveryJournal | None = None) -> None:
        self.settings = settings
        self.facts = facts  # a FactStore (optional): deliveries and failures are recorded there
        self._lock = threading.Lock()
        self._redactor = Redactor(
            p for route in settings.routes for url in route.urls for p in _url_parts(url)
        )

    def destinations(self, event: str) -> list[tuple[str, Secret]]:
        """(label, url) for ``event``; the label ("route 1 url 2 (json)") is what logs may show."""
        found = []
        for r_index, route in enumerate(self.settings.routes, start=1):
            if event not in route.events:
                continue
            for u_index, url in enumerate(route.urls, start=1):
                scheme = urlsplit(url.reveal()).scheme or "?"
                found.append((f"route {r_index} url {u_index} ({scheme})", url))
        return found

    def send(
        self, event: NotifyEvent | str, context: Mapping[str, object], *, run_id: str = "", key: str = ""
    ) -> Delivery:
        """Render and deliver ``event``; never raises (a bad event name or template included).

        ``key`` identifies this notice within the run (default: the event) in the fact-store record,
        so a caller can tell whether it was delivered already (:meth:`delivered`).
        """
        try:
            if event not in NOTIFY_EVENTS:
                raise ValueError(f"unknown notification event {event!r}")
            message = render(NotifyEvent(event), context, self.settings)
            delivery = self._deliver(message)
        except Exception as exc:  # noqa: BLE001 - a notification must never break the run
            delivery = Delivery(
                event, failed=1, errors=(self._redactor.redact_text(f"{type(exc).__name__}: {exc}"),)
            )
        self._report(delivery, run_id, key or event)
        return delivery

    def delivered(self, run_id: str, key: str) -> bool:
        """True when the fact store records a successful delivery of ``key`` for ``run_id``."""
        if self.facts is None or not run_id:
            return False
        return self.facts.delivered(run_id, key)

    def _deliver(self, message: Message) -> Delivery:
        targets = self.destinations(message.event)
        if not targets:
            return Delivery(message.event)
        import apprise  # lazy: only a configured notifier needs it

        sent, errors = 0, []
        with self._lock, quiet_apprise() as logger:
            capture = _Capture()
            logger.addHandler(capture)
            try:
                for label, url in targets:
                    capture.lines.clear()
                    ok, why = self._one(apprise, url, message)
                    if ok:
                        sent += 1
                    else:
                        detail = "; ".join(capture.lines[-2:]) or why
                        errors.append(f"{label}: {self._redactor.redact_text(detail)}"[:300])
            finally:
                logger.removeHandler(capture)
        return Delivery(message.event, sent=sent, failed=len(errors), errors=tuple(errors))

    def _one(self, apprise: Any, url: Secret, message: Message) -> tuple[bool, str]:
        asset = apprise.AppriseAsset(app_id="patchwave", app_desc="patchwave", secure_logging=True)
        server = apprise.Apprise.instantiate(url.reveal(), asset=asset)
        if server is None:
            return False, "not a usable apprise URL (unknown scheme or missing parts)"
        server.socket_connect_timeout = float(self.settings.timeout_s)
        server.socket_read_timeout = float(self.settings.timeout_s)
        try:
            ok = bool(server.notify(body=message.body, title=message.title, notify_type=message.kind))
        except Exception as exc:  # noqa: BLE001 - a plugin bug is a failed delivery, not a crash
            return False, f"{type(exc).__name__}: {exc}"
        return ok, "" if ok else "the service refused the notification"

    def _report(self, delivery: Delivery, run_id: str, key: str) -> None:
        if not delivery.sent and not delivery.failed:
            return  # nothing is routed for this event
        if delivery.ok:
            log.info("notification_sent", notification=delivery.event, run=run_id or None, sent=delivery.sent)
        else:
            log.warning("notification_failed", notification=delivery.event, run=run_id or None, sent=delivery.sent,
                        failed=delivery.failed, errors=list(delivery.errors))  # fmt: skip
        if self.facts is None or not run_id:
            return
        try:  # on record either way: who was told what, and what could not be delivered
            self.facts.record_delivery(
                run_id, delivery.event, key=key, ok=delivery.ok, sent=delivery.sent, failed=delivery.failed,
                error="; ".join(delivery.errors)[:1000],
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - recording is best effort too
            log.warning("notification_record_failed", notification=delivery.event, error=str(exc))
