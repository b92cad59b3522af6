"""Secret references in the configuration, and what counts as a secret-looking key.

A secret is never written in the configuration itself: ``password = { env = "VCENTER_PASSWORD" }``
or ``password = { file = "/etc/patchwave/vc.pass" }``. :func:`resolve_table` walks a table, turns
each reference into a :class:`providers.settings.Secret` and refuses a secret-named key holding a plain
string. The resolved values are returned to the caller (for the log redactor) — there is no
process-wide registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from orchestrator.errors import ConfigError
from providers.settings import Secret

#: Words that make a key secret-looking (matched on ``_``/``-``/``.``-separated parts).
SECRET_WORDS = frozenset(
    {"password", "passwd", "pass", "passphrase", "secret", "token", "key", "apikey",
     "authorization", "cookie", "ticket", "credential", "credentials", "csrf", "csrfpreventiontoken"}
)  # fmt: skip
#: A key whose last part is one of these names *about* a secret, not the secret ("key_file").
_NOT_SECRET_SUFFIXES = frozenset(
    {"file", "path", "name", "id", "ids", "type", "field", "url", "user", "mode", "env", "ref",
     "count", "len", "length", "expires", "required", "set", "names"}
)  # fmt: skip
_SPLIT = re.compile(r"[_\-.\s]+")
REFERENCE_FIX = 'use { env = "NAME" } or { file = "/path" }'


def is_secret_key(name: object) -> bool:
    """True for keys like ``password``, ``api_key``, ``token_value``, ``Authorization``; not ``key_file``."""
    if not isinstance(name, str):
        return False
    parts = [p for p in _SPLIT.split(name.strip().lower()) if p]
    if not parts or parts[-1] in _NOT_SECRET_SUFFIXES:
        return False
    return any(p in SECRET_WORDS for p in parts)


def is_reference(value: object) -> TypeGuard[Mapping[str, object]]:
    """``{ env = "X" }`` or ``{ file = "/path" }`` (exactly one key)."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("env", "file")


def resolve_reference(
    ref: Mapping[str, Any], *, file: Path, field: str, environ: Mapping[str, str]
) -> Secret:
    """Turn one reference into a :class:`Secret`; a missing variable or unreadable file is a ConfigError."""
    (kind, target), = ref.items()  # fmt: skip
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(str(file), f"{field}.{kind}", "must be a non-empty string", REFERENCE_FIX)
    if kind == "env":
        if target not in environ:
            raise ConfigError(
                str(file),
                field,
                f"environment variable {target} is not set",
                f'export {target}=... before running patchwave, or use {{ file = "/path" }}',
            )
        value = environ[target]
    else:
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = file.parent / path
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(
                str(file),
                field,
                f"cannot read secret file {path} ({reason})",
                f'create {path} (mode 0600) holding only the secret, or use {{ env = "NAME" }}',
            ) from None
    if not value:
        raise ConfigError(
            str(file), field, f"the secret from {kind} {target!r} is empty", "put the secret there"
        )
    return Secret(value)


def resolve_table(
    table: Mapping[str, Any], *, file: Path, prefix: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[Secret]]:
    """A copy of ``table`` with references resolved (recursively); also the Secrets found.

    A secret-named key holding a plain value (string or number) is refused.
    """
    resolved: dict[str, Any] = {}
    found: list[Secret] = []
    for key, value in table.items():
        field = f"{prefix}.{key}" if prefix else str(key)
        if is_reference(value):
            secret = resolve_reference(value, file=file, field=field, environ=environ)
            resolved[key] = secret
            found.append(secret)
        elif isinstance(value, Mapping):
            if "env" in value or "file" in value:
                raise ConfigError(
                    str(file), field, "a secret reference takes exactly one of env/file", REFERENCE_FIX
                )
            resolved[key], inner = resolve_table(value, file=file, prefix=field, environ=environ)
            found.extend(inner)
        elif isinstance(value, list):
            items: list[Any] = []
            for index, item in enumerate(value):
                if isinstance(item, Mapping) and not is_reference(item):
                    item, inner = resolve_table(item, file=file, prefix=f"{field}[{index}]", environ=environ)
                    found.extend(inner)
                items.append(item)
            resolved[key] = items
        elif is_secret_key(key) and isinstance(value, str | int | float) and not isinstance(value, bool):
            raise ConfigError(str(file), field, "inline secrets are refused", REFERENCE_FIX)
        else:
            resolved[key] = value
    return resolved, found


def reference_text(value: object) -> object:
    """What the config digest records for a value: a reference's target (never the secret)."""
    if is_reference(value):
        (kind, target), = value.items()  # fmt: skip
        return f"<{kind}:{target}>"
    if isinstance(value, Mapping):
        return {str(k): reference_text(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [reference_text(v) for v in value]
    return value
