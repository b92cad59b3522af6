"""Structured logging: structlog configured once, with a redaction processor.

Events have stable snake_case names (``snapshot_created``, ``guest_patch_failed``) and key/values;
bind run/step/vm as context (``log.bind(run=..., step=...)``). Two sinks (stdout is the CLI's, for
people):

* the **log file** (``<state dir>/logs/patchwave.log``, JSON lines, rotated at 10 MB, 5 kept): every
  event at ``[logging] level``;
* **stderr**: warnings and errors only (console rendering on a TTY, JSON lines otherwise), or every
  event with ``-v``/``--verbose``; ``format = "json"`` (``--log-format json``) is the machine mode:
  every event as JSON lines on stderr, as a CI log wants it.

The :class:`Redactor` replaces every known secret value (the ones ``load_settings`` resolved,
``Settings.secrets``) and the value of every secret-looking key (password, token, secret,
authorization, cookie, ticket, ...) with ``***`` — in event values, nested structures and the
rendered exception text. It is handed to structlog's processor chain, not kept in a global.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from orchestrator.config.settings import LoggingSettings
from orchestrator.secrets import is_secret_key
from providers.settings import Secret

REDACTED = "***"
#: Secrets shorter than this are only redacted where they are the whole value, not inside text.
MIN_SUBSTRING_SECRET = 4
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_LEVEL_OF = {**_LEVELS, "warn": logging.WARNING, "exception": logging.ERROR, "critical": logging.CRITICAL}
#: The log file rotates at this size, keeping this many old files.
LOG_FILE_BYTES = 10 * 1024 * 1024
LOG_FILE_BACKUPS = 5
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

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {
            key: REDACTED if is_secret_key(key) and key != "event" else self.redact(value)
            for key, value in event_dict.items()
        }


def log_file_of(state_dir: Path) -> Path:
    """Where the events of the processes using ``state_dir`` go (JSON lines, rotated)."""
    return state_dir / "logs" / "patchwave.log"


class _LogFile:
    """The rotating log file, opened at its first event once the state directory exists (patchwave
    never creates a state directory just to log into it: a dry run or a bad config leaves none)."""

    def __init__(self, path: Path, out: TextIO) -> None:
        self.path, self.out = path, out
        self.handler: logging.Handler | None = None
        self.off = False

    def write(self, level: int, line: str) -> None:
        if self.off:
            return
        if self.handler is None:
            if not self.path.parent.parent.is_dir():
                return  # no state directory (yet)
            try:
                self.path.parent.mkdir(exist_ok=True)
                self.handler = logging.handlers.RotatingFileHandler(
                    self.path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
                )
            except OSError as exc:  # a read-only or full state disk: the command still runs, said once
                self.off = True
                self.out.write(
                    f"warning: no log file ({self.path}: {exc.strerror or exc}); events go to stderr only\n"
                )
                return
            self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.handler.emit(logging.LogRecord("patchwave", level, "", 0, line, None, None))

    def close(self) -> None:
        self.off = True
        if self.handler is not None:
            self.handler.close()


class _Sinks:
    """The last processor: writes the redacted event to the log file (JSON, every event that passed
    the level) and to stderr (rendered) when it is at least ``stderr_level``; then drops it."""

    def __init__(self, out: TextIO, renderer: Any, stderr_level: int, file: _LogFile | None) -> None:
        self.out, self.renderer, self.stderr_level, self.file = out, renderer, stderr_level, file

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        level = _LEVEL_OF.get(str(event_dict.get("level", method_name)), logging.INFO)
        if self.file is not None:
            self.file.write(level, json.dumps(dict(event_dict), sort_keys=True, default=str))
        if level >= self.stderr_level:
            self.out.write(self.renderer(logger, method_name, dict(event_dict)) + "\n")
            self.out.flush()
        raise structlog.DropEvent


_current: list[_Sinks] = []  # the sinks configure_logging installed last (one per process)


def stop_log_file() -> None:
    """No more events to the log file in this process (a dry run writes nothing, its log included)."""
    for sinks in _current:
        if sinks.file is not None:
            sinks.file.close()


def configure_logging(
    settings: LoggingSettings,
    *,
    secrets: Iterable[Secret | str] = (),
    stream: TextIO | None = None,
    tty: bool | None = None,
    log_file: Path | None = None,
    verbose: bool = False,
) -> Redactor:
    """Configure structlog for the process (call once, early). Returns the redactor it installed.

    ``log_file``: every event as a JSON line there too (see the module doc); stderr gets warnings
    and errors only, unless ``verbose`` or the ``json`` format (machine mode: everything)."""
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
    level = _LEVELS[settings.level]
    everything = verbose or settings.format == "json"
    sinks = _Sinks(
        out,
        renderer,
        level if everything else max(level, logging.WARNING),
        _LogFile(log_file, out) if log_file is not None else None,
    )
    for previous in _current:
        if previous.file is not None:
            previous.file.close()
    _current[:] = [sinks]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,  # exception -> text, so the redactor sees it
            redactor,
            sinks,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return redactor


class SdkLineHandler(logging.StreamHandler[TextIO]):
    """The Temporal SDK logs each failed activity attempt with a traceback; the CLI keeps the one
    line (patchwave logs its own event with the reason) and drops the traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        record.exc_info = None
        record.exc_text = None
        super().emit(record)


def quiet_sdk_tracebacks() -> None:
    logger = logging.getLogger("temporalio")
    if any(isinstance(h, SdkLineHandler) for h in logger.handlers):
        return
    handler = SdkLineHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
