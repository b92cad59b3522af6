"""The [metrics] and [compliance] tables: defaults, values, and one ConfigError per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import ComplianceSettings, MetricsSettings, Settings
from orchestrator.errors import ConfigError

SITE = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'


def load(tmp_path: Path, body: str) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ={})


def test_the_endpoint_is_off_and_the_grace_period_30_days_by_default(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s.metrics == MetricsSettings() and not s.metrics.enabled
    assert s.compliance == ComplianceSettings(grace_s=30 * 86400)


def test_the_tables_are_read(tmp_path: Path) -> None:
    s = load(tmp_path, '[metrics]\nport = 9469\naddress = "::1"\ncache = "1m"\n[compliance]\ngrace = "14d"\n')
    assert s.metrics == MetricsSettings(address="::1", port=9469, cache_s=60.0) and s.metrics.enabled
    assert s.compliance.grace_s == 14 * 86400


def test_neither_table_changes_the_digest(tmp_path: Path) -> None:
    assert (
        load(tmp_path, "").digest
        == load(tmp_path, "[metrics]\nport = 9469\n[compliance]\ngrace = 0\n").digest
    )


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[metrics]\naddress = "localhost"\nport = 1', "metrics.address", "not an IP address"),
        ("[metrics]\nport = 70000", "metrics.port", "between 0 and 65535"),
        ('[metrics]\nport = "9469"', "metrics.port", "must be an integer"),
        ("[metrics]\nprot = 9469", "metrics.prot", "unknown key"),
        ('[metrics]\ncache = "2h"', "metrics.cache", "at most"),
        ('[compliance]\ngrace = "-1d"', "compliance.grace", "negative"),
        ('[compliance]\ngrace_period = "1d"', "compliance.grace_period", "unknown key"),
    ],
)
def test_mistakes_name_the_field_and_the_fix(tmp_path: Path, body: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    assert caught.value.field == field and words in caught.value.message and caught.value.fix
