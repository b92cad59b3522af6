"""Structured logging: structlog configured once, with a redaction processor.

Events have stable snake_case names (``snapshot_created``, ``guest_patch_failed``) and key/values;
bind run/step/vm as context (``log.bind(run=..., step=...)``). Output goes to stderr (stdout is the
CLI's): JSON for machines, console rendering on a TTY (``format = "auto"``).

The :class:`Redactor` replaces every known secret value (the ones ``load_settings`` resolved,
``Settings.secrets``) and the value of every secret-looking key (password, token, secret,
authorization, cookie, ticket, ...) with ``***`` — in event values, nested structures and the
rendered exception text. It is handed to structlog's processor chain, not kept in a global.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog

from orchestrator.config import LoggingSettings
from orchestrator.secrets import is_secret_key
from providers.base import Secret

REDACTED = "***"
#: Secrets shorter than this are only redacted where they are the whole value, not inside text.
MIN_SUBSTRING_SECRET = 4
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# "Authorization: Bearer x", "Cookie: a=b", "PVEAuthCookie=..." inside free text (e.g. an exception).
_HEADERS = re.compile(
    r"(?im)\b(authorization|cookie|set-cookie|pveauthcookie|csrfpreventiontoken)\b(\s*[:=]\s*)([^\r\n,;]+)"
)


class Redactor:
    """A structlog processor; also usable on its own (:meth:`redact`, :meth:`redact_text`)."""

    def __init__(self, secrets: Iterable[Secret | str] = ()) -> None:
        values = {s.reveal() if isinstance(s, Secret) else str(s) for s in secrets}
        values.discard("")
        self._whole = frozenset(values)
        long_values = sorted((v for v in values if len(v) >= MIN_SUBSTRING_SECRET), key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in long_values)) if long_values else None

    def redact_text(self, text: str) -> str:
        if text in self._whole:
            return REDACTED
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _HEADERS.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)

    def redact(self, value: Any) -> Any:
        if isinstance(value, Secret):
            return REDACTED
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {k: REDACTED if is_secret_key(k) else self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, BaseException):
            return self.redact_text(str(value))
        return value

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {
            key: REDACTED if is_secret_key(key) and key != "event" else self.redact(value)
            for key, value in event_dict.items()
        }


def configure_logging(
    settings: LoggingSettings,
    *,
    secrets: Iterable[Secret | str] = (),
    stream: TextIO | None = None,
    tty: bool | None = None,
) -> Redactor:
    """Configure structlog for the process (call once, early). Returns the redactor it installed."""
    out = stream if stream is not None else sys.stderr
    console = settings.format == "console" or (
        settings.format == "auto"
        and (tty if tty is not None else bool(getattr(out, "isatty", lambda: False)()))
    )
    redactor = Redactor(secrets)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if console
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,  # exception -> text, so the redactor sees it
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return redactor
