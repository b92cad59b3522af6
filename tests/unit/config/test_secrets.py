"""Secret references: { env = "X" } / { file = "/path" } become Secrets; inline secrets are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.secrets import is_reference, is_secret_key, reference_text, resolve_reference, resolve_table
from providers.settings import Secret

CONFIG = Path("/etc/patchwave/patchwave.toml")


@pytest.mark.parametrize(
    "key", ["password", "token", "secret", "key", "pass", "token_value", "guest_password", "api_key", "Authorization",
            "cookie", "ticket", "client-secret"],
)  # fmt: skip
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["key_file", "token_name", "known_hosts", "user", "host", "thumbprint", "passive", "monkey", "tags_field",
            "trust_on_first_use", "keys_path", "secret_file"],
)  # fmt: skip
def test_keys_about_secrets_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_an_env_reference_resolves_from_the_given_environment() -> None:
    secret = resolve_reference(
        {"env": "VC_PASS"}, file=CONFIG, field="providers.dc1.password", environ={"VC_PASS": "s3cr3t"}
    )
    assert secret == Secret("s3cr3t")
    assert "s3cr3t" not in repr(secret)


def test_a_missing_env_var_names_the_field_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_reference({"env": "VC_PASS"}, file=CONFIG, field="providers.dc1.password", environ={})
    err = caught.value
    assert (err.file, err.field) == (str(CONFIG), "providers.dc1.password")
    assert "VC_PASS" in err.message and "export VC_PASS" in err.fix


def test_a_file_reference_is_read_without_the_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "vc.pass").write_text("from-file\n")
    secret = resolve_reference({"file": "vc.pass"}, file=tmp_path / "cfg.toml", field="p", environ={})
    assert secret.reveal() == "from-file"  # relative to the config file's directory


def test_an_unreadable_secret_file_names_the_field_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_reference(
            {"file": str(tmp_path / "missing")}, file=CONFIG, field="providers.pve.token_value", environ={}
        )
    assert caught.value.field == "providers.pve.token_value"
    assert "cannot read secret file" in caught.value.message
    assert "0600" in caught.value.fix


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        resolve_reference({"env": "EMPTY"}, file=CONFIG, field="p", environ={"EMPTY": ""})


def test_resolve_table_turns_references_into_secrets_and_returns_them() -> None:
    table = {"host": "vc", "password": {"env": "A"}, "ssh": {"password": {"env": "B"}, "user": "root"},
             "checks": [{"token": {"env": "C"}}]}  # fmt: skip
    resolved, found = resolve_table(
        table, file=CONFIG, prefix="providers.dc1", environ={"A": "a1", "B": "b2", "C": "c3"}
    )
    assert resolved["host"] == "vc"
    assert resolved["password"] == Secret("a1")
    assert resolved["ssh"] == {"password": Secret("b2"), "user": "root"}
    assert resolved["checks"] == [{"token": Secret("c3")}]
    assert sorted(s.reveal() for s in found) == ["a1", "b2", "c3"]


@pytest.mark.parametrize("key", ["password", "token", "secret", "key", "pass", "token_value"])
def test_an_inline_secret_is_refused_with_the_reference_fix(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_table({"ssh": {key: "hunter2"}}, file=CONFIG, prefix="guests", environ={})
    err = caught.value
    assert err.field == f"guests.ssh.{key}"
    assert err.message == "inline secrets are refused"
    assert err.fix == 'use { env = "NAME" } or { file = "/path" }'
    assert "hunter2" not in err.render()


def test_a_reference_with_both_env_and_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_table({"password": {"env": "A", "file": "/x"}}, file=CONFIG, prefix="p", environ={"A": "a"})


def test_reference_text_keeps_the_reference_never_the_value() -> None:
    assert is_reference({"env": "X"}) and not is_reference({"env": "X", "file": "y"})
    assert reference_text({"password": {"env": "VC"}, "host": "h"}) == {"host": "h", "password": "<env:VC>"}
