"""Validation of a ``[providers.<site>]`` table of kind libvirt: errors name the field and the fix."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from providers import parse_settings as parse_any
from providers.libvirt.provider import DEFAULT_TAG_NAMESPACE, LibvirtSettings, parse_settings
from providers.settings import SettingsError


def test_minimal_table_gets_the_documented_defaults() -> None:
    assert parse_settings("lab", {"uri": "qemu:///system"}) == LibvirtSettings(
        site="lab",
        uri="qemu:///system",
        failure_domain="",
        tag_namespace=DEFAULT_TAG_NAMESPACE,
        connect_timeout=30.0,
        agent_timeout=5.0,
    )


def test_every_setting_is_read() -> None:
    settings = parse_settings(
        "dc1",
        {
            "kind": "libvirt",  # the registry may pass the whole table
            "uri": " qemu+ssh://root@hv1.example.com/system?keyfile=/etc/pw/id ",
            "failure_domain": "rack-3",
            "tag_namespace": "urn:example:tags",
            "connect_timeout": "1m",
            "agent_timeout": 2,
        },
    )
    assert settings.uri == "qemu+ssh://root@hv1.example.com/system?keyfile=/etc/pw/id"
    assert (settings.failure_domain, settings.tag_namespace) == ("rack-3", "urn:example:tags")
    assert (settings.connect_timeout, settings.agent_timeout) == (60.0, 2.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(10, 10.0), (2.5, 2.5), ("30s", 30.0), ("250ms", 0.25), ("5m", 300.0), ("1h", 3600.0), ("7", 7.0)],
)
def test_durations(value: Any, seconds: float) -> None:
    assert (
        parse_settings("lab", {"uri": "test:///default", "connect_timeout": value}).connect_timeout == seconds
    )


def test_settings_are_frozen() -> None:
    settings = parse_settings("lab", {"uri": "test:///default"})
    with pytest.raises(AttributeError):
        settings.uri = "qemu:///session"  # type: ignore[misc]


def test_the_registry_dispatches_to_the_adapter() -> None:
    assert isinstance(parse_any("libvirt", "lab", {"uri": "test:///default"}), LibvirtSettings)


@pytest.mark.parametrize(
    ("raw", "field", "fix_mentions"),
    [
        ({}, "uri", "qemu:///system"),
        ({"uri": ""}, "uri", "qemu:///system"),
        ({"uri": 42}, "uri", "qemu:///system"),
        ({"uri": "/var/run/libvirt/libvirt-sock"}, "uri", "qemu:///system"),
        ({"uri": "lxc:///system"}, "uri", "qemu:///system"),
        ({"uri": "qemu+carrierpigeon://host/system"}, "uri", "ssh"),
        ({"uri": "qemu+tcp://admin:hunter2@host/system"}, "uri", "SSH keys"),
        ({"uri": "qemu:///system", "failure_domain": 3}, "failure_domain", "failure_domain ="),
        (
            {"uri": "qemu:///system", "tag_namespace": "patchwave-tags"},
            "tag_namespace",
            DEFAULT_TAG_NAMESPACE,
        ),
        ({"uri": "qemu:///system", "connect_timeout": "soon"}, "connect_timeout", '"30s"'),
        ({"uri": "qemu:///system", "connect_timeout": 0}, "connect_timeout", "connect_timeout ="),
        ({"uri": "qemu:///system", "connect_timeout": True}, "connect_timeout", '"30s"'),
        ({"uri": "qemu:///system", "agent_timeout": "2d"}, "agent_timeout", "agent_timeout ="),  # at most 1h
        ({"uri": "qemu:///system", "agent_timeout": "1w"}, "agent_timeout", '"30s"'),
        ({"uri": "qemu:///system", "agent_timeout": 7200}, "agent_timeout", "agent_timeout ="),
        ({"uri": "qemu:///system", "url": "qemu:///system"}, "url", "uri"),
        ({"uri": "qemu:///system", "password": "x"}, "password", "known keys"),
    ],
)
def test_invalid_settings_name_the_field_and_the_fix(
    raw: dict[str, Any], field: str, fix_mentions: str
) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings("lab", raw)
    assert error.value.field == field
    assert error.value.message
    assert fix_mentions in error.value.fix
    assert str(error.value).startswith(f"{field}: ")


def test_a_password_in_the_uri_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings("lab", {"uri": "qemu+tcp://admin:hunter2@host/system"})
    assert "hunter2" not in str(error.value)


def test_an_empty_site_name_is_refused() -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings(" ", {"uri": "qemu:///system"})
    assert error.value.field == "site" and error.value.fix


def test_a_table_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings("lab", ["uri", "qemu:///system"])  # type: ignore[arg-type]
    assert error.value.field == "providers.lab" and "uri" in error.value.fix


def test_parsing_does_not_import_libvirt() -> None:
    probe = (
        "import sys; from providers.libvirt import parse_settings; "
        "parse_settings('lab', {'uri': 'qemu:///system'}); "
        "print('libvirt' in sys.modules, 'libvirt_qemu' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
