"""Settings as the CLI loads them: the config file plus the global overrides (state dir, log format),
and logging configured once with the settings' secrets for redaction."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path

from orchestrator.config import Settings, load_settings
from orchestrator.logs import configure_logging


def load(path: Path, *, state_dir: Path | None = None, log_format: str = "") -> Settings:
    """``load_settings(path, state_dir=...)`` with ``--log-format`` applied, and logging configured."""
    settings = load_settings(path, state_dir=Path(state_dir).expanduser().absolute() if state_dir else None)
    if log_format:
        settings = replace(settings, logging=replace(settings.logging, format=log_format))
    configure_logging(settings.logging, secrets=settings.secrets)
    quiet_sdk_tracebacks()
    return settings


class SdkLineHandler(logging.StreamHandler):
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
