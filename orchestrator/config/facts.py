"""``[facts]``: where the fact store lives.

Without ``url`` it is the embedded SQLite file ``<[state] dir>/facts.db``. With
``url = "postgresql://user@host:5432/db?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"`` it is a
PostgreSQL database shared by every patchwave process of a cluster (the central worker, the site
workers, the CLI). The password is a secret reference (``password = { env = "PGPASS" }`` or
``{ file = "/path" }``), never part of the URL; TLS options are passed through in the URL's query
(libpq's ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from providers.settings import Secret, SettingsReader

FACTS_KEYS = ("url", "password", "pool_size")
_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class FactsSettings:
    url: str = ""  # "" = the embedded SQLite file in [state] dir
    password: Secret | None = None
    pool_size: int = 8  # connections per process


def facts_table(t: SettingsReader) -> FactsSettings:
    url = t.text("url")
    if url:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise t.error(
                "url", f"is not a URL ({exc})", 'write url = "postgresql://user@host:5432/db"'
            ) from None
        if parts.scheme not in _SCHEMES or not parts.hostname or not parts.path.strip("/"):
            raise t.error(
                "url",
                f"{parts.scheme or 'a URL without a scheme'}: only a PostgreSQL URL with host and database is accepted",
                'write url = "postgresql://user@host:5432/db" (leave it out for the embedded SQLite store)',
            )
        if parts.password is not None or "password=" in parts.query.lower():
            raise t.error(
                "url",
                "contains a password",
                'remove it from the URL and write password = { env = "NAME" } or { file = "/path" }',
            )
    elif t.has("password"):
        raise t.error("password", "is set without url", 'add url = "postgresql://..." or remove password')
    return FactsSettings(
        url=url, password=t.secret("password"), pool_size=t.integer("pool_size", 8, low=1, high=256)
    )
