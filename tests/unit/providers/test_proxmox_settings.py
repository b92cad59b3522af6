"""providers.proxmox settings: validated without proxmoxer, errors name the field and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.proxmox.settings import ProxmoxSettings, SshSettings, parse_settings
from providers.settings import Secret, SettingsError, parse_duration
from tests.support.paths import REPO

PASSWORD = Secret("s3cret")


def parse(**raw: Any) -> ProxmoxSettings:
    return parse_settings("pve", {"host": "pve1.example.org", "password": PASSWORD, **raw})


def test_defaults_are_safe_and_documented() -> None:
    s = parse()
    assert (s.site, s.host, s.port, s.user) == ("pve", "pve1.example.org", 8006, "root@pam")
    assert s.verify_ssl is True and s.tls_verify is True and s.ca_file is None
    assert s.timeout == 30.0  # proxmoxer's 5 s default is too short for PVE
    assert (s.task_timeout, s.poll_interval, s.lock_wait, s.agent_wait) == (900.0, 1.0, 300.0, 120.0)
    assert s.maintenance == "migrate" and s.migrate_max_workers == 1 and s.migrate_local_disks is False
    assert s.ssh == SshSettings() and s.ssh_host == "pve1.example.org"
    assert s.uses_token is False and s.password == PASSWORD


def test_token_auth() -> None:
    s = parse_settings("pve", {"host": "10.0.0.5", "token_name": "patchwave", "token_value": Secret("uuid")})
    assert s.uses_token and s.token_name == "patchwave" and s.password is None


def test_ca_file_becomes_the_tls_bundle(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse(ca_file=str(ca)).tls_verify == str(ca)
    assert parse(verify_ssl=False).tls_verify is False


def test_ssh_table(tmp_path: Path) -> None:
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("h")
    s = parse(
        maintenance="ha",
        ssh={"user": "admin", "port": 2222, "host": "pve2", "key_file": str(key), "known_hosts": str(known)},
    )
    assert s.ssh == SshSettings(user="admin", port=2222, host="pve2", key_file=key, known_hosts=known)
    assert s.ssh_host == "pve2"


def test_secrets_stay_hidden_in_repr() -> None:
    assert "s3cret" not in repr(parse())


def test_kind_key_is_ignored() -> None:
    assert parse(kind="proxmox").host == "pve1.example.org"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), (2.5, 2.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("45", 45.0)],
)
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value, "timeout") == seconds
    assert parse(timeout=value).timeout == seconds


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"host": ""}, "host"),
        ({"host": "https://pve1:8006"}, "host"),
        ({"host": "pve1/api2"}, "host"),
        ({"host": "pve 1"}, "host"),
        ({"port": 0}, "port"),
        ({"port": "8006"}, "port"),
        ({"port": True}, "port"),
        ({"user": "root"}, "user"),
        ({"password": "inline"}, "password"),
        ({"password": Secret("")}, "password"),
        ({"token_name": "patchwave", "token_value": Secret("x")}, "password"),  # both kinds of auth
        ({"verify_ssl": "yes"}, "verify_ssl"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"task_timeout": True}, "task_timeout"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"exec_output_cap": 17 * 1024 * 1024}, "exec_output_cap"),
        ({"maintenance": "drain"}, "maintenance"),
        ({"migrate_max_workers": 65}, "migrate_max_workers"),
        ({"ssh": "root@pve1"}, "ssh"),
        ({"ssh": {"user": "root", "password": "x"}}, "ssh.password"),
        ({"ssh": {"port": 70000}}, "ssh.port"),
        ({"ssh": {"key_file": "/nonexistent/id"}}, "ssh.key_file"),
        ({"verify": False}, "verify"),
    ],
)
def test_invalid_settings_name_field_and_fix(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(**raw)
    assert caught.value.field == field
    assert caught.value.fix, "every settings error says what to write instead"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "password"),  # no credentials at all
        ({"token_name": "patchwave"}, "token_value"),
        ({"token_value": Secret("x")}, "token_name"),
        ({"token_name": "root@pam!patchwave", "token_value": Secret("x")}, "token_name"),
        ({"token_name": "9bad", "token_value": Secret("x")}, "token_name"),
    ],
)
def test_token_errors(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings("pve", {"host": "pve1", **raw})
    assert caught.value.field == field


def test_ca_file_contradicts_disabled_verification(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(SettingsError) as caught:
        parse(ca_file=str(ca), verify_ssl=False)
    assert caught.value.field == "ca_file"


def test_parsing_does_not_import_proxmoxer() -> None:
    code = (
        "import sys; from providers.settings import Secret; from providers import parse_settings; "
        "parse_settings('proxmox', 'pve', {'host': 'pve1', 'password': Secret('x')}); "
        "print('proxmoxer' in sys.modules, 'requests' in sys.modules, 'paramiko' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
