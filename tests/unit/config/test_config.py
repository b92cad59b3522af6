"""The configuration loader: valid files become frozen Settings; every mistake is one ConfigError that
names the file, the dotted field and the fix."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from orchestrator.config.loader import TOP_KEYS, load_settings, parse_settings_text
from orchestrator.config.machines import SSH_KEYS
from orchestrator.config.rollout import POLICY_KEYS
from orchestrator.config.settings import DEFAULT_GROUP, FailureBudget, Settings
from orchestrator.errors import ConfigError
from orchestrator.model import RebootPolicy, UpdateMode
from providers.settings import Secret
from tests.support.paths import REPO

SITE = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'
ENV = {"VCENTER_PASSWORD": "vc-secret-1", "VSPHERE_GUEST_PASSWORD": "guest-secret-2", "PVE_TOKEN": "pve-token-3",
       "PVE_PASSWORD": "pve-pass-4"}  # fmt: skip


def load(tmp_path: Path, body: str, *, site: str = SITE, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(site + body)
    return load_settings(path, environ=ENV if environ is None else environ)


def refused(
    tmp_path: Path, body: str, *, site: str = SITE, environ: dict[str, str] | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body, site=site, environ=environ)
    err = caught.value
    assert err.file == str(tmp_path / "patchwave.toml")
    assert err.field and err.message and err.fix
    return err


# ------------------------------------------------------------------------------ shipped configs
@pytest.mark.parametrize(
    "path",
    [
        "config/patchwave.example.toml",
        "patchwave_lab/configs/testdriver.toml",
        "patchwave_lab/configs/lab.toml",
    ],
)
def test_the_shipped_configs_load(path: str) -> None:
    settings = load_settings(REPO / path, environ=ENV)
    assert settings.providers and settings.digest


def test_the_example_has_one_site_per_kind_and_secrets_only_by_reference() -> None:
    settings = load_settings(REPO / "config" / "patchwave.example.toml", environ=ENV)
    assert {p.site: p.kind for p in settings.providers} == {
        "dc1": "vsphere",
        "kvm": "libvirt",
        "pve": "proxmox",
    }
    assert settings.provider("dc1").settings.password == Secret("vc-secret-1")
    assert sorted(s.reveal() for s in settings.secrets) == ["guest-secret-2", "pve-token-3", "vc-secret-1"]
    assert "vc-secret-1" not in repr(settings)


def test_the_testdriver_config_reaches_its_guest_through_a_local_chroot() -> None:
    settings = load_settings(REPO / "patchwave_lab" / "configs" / "testdriver.toml", environ={})
    access = settings.guests.access("test", "test")
    assert access.channel == "local"
    assert access.local_root == settings.state.dir / "guests" / "test"
    assert settings.provider("test").settings.uri == "test:///default"
    assert not settings.hosts.enabled


def test_the_lab_config_takes_per_guest_ssh_from_the_labs_overrides_file(tmp_path: Path) -> None:
    text = (
        (REPO / "patchwave_lab" / "configs" / "lab.toml")
        .read_text()
        .replace('dir = "~/.local/state/patchwave"', f'dir = "{tmp_path}"')
    )
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "guests.toml").write_text(
        '[overrides."pw-lab-2"]\nchannel = "ssh"\nssh = { host = "127.0.0.1", port = 40123, key_file = "id" }\n'
    )
    settings = parse_settings_text(text, file=tmp_path / "lab.toml", environ={})
    access = settings.guests.access("pw-lab-2", "lab")
    assert (access.channel, access.ssh.host, access.ssh.port) == ("ssh", "127.0.0.1", 40123)
    assert access.ssh.key_file == tmp_path / "lab" / "id"  # relative to the overrides file
    assert settings.guests.access("pw-lab-1", "lab").channel == "agent"  # no override: the fallback


# ------------------------------------------------------------------------------ values
def test_defaults_fill_every_table(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert s.temporal.mode == "embedded" and s.temporal.retention_s == 30 * 86400
    assert s.logging.format == "auto"
    assert s.policy.concurrency == 2 and s.policy.failure_budget == FailureBudget(count=1)
    assert s.ring_order == ("default",)
    assert [g.name for g in s.groups] == [DEFAULT_GROUP]
    assert s.targets.exclude.tags == ("no-patch",)
    assert s.state.dir == Path("~/.local/state/patchwave").expanduser()


@pytest.mark.parametrize(
    ("text", "seconds"), [('"30s"', 30), ('"10m"', 600), ('"6h"', 21600), ('"3d"', 259200), ("90", 90)]
)
def test_durations(tmp_path: Path, text: str, seconds: int) -> None:
    assert load(tmp_path, f"[policy]\npatch_timeout = {text}\n").policy.patch_timeout_s == seconds


def test_reboot_timeout_defaults_to_five_minutes_and_a_group_may_override_it(tmp_path: Path) -> None:
    assert load(tmp_path, "").policy.reboot_timeout_s == 300
    settings = load(
        tmp_path,
        '[policy]\nreboot_timeout = "90s"\n'
        '[[groups]]\nname = "db"\nmatch = { names = ["db-*"] }\npolicy = { reboot_timeout = "20m" }\n',
    )
    assert settings.policy.reboot_timeout_s == 90
    assert {g.name: g.policy.reboot_timeout_s for g in settings.groups} == {"db": 1200, "default": 90}


def test_promotion_is_pinned_unless_the_policy_says_latest(tmp_path: Path) -> None:
    assert load(tmp_path, "").policy.promotion == "pinned"
    assert load(tmp_path, '[policy]\npromotion = "latest"\n').policy.promotion == "latest"


def test_rolled_back_vms_count_against_the_budget_unless_the_policy_says_otherwise(tmp_path: Path) -> None:
    assert load(tmp_path, "").policy.count_rolled_back is True
    assert load(tmp_path, "[policy]\ncount_rolled_back = false\n").policy.count_rolled_back is False


def test_failure_budget_as_a_percentage_of_the_planned_vms(tmp_path: Path) -> None:
    budget = load(tmp_path, '[policy]\nfailure_budget = "10%"\n').policy.failure_budget
    assert budget == FailureBudget(count=0, percent=10.0)
    assert (budget.resolve(25), budget.resolve(9)) == (2, 0)


def test_groups_override_policy_and_the_default_group_takes_the_last_ring(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        """
[policy]
concurrency = 4
reboot = "always"
[[groups]]
name = "canary"
ring = "canary"
match = { names = ["web-1"] }
[groups.policy]
concurrency = 1
updates = "security"
[rings]
order = ["canary", "main"]
[rings.canary]
soak = "10m"
approval = true
""",
    )
    canary, default = s.groups
    assert (canary.policy.concurrency, canary.policy.updates, canary.policy.reboot) == (
        1,
        UpdateMode.SECURITY,
        RebootPolicy.ALWAYS,
    )
    assert (default.name, default.ring, default.policy.concurrency) == (DEFAULT_GROUP, "main", 4)
    assert s.ring("canary").soak_s == 600 and s.ring("canary").approval and s.ring("main").soak_s == 0


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.policy.concurrency = 9  # type: ignore[misc]


# ------------------------------------------------------------------------------ errors
ERRORS = [
    # (body, field, a word in the message or fix)
    ("[policy]\nconcurency = 2\n", "policy.concurency", "did you mean 'concurrency'?"),
    ("[polcy]\nconcurrency = 2\n", "polcy", "did you mean 'policy'?"),
    ("[policy]\nconcurrency = 0\n", "policy.concurrency", "between 1 and"),
    ("[policy]\nprepare_ahead = -1\n", "policy.prepare_ahead", "between 0 and"),
    ('[policy]\nconcurrency = "two"\n', "policy.concurrency", "must be an integer"),
    ('[policy]\nreboot = "sometimes"\n', "policy.reboot", "if-required"),
    ('[policy]\npatch_timeout = "soon"\n', "policy.patch_timeout", '"10m"'),
    ('[policy]\nreboot_timeout = "5s"\n', "policy.reboot_timeout", "at least"),
    ('[policy]\nreboot_timeout = "5h"\n', "policy.reboot_timeout", "at most"),
    ('[policy]\nfailure_budget = "lots"\n', "policy.failure_budget", '"10%"'),
    ('[policy]\ncount_rolled_back = "yes"\n', "policy.count_rolled_back", "true"),
    ('[policy]\nupdates = "pinned"\n', "policy.pins", "pins ="),
    ('[policy]\npromotion = "pined"\n', "policy.promotion", "did you mean 'pinned'?"),
    (
        '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\n[groups.policy]\npromotion = "latest"\n',
        "groups[0].policy.promotion",
        "[policy]",
    ),
    ('[targets]\nregex = "web-("\n', "targets.regex", "invalid regular expression"),
    ('[targets]\nnames = "web-*"\n', "targets.names", '["web-*"]'),
    ('[targets]\nexclude_regex = "[a-"\n', "targets.exclude_regex", "invalid regular expression"),
    ('[temporal]\nmode = "cloud"\n', "temporal.mode", "embedded"),
    ('[temporal]\naddress = "localhost"\n', "temporal.address", "host:port"),
    ('[logging]\nformat = "jsn"\n', "logging.format", "did you mean 'json'?"),
    ('[windows.w]\ncron = "every saturday"\nduration = "1h"\n', "windows.w.cron", "five-field"),
    (
        '[windows.w]\ncron = "0 22 * * SAT"\nduration = "1h"\ntimezone = "Mars/Olympus"\n',
        "windows.w.timezone",
        "IANA",
    ),
    ('[windows.w]\ncron = "0 22 * * SAT"\nduration = "1h"\ncutoff = "2h"\n', "windows.w.cutoff", "shorter"),
    ('[rings]\norder = ["canary", "canary"]\n', "rings.order", "twice"),
    ('[rings]\norder = ["canary"]\n[rings.main]\nsoak = "1m"\n', "rings.main", "not in rings.order"),
    (
        '[[groups]]\nname = "g"\nring = "mian"\nmatch = { names = ["x"] }\n[rings]\norder = ["main"]\n',
        "groups[0].ring",
        "did you mean 'main'?",
    ),
    (
        '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\nwindow = "weekend"\n',
        "groups[0].window",
        "[windows.weekend]",
    ),
    ('[[groups]]\nname = "g"\n', "groups[0].match", "matches nothing"),
    (
        '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\n[groups.policy]\nfailure_budget = 3\n',
        "groups[0].policy.failure_budget",
        "[policy]",
    ),
    (
        '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\n[groups.policy]\ncount_rolled_back = false\n',
        "groups[0].policy.count_rolled_back",
        "[policy]",
    ),
    (
        '[[groups]]\nname = "g"\nmatch = { names = ["x"] }\n[[groups]]\nname = "g"\nmatch = { names = ["y"] }\n',
        "groups[1].name",
        "unique",
    ),
    ('[guests]\nchannel = "telnet"\n', "guests.channel", "agent"),
    (
        '[guests.overrides."web-1"]\nssh = { prot = 22 }\n',
        "guests.overrides.web-1.ssh.prot",
        "did you mean 'port'?",
    ),
    ('[hosts]\npatch = "yes"\n', "hosts.patch", "platform"),
    ('[[health]]\nname = "h"\nkind = "http"\n', "health[0].url", "url ="),
    ('[[health]]\nname = "h"\nkind = "http"\nurl = "localhost:80"\n', "health[0].url", "http://"),
    (
        '[[health]]\nname = "h"\nkind = "tcp"\naddress = "{ip}:22"\ncommand = "true"\n',
        "health[0].command",
        "not used",
    ),
]


@pytest.mark.parametrize(("body", "field", "hint"), ERRORS, ids=[e[1] for e in ERRORS])
def test_every_error_names_file_field_and_fix(tmp_path: Path, body: str, field: str, hint: str) -> None:
    err = refused(tmp_path, body)
    assert err.field == field
    assert hint in f"{err.message} (fix: {err.fix})"


def test_render_is_one_line_in_the_documented_shape(tmp_path: Path) -> None:
    err = refused(tmp_path, "[policy]\nconcurency = 2\n")
    path = tmp_path / "patchwave.toml"
    assert (
        err.render()
        == f"config error: {path}: policy.concurency: unknown key (fix: did you mean 'concurrency'?)"
    )
    assert err.exit_code == 2


def test_inline_secrets_are_refused_in_provider_tables(tmp_path: Path) -> None:
    site = '[providers.dc1]\nkind = "vsphere"\nhost = "vc.example.org"\nuser = "u"\npassword = "hunter2"\n'
    err = refused(tmp_path, "", site=site)
    assert (err.field, err.message) == ("providers.dc1.password", "inline secrets are refused")
    assert err.fix == 'use { env = "NAME" } or { file = "/path" }'
    assert "hunter2" not in err.render()


def test_inline_secrets_are_refused_anywhere(tmp_path: Path) -> None:
    err = refused(tmp_path, '[guests]\nssh = { password = "hunter2" }\n')
    assert err.field == "guests.ssh.password"


def test_a_missing_secret_env_var_names_the_provider_field(tmp_path: Path) -> None:
    site = '[providers.pve]\nkind = "proxmox"\nhost = "pve1"\npassword = { env = "NOPE" }\n'
    err = refused(tmp_path, "", site=site)
    assert err.field == "providers.pve.password" and "NOPE" in err.message


def test_an_adapter_settings_error_becomes_a_config_error_on_the_provider_field(tmp_path: Path) -> None:
    site = '[providers.pve]\nkind = "proxmox"\nhost = "pve1"\nport = 99999\npassword = { env = "PVE_PASSWORD" }\n'
    assert refused(tmp_path, "", site=site).field == "providers.pve.port"
    site = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\nurl = "x"\n'
    assert refused(tmp_path, "", site=site).field == "providers.lab.url"


def test_an_unknown_provider_kind(tmp_path: Path) -> None:
    err = refused(tmp_path, "", site='[providers.x]\nkind = "hyperv"\n')
    assert err.field == "providers.x.kind" and "libvirt" in err.fix


def test_a_table_given_as_a_scalar(tmp_path: Path) -> None:
    err = refused(tmp_path, SITE, site="state = 3\n")
    assert (err.field, err.message) == ("state", "must be a table, not an integer")


def test_a_config_without_sites(tmp_path: Path) -> None:
    assert refused(tmp_path, "[policy]\n", site="").field == "providers"


def test_invalid_toml_and_missing_files(tmp_path: Path) -> None:
    assert refused(tmp_path, "[policy\n").field == "-"
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_settings(tmp_path / "missing.toml")


# ------------------------------------------------------------------------------ digest
def test_digest_ignores_layout_comments_and_secret_values(tmp_path: Path) -> None:
    site = '[providers.pve]\nkind = "proxmox"\nhost = "pve1"\npassword = { env = "PVE_PASSWORD" }\n'
    a = load(tmp_path, "[policy]\nconcurrency = 3\nreboot = 'never'\n", site=site)
    b = load(
        tmp_path,
        '# comment\n[policy]\nreboot = "never"\n\nconcurrency   = 3\n',
        site=site,
        environ={**ENV, "PVE_PASSWORD": "rotated"},
    )
    assert a.digest == b.digest
    assert "pve-pass-4" not in a.digest and len(a.digest) == 64


def test_digest_changes_with_policy_and_with_the_secret_reference(tmp_path: Path) -> None:
    base = load(tmp_path, "[policy]\nconcurrency = 3\n").digest
    assert load(tmp_path, "[policy]\nconcurrency = 4\n").digest != base
    site = '[providers.pve]\nkind = "proxmox"\nhost = "pve1"\npassword = { env = "PVE_PASSWORD" }\n'
    other = site.replace('env = "PVE_PASSWORD"', 'env = "VCENTER_PASSWORD"')
    assert load(tmp_path, "", site=site).digest != load(tmp_path, "", site=other).digest


def test_digest_ignores_logging(tmp_path: Path) -> None:
    assert load(tmp_path, '[logging]\nformat = "json"\n').digest == load(tmp_path, "").digest


# ------------------------------------------------------------------------------ property
WORDS = sorted(
    {
        *TOP_KEYS,
        *POLICY_KEYS,
        *SSH_KEYS,
        "kind",
        "uri",
        "env",
        "file",
        "names",
        "tags",
        "regex",
        "order",
        "cron",
        "duration",
        "timezone",
        "cutoff",
        "name",
        "ring",
        "match",
        "window",
        "channel",
        "overrides",
        "dir",
        "lab",
        "main",
        "canary",
        "wave_size",
        "soak",
        "exclude_tags",
        "command",
        "url",
        "address",
        "format",
        "level",
        "mode",
        "retention",
        "token",
        "secret",
        "local_root",
        "overrides_file",
    }
)
SCALARS = st.one_of(
    st.sampled_from(
        [
            "libvirt",
            "vsphere",
            "proxmox",
            "qemu:///system",
            "test:///default",
            "10%",
            "30s",
            "3d",
            "0 22 * * SAT",
            "UTC",
            "agent",
            "ssh",
            "main",
            "[",
            "A",
            "",
            "{ip}:22",
            "http://x",
        ]
    ),
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
KEYS = st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=25,
)
TABLES = st.dictionaries(st.sampled_from(WORDS), VALUES, max_size=6)
DOCUMENTS = st.dictionaries(
    st.one_of(st.sampled_from(TOP_KEYS), st.sampled_from(TOP_KEYS), KEYS),
    st.one_of(TABLES, TABLES, st.lists(TABLES, max_size=3), VALUES),
    max_size=6,
)


def toml_string(text: str) -> str:
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F or ch in '"\\' else ch for ch in text
    )
    return f'"{escaped}"'


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) and "e" not in repr(value) else "0.5"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, object]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=DOCUMENTS, with_site=st.booleans())
def test_any_toml_document_gives_settings_or_a_config_error(doc: dict[str, object], with_site: bool) -> None:
    if with_site:
        doc = {**doc, "providers": {"lab": {"kind": "libvirt", "uri": "test:///default"}}}
    try:
        result = parse_settings_text(toml_document(doc), file=Path("/nonexistent/p.toml"), environ={"A": "x"})
    except ConfigError as err:
        event(f"config error at {err.field.split('.')[0].split('[')[0]}")
        assert err.file == "/nonexistent/p.toml" and err.field and err.fix
    else:
        event("settings")
        assert isinstance(result, Settings)


@hsettings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_gives_settings_or_a_config_error(text: str) -> None:
    try:
        parse_settings_text(text, file=Path("/nonexistent/p.toml"), environ={})
    except ConfigError as err:
        assert err.field


def test_the_state_dir_can_be_replaced_and_templates_follow_it(tmp_path: Path) -> None:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + '[guests]\nchannel = "local"\nlocal_root = "{state}/guests/test"\n')
    settings = load_settings(path, environ={}, state_dir=tmp_path / "elsewhere")
    assert settings.state.dir == tmp_path / "elsewhere"
    assert settings.guests.local_root == tmp_path / "elsewhere" / "guests" / "test"
