"""[facts]: the embedded SQLite store by default; a PostgreSQL URL with the password by reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.facts import FactsSettings
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.facts.engines.postgres import PostgresTarget
from orchestrator.facts.store import store_location

SITE = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'
URL = "postgresql://patchwave@db.example:5432/facts?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"


def load(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ=environ or {})


def test_without_facts_the_store_is_the_sqlite_file_in_the_state_dir(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.facts == FactsSettings()
    assert store_location(settings) == settings.state.facts_path


def test_a_postgresql_url_with_its_password_by_reference(tmp_path: Path) -> None:
    body = f'[facts]\nurl = "{URL}"\npassword = {{ env = "PW_FACTS" }}\npool_size = 4\n'
    settings = load(tmp_path, body, {"PW_FACTS": "s3cret-Value"})
    where = store_location(settings)
    assert isinstance(where, PostgresTarget)
    assert (where.url, where.password, where.pool_size) == (URL, "s3cret-Value", 4)  # TLS options kept
    assert "s3cret-Value" not in repr(settings.facts) + repr(where)
    assert where.shown == "postgresql://patchwave@db.example:5432/facts"
    assert "s3cret-Value" in {s.reveal() for s in settings.secrets}  # redacted from the logs
    assert settings.digest == load(tmp_path, "").digest  # where the facts live changes no plan


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[facts]\nurl = "postgresql://u:hunter2@db/facts"', "facts.url", "contains a password"),
        ('[facts]\nurl = "postgresql://u@db/facts?password=hunter2"', "facts.url", "contains a password"),
        ('[facts]\nurl = "sqlite:///var/lib/facts.db"', "facts.url", "only a PostgreSQL URL"),
        ('[facts]\nurl = "postgresql://db"', "facts.url", "only a PostgreSQL URL"),
        ('[facts]\npassword = { env = "PW_FACTS" }', "facts.password", "without url"),
        (
            '[facts]\nurl = "postgresql://u@db/f"\npassword = "hunter2"',
            "facts.password",
            "inline secrets are refused",
        ),
        ('[facts]\nuri = "postgresql://u@db/f"', "facts.uri", "unknown key"),
    ],
)
def test_each_mistake_names_the_field_and_never_echoes_a_password(
    tmp_path: Path, body: str, field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, body, {"PW_FACTS": "x"})
    assert refused.value.field == field and words in str(refused.value)
    assert "hunter2" not in str(refused.value)
