"""One duration grammar for every table: a [policy] duration, a [windows.X] duration and a duration of
each kind of [providers.X] accept and refuse exactly the same texts, with the same message and fix.

Keys differ only in their bounds (a [policy] duration is at least 1s, a libvirt timeout at most 1h,
a command's timeout at most 24d); the orchestrator's tables keep whole seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.config.loader import parse_settings_text
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from providers.settings import MAX_DURATION_S, SettingsError, parse_duration

LIBVIRT = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'
VSPHERE = (
    '[providers.dc1]\nkind = "vsphere"\nhost = "vc.example.org"\nuser = "u"\npassword = { env = "PW" }\n'
)
PROXMOX = '[providers.pve]\nkind = "proxmox"\nhost = "pve1"\npassword = { env = "PW" }\n'
WINDOW = '[windows.w]\ncron = "0 22 * * SAT"\n'
FILE = Path("/etc/patchwave/patchwave.toml")


class Place:
    """Where a duration is written (a key of one table kind) and how the loaded value is read back."""

    def __init__(self, field: str, config: Callable[[str], str], read: Callable[[Settings], float]) -> None:
        self.field, self.config, self.read = field, config, read

    def load(self, value: str) -> Settings:
        return parse_settings_text(self.config(value), file=FILE, environ={"PW": "secret"})

    def refusal(self, value: str) -> ConfigError:
        with pytest.raises(ConfigError) as caught:
            self.load(value)
        assert caught.value.file == str(FILE) and caught.value.field == self.field
        return caught.value


PLACES = {
    "policy": Place("policy.patch_timeout", lambda v: f"{LIBVIRT}[policy]\npatch_timeout = {v}\n",
                    lambda s: s.policy.patch_timeout_s),
    "windows": Place("windows.w.duration", lambda v: f"{LIBVIRT}{WINDOW}duration = {v}\n",
                     lambda s: s.windows[0].duration_s),
    "libvirt": Place("providers.lab.connect_timeout", lambda v: f"{LIBVIRT}connect_timeout = {v}\n",
                     lambda s: s.provider("lab").settings.connect_timeout),
    "vsphere": Place("providers.dc1.task_timeout", lambda v: f"{VSPHERE}task_timeout = {v}\n",
                     lambda s: s.provider("dc1").settings.task_timeout),
    "proxmox": Place("providers.pve.lock_wait", lambda v: f"{PROXMOX}lock_wait = {v}\n",
                     lambda s: s.provider("pve").settings.lock_wait),
}  # fmt: skip

#: (TOML value, seconds): within every place's bounds (1s .. 1h), so every table kind accepts them.
ACCEPTED = [("90", 90), ('"90"', 90), ("45.0", 45), ('"30s"', 30), ('"10m"', 600), ('"1.5m"', 90),
            ('"1h"', 3600), ('" 2 m "', 120), ('"60000ms"', 60), ('"1500ms"', 1.5)]  # fmt: skip
#: TOML values the grammar refuses: every table kind says the same thing about them.
REFUSED = ['"soon"', '"3 fortnights"', '"1w"', '""', '"5 sec"', '"1e3"', '"1h30m"', '"-5s"', "-5", "-0.5",
           "true", "nan", "inf", "-inf", "[30]", "{ s = 30 }", '"367d"', str(MAX_DURATION_S + 1),
           "9223372036854775807", "1e300", '"99999999999999999999d"']  # fmt: skip


@pytest.mark.parametrize("value", [v for v, _ in ACCEPTED])
def test_every_table_kind_accepts_the_same_texts(value: str) -> None:
    seconds = dict(ACCEPTED)[value]
    for name, place in PLACES.items():
        loaded = place.read(place.load(value))
        if name in ("policy", "windows"):  # the orchestrator's tables keep whole seconds
            assert loaded == int(seconds) and isinstance(loaded, int), name
        else:
            assert loaded == seconds, name


@pytest.mark.parametrize("value", REFUSED)
def test_every_table_kind_refuses_the_same_texts_with_the_same_words(value: str) -> None:
    said = {name: place.refusal(value) for name, place in PLACES.items()}
    assert len({(err.message, err.fix) for err in said.values()}) == 1, said
    err = said["policy"]
    assert (
        err.render().startswith(f"config error: {FILE}: policy.patch_timeout: ") and "(fix: " in err.render()
    )


def test_the_maximum_is_366_days_everywhere() -> None:
    for place in ("windows", "vsphere", "proxmox"):
        assert PLACES[place].read(PLACES[place].load('"366d"')) == MAX_DURATION_S
    snapshot_ttl = parse_settings_text(f'{LIBVIRT}[policy]\nsnapshot_ttl = "366d"\n', file=FILE, environ={})
    assert snapshot_ttl.policy.snapshot_ttl_s == MAX_DURATION_S
    assert PLACES["policy"].refusal('"366d"').message == "must be at most 24d, got 366d"
    assert PLACES["libvirt"].refusal('"366d"').message == "must be at most 1h, got 366d"
    assert PLACES["proxmox"].refusal('"367d"').message == "'367d' is longer than the maximum duration, 366d"


def test_days_now_work_in_provider_tables_and_ms_and_plain_numbers_in_the_orchestrators() -> None:
    assert PLACES["vsphere"].read(PLACES["vsphere"].load('"3d"')) == 3 * 86400
    assert PLACES["proxmox"].read(PLACES["proxmox"].load('"2d"')) == 2 * 86400
    assert PLACES["policy"].read(PLACES["policy"].load('"90"')) == 90
    assert PLACES["windows"].read(PLACES["windows"].load('"7200000ms"')) == 7200
    assert PLACES["libvirt"].read(PLACES["libvirt"].load('"500ms"')) == 0.5


def test_a_25_day_patch_timeout_is_refused_but_a_25_day_snapshot_ttl_is_usable() -> None:
    """A command's timeout goes to select/poll (milliseconds in a C int): at most 24 days."""
    err = PLACES["policy"].refusal('"25d"')
    assert (err.message, err.fix) == ("must be at most 24d, got 25d", 'write e.g. patch_timeout = "1h"')
    assert PLACES["policy"].read(PLACES["policy"].load('"24d"')) == 24 * 86400
    ttl = parse_settings_text(f'{LIBVIRT}[policy]\nsnapshot_ttl = "25d"\n', file=FILE, environ={})
    assert datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=ttl.policy.snapshot_ttl_s) == datetime(
        2026, 1, 26, tzinfo=UTC
    )
    health = '[[health]]\nname = "h"\nkind = "tcp"\naddress = "{ip}:22"\ntimeout = "25d"\n'
    with pytest.raises(ConfigError, match=r"health\[0\]\.timeout: must be at most 24d"):
        parse_settings_text(LIBVIRT + health, file=FILE, environ={})


def test_the_bounds_speak_the_grammar() -> None:
    assert PLACES["policy"].refusal('"500ms"').message == "must be at least 1s, got 500ms"
    assert PLACES["libvirt"].refusal("0").message == "must be at least 1ms, got 0s"
    err = PLACES["windows"].refusal("0")
    assert (err.message, err.fix) == ("must be at least 1s, got 0s", 'write e.g. duration = "1s"')
    missing = f"{LIBVIRT}{WINDOW}"
    with pytest.raises(ConfigError, match=r"windows\.w\.duration: is required"):
        parse_settings_text(missing, file=FILE, environ={})


toml_numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats().map(repr),  # nan, inf, -inf and exponents are TOML floats too
)
toml_texts = st.one_of(
    st.builds(lambda n, unit: f'"{n}{unit}"', st.integers(min_value=0, max_value=10**25),
              st.sampled_from(["", "ms", "s", "m", "h", "d", "w"])),
    st.text(alphabet="0123456789.-+ msdhw", max_size=12).map(lambda s: f'"{s}"'),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(PLACES)), st.one_of(toml_numbers, toml_texts))
def test_any_duration_is_loaded_or_one_config_error_never_an_overflow(place: str, value: str) -> None:
    import tomllib

    written = tomllib.loads(f"v = {value}")["v"]
    try:
        loaded = PLACES[place].read(PLACES[place].load(value))
    except ConfigError as err:
        assert err.field == PLACES[place].field and err.fix and "\n" not in err.render()
        return
    assert parse_duration(written) >= loaded >= 0, "accepted only what the grammar accepts"
    timedelta(seconds=loaded)


def test_a_settings_error_from_the_grammar_never_escapes_the_loader() -> None:
    with pytest.raises(ConfigError):
        parse_settings_text(
            f"{LIBVIRT}[rings]\norder = ['a']\n[rings.a]\nsoak = 'x'\n", file=FILE, environ={}
        )
    with pytest.raises(SettingsError):  # the adapters and the grammar alone speak SettingsError
        parse_duration("x")
