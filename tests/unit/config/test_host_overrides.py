"""Per-host SSH settings: ``[hosts.overrides."NAME"]`` merged over ``[hosts] ssh`` (like ``[guests.overrides]``),
and the channel the host phase opens with them (``Context.host_channel``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.loader import load_settings
from orchestrator.config.settings import HostOverride, Settings
from orchestrator.context import Context
from orchestrator.errors import ConfigError
from orchestrator.facts.store import FactStore
from providers.base import HostRef
from providers.settings import Secret
from tests.support.paths import REPO

SITE = '[providers.pve]\nkind = "libvirt"\nuri = "test:///default"\n'
HOSTS = """
[hosts]
patch = "ssh"
ssh = { user = "admin", host = "127.0.0.1", port = 2222, key_file = "keys/id", known_hosts = "kh" }
"""


def load(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ=environ or {})


def test_an_override_replaces_only_the_keys_it_names(tmp_path: Path) -> None:
    settings = load(tmp_path, HOSTS + '[hosts.overrides."pve2"]\nssh = { port = 2223 }\n')
    hosts = settings.hosts
    assert hosts.overrides == (HostOverride(name="pve2", ssh=(("port", 2223),)),)
    pve2 = hosts.ssh_for("pve2", "pve")
    assert (pve2.user, pve2.host, pve2.port) == ("admin", "127.0.0.1", 2223)
    assert (pve2.key_file, pve2.known_hosts) == (tmp_path / "keys/id", tmp_path / "kh")
    assert hosts.ssh_for("pve1", "pve") == hosts.ssh  # no override: the [hosts] ssh table as is


def test_a_site_qualified_override_wins_over_the_bare_name(tmp_path: Path) -> None:
    body = HOSTS + (
        '[hosts.overrides."pve2"]\nssh = { port = 2223, user = "ops" }\n'
        '[hosts.overrides."pve/pve2"]\nssh = { port = 2299 }\n'
    )
    hosts = load(tmp_path, body).hosts
    assert (hosts.ssh_for("pve2", "pve").port, hosts.ssh_for("pve2", "pve").user) == (2299, "ops")
    assert hosts.ssh_for("pve2", "other").port == 2223  # another site's pve2: only the bare name applies
    assert hosts.ssh_for("pve2").port == 2223


def test_override_paths_and_secrets_are_resolved_like_the_base_table(tmp_path: Path) -> None:
    body = (
        HOSTS + '[hosts.overrides."esx1"]\nssh = { key_file = "other/id", password = { env = "ESX1_PW" } }\n'
    )
    settings = load(tmp_path, body, environ={"ESX1_PW": "s3cret"})
    esx1 = settings.hosts.ssh_for("esx1")
    assert esx1.key_file == tmp_path / "other/id"
    assert esx1.password == Secret("s3cret")
    assert Secret("s3cret") in settings.secrets  # redacted in logs like every other secret


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[hosts.overrides."pve2"]\nssh = { prot = 2223 }\n', "hosts.overrides.pve2.ssh.prot"),
        ('[hosts.overrides."pve2"]\nchannel = "ssh"\n', "hosts.overrides.pve2.channel"),
        ('[hosts.overrides."pve2"]\nssh = { port = 0 }\n', "hosts.overrides.pve2.ssh.port"),
        ('[hosts.overrides."pve2"]\nssh = { password = "plain" }\n', "hosts.overrides.pve2.ssh.password"),
    ],
)
def test_mistakes_in_an_override_name_the_field(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, HOSTS + body)
    assert caught.value.field == field and caught.value.fix


def test_overrides_are_part_of_the_config_digest(tmp_path: Path) -> None:
    base = load(tmp_path, HOSTS)
    changed = load(tmp_path, HOSTS + '[hosts.overrides."pve2"]\nssh = { port = 2223 }\n')
    assert base.digest != changed.digest


def test_the_example_config_shows_a_per_host_override() -> None:
    settings = load_settings(
        REPO / "config" / "patchwave.example.toml",
        environ={
            "VCENTER_PASSWORD": "a",
            "VSPHERE_GUEST_PASSWORD": "b",
            "PVE_TOKEN": "c",
            "PVE_PASSWORD": "d",
        },
    )
    pve2 = settings.hosts.ssh_for("pve2", "pve")
    assert (pve2.host, pve2.port, pve2.user) == ("pve2.mgmt.example.org", 2222, "root")
    assert settings.hosts.ssh_for("pve2", "dc1").port == 22


def test_the_host_channel_uses_the_hosts_override(tmp_path: Path) -> None:
    body = (
        '\n[hosts]\npatch = "ssh"\nssh = { host = "{ip}", port = 22 }\n'
        '[hosts.overrides."pve2"]\nssh = { host = "127.0.0.1", port = 2223 }\n'
    )
    settings = load(tmp_path, body)
    facts = FactStore(tmp_path / "facts.db")
    ctx = Context(settings, facts)
    try:
        pve2 = ctx.host_channel(HostRef("pve", "pve2", "pve2"), "10.10.0.2")
        pve1 = ctx.host_channel(HostRef("pve", "pve1", "pve1"), "10.10.0.1")
        nameless = ctx.host_channel(HostRef("pve", "pve3", "pve3"))
        assert (pve2.target.host, pve2.target.port) == ("127.0.0.1", 2223)  # type: ignore[attr-defined]
        assert (pve1.target.host, pve1.target.port) == ("10.10.0.1", 22)  # type: ignore[attr-defined]
        assert nameless.target.host == "pve3"  # type: ignore[attr-defined]  # no address: the name
        for channel in (pve1, pve2, nameless):
            channel.close()  # nothing was connected (channels connect on first use)
    finally:
        facts.close()
