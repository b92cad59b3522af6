"""Request parameter decoding and validation with PVE's rules and messages (ENDPOINTS.md §1).

* form bodies (``application/x-www-form-urlencoded``) or JSON bodies; query values merged on top;
* a repeated form key becomes a list; a single value for an ``array`` parameter becomes a list;
* path parameters repeated in the body must carry the same value;
* ``additionalProperties: 0``: unknown parameters are rejected;
* booleans are ``0``/``1`` only; integer/number type checks; enums, ranges, ``maxLength``, formats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.simulators.pvesim.state import ApiError

_FORMATS = {
    "pve-node": (
        re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$"),
        "value does not look like a valid node name",
    ),
    "pve-configid": (re.compile(r"^[a-z][a-z0-9_\-]+$", re.IGNORECASE), "invalid configuration ID '{v}'"),
    "pve-vmid-list": (re.compile(r"^\d+(,\d+)*$"), "value does not look like a valid VM ID list"),
    "pve-configid-list": (
        re.compile(r"^[a-z][a-z0-9_\-]+(,[a-z][a-z0-9_\-]+)*$", re.IGNORECASE),
        "invalid configuration ID list",
    ),
    "pve-vmid": (re.compile(r"^\d+$"), "value does not look like a valid VM ID"),
    "pve-realm": (re.compile(r"^[A-Za-z][A-Za-z0-9\.\-_]+$"), "value does not look like a valid realm"),
    "pve-storage-id": (
        re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE),
        "storage ID '{v}' contains illegal characters",
    ),
    "dns-name": (
        re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$"),
        "value does not look like a valid DNS name",
    ),
    "pve-tag-list": (
        re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*([;, ][a-z0-9_][a-z0-9_\-+.]*)*$", re.IGNORECASE),
        "invalid tag list",
    ),
    "pve-storage-content": (
        re.compile(r"^(images|rootdir|vztmpl|iso|backup|snippets|import)$"),
        "invalid content type '{v}'",
    ),
}


class ParamError(Exception):
    """One parameter's verification message (collected into the 400's ``errors``)."""


@dataclass(frozen=True)
class Param:
    """One declared parameter, as in the schema's ``parameters.properties`` (checked by the
    conformance test against ``pve-api-schema.json``)."""

    name: str
    type: str  # string | integer | number | boolean | array
    optional: bool = True
    enum: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    format: str | None = None


def decode(body: bytes, content_type: str, query: str) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if body:
        if content_type.startswith("application/json"):
            loaded = json.loads(body.decode() or "{}")
            raw.update(
                {
                    k: v if isinstance(v, list) else str(int(v) if isinstance(v, bool) else v)
                    for k, v in loaded.items()
                }
            )
        else:
            _merge(raw, parse_qsl(body.decode(), keep_blank_values=True))
    from_query: dict[str, Any] = {}
    _merge(from_query, parse_qsl(query, keep_blank_values=True))
    raw.update(from_query)
    return raw


def _merge(into: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    for key, value in pairs:
        if key in into:
            previous = into[key]
            into[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            into[key] = value


def validate(params: tuple[Param, ...], raw: dict[str, Any], path_values: dict[str, str]) -> dict[str, Any]:
    for key, value in path_values.items():
        if key in raw and raw[key] != value:
            raise ApiError(400, "duplicate parameter (already defined in URI) with conflicting values!")
        raw[key] = value
    declared = {p.name: p for p in params}
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key in raw:
        if key not in declared:
            errors[key] = (
                "property is not defined in schema and the schema does not allow additional properties"
            )
    for param in params:
        if param.name not in raw:
            if not param.optional:
                errors[param.name] = "property is missing and it is not optional"
            continue
        try:
            out[param.name] = _check(param, raw[param.name])
        except ParamError as exc:
            errors[param.name] = str(exc)
    if errors:
        raise ApiError(400, "Parameter verification failed.", errors)
    return out


def _check(param: Param, value: Any) -> Any:
    if param.type == "array":
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):
        raise ParamError(f"type check ('{param.type}') failed - got ARRAY")
    typed: Any = value
    if param.type == "boolean":
        if value not in ("0", "1"):
            raise ParamError(f"type check ('boolean') failed - got '{value}'")
        typed = value == "1"
    elif param.type == "integer":
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ParamError(f"type check ('integer') failed - got '{value}'")
        typed = int(value)
    elif param.type == "number":
        try:
            typed = float(value)
        except ValueError:
            raise ParamError(f"type check ('number') failed - got '{value}'") from None
    if param.enum is not None and value not in param.enum:
        raise ParamError(
            f"value '{value}' does not have a value in the enumeration '{', '.join(param.enum)}'"
        )
    if param.minimum is not None and typed < param.minimum:
        raise ParamError(f"value must have a minimum value of {param.minimum}")
    if param.maximum is not None and typed > param.maximum:
        raise ParamError(f"value must have a maximum value of {param.maximum}")
    if param.max_length is not None and len(value) > param.max_length:
        raise ParamError(f"value may only be {param.max_length} characters long")
    if param.format in _FORMATS:
        pattern, message = _FORMATS[param.format]
        if not pattern.match(value):
            raise ParamError("invalid format - " + message.format(v=value))
    return typed
