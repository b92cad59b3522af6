"""The one duration grammar and the one table reader (providers.settings) that every table uses."""

from __future__ import annotations

import selectors
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.settings import (
    MAX_DURATION_S,
    MAX_TIMEOUT_S,
    Secret,
    SettingsError,
    SettingsReader,
    format_duration,
    parse_duration,
)

# ------------------------------------------------------------------------------ the grammar

ACCEPTED = [
    (30, 30.0), (2.5, 2.5), (0, 0.0), ("90", 90.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0),
    ("10m", 600.0), ("1.5m", 90.0), ("6h", 21600.0), ("3d", 259200.0), (" 2 m ", 120.0), ("5 ms", 0.005),
    ("366d", MAX_DURATION_S), (MAX_DURATION_S, MAX_DURATION_S), (-0.0, 0.0),
]  # fmt: skip


@pytest.mark.parametrize(("value", "seconds"), ACCEPTED, ids=[repr(v) for v, _ in ACCEPTED])
def test_accepted_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value, "k") == seconds


REFUSED = [
    # (value, words in the message)
    ("soon", "cannot read 'soon' as a duration"),
    ("", "cannot read"),
    ("1w", "cannot read"),
    ("3 fortnights", "cannot read"),
    ("1e3", "cannot read"),
    (".5s", "cannot read"),
    ("5 sec", "cannot read"),
    ("30S", "cannot read"),
    ("1h30m", "cannot read"),
    ("+5s", "cannot read"),
    (True, "must be a duration, not a boolean"),
    (None, "must be a duration, not NoneType"),
    ([30], "must be a duration, not a list"),
    ({"s": 30}, "must be a duration, not a table"),
    (-1, "must not be negative, got -1"),
    (-0.5, "must not be negative"),
    ("-5s", "must not be negative, got '-5s'"),
    ("-0", "must not be negative"),
    (float("-inf"), "must not be negative"),
    (float("nan"), "must be a number, not nan"),
    (float("inf"), "inf is longer than the maximum duration, 366d"),
    ("367d", "'367d' is longer than the maximum duration, 366d"),
    (MAX_DURATION_S + 1, "is longer than the maximum duration"),
    (MAX_DURATION_S + 0.001, "is longer than the maximum duration"),
    (2**63 - 1, "is longer than the maximum duration"),
    (10**400, "is longer than the maximum duration"),  # beyond float: compared as an int, no OverflowError
    (1e308, "is longer than the maximum duration"),
    ("9" * 400 + "d", "is longer than the maximum duration"),  # float("9" * 400) is inf
]  # fmt: skip


@pytest.mark.parametrize(("value", "words"), REFUSED, ids=[repr(v)[:20] for v, _ in REFUSED])
def test_refused_durations_name_the_field_and_the_grammar(value: Any, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_duration(value, "policy.patch_timeout")
    err = caught.value
    assert err.field == "policy.patch_timeout"
    assert words in err.message
    assert err.fix and "\n" not in str(err)
    assert len(str(err)) < 200, "a long value is shortened in the message"


def test_the_fix_shows_the_grammar() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_duration("soon")
    assert all(example in caught.value.fix for example in ('"500ms"', '"30s"', '"10m"', '"6h"', '"3d"'))
    with pytest.raises(SettingsError) as caught:
        parse_duration("400d")
    assert caught.value.fix == 'write at most "366d"'


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (0.001, "1ms"), (1.5, "1.5s"), (90, "90s"), (600, "10m"), (5400, "90m"),
     (7200, "2h"), (259200, "3d"), (MAX_DURATION_S, "366d"), (MAX_TIMEOUT_S, "24d"), (0.0005, "0.0005s"),
     (100.6875, "100.6875s")],
)  # fmt: skip
def test_format_duration_writes_the_grammar_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


durations_written = st.builds(
    lambda pad, number, unit: f"{pad}{number}{unit}{pad}",
    st.sampled_from(["", " ", "\t"]),
    st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.floats(min_value=0, max_value=1e12).map(lambda f: f"{f:.4f}"),
    ),
    st.sampled_from(["", "ms", "s", "m", "h", "d", "w", " s", "S", "sec"]),
)
anything = st.one_of(
    durations_written,
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan and infinities included (TOML has them)
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(anything)
def test_any_value_is_a_usable_duration_or_one_settings_error(value: Any) -> None:
    """No OverflowError anywhere: an accepted duration fits timedelta, datetime arithmetic and milliseconds."""
    try:
        seconds = parse_duration(value, "k")
    except SettingsError as err:
        assert err.field == "k" and err.message and err.fix and "\n" not in str(err)
        return
    assert 0 <= seconds <= MAX_DURATION_S
    assert datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds) <= datetime(2027, 1, 2, tzinfo=UTC)
    assert round(seconds * 1000) < 2**63  # milliseconds, as Temporal and the SDKs count them
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-6)


def test_the_timeout_maximum_fits_a_select_call() -> None:
    """MAX_TIMEOUT_S is what one blocking call accepts: select/poll/epoll take milliseconds in a C int."""
    assert MAX_TIMEOUT_S * 1000 < 2**31 <= (MAX_TIMEOUT_S + 86400) * 1000
    left, right = socket.socketpair()
    with left, right, selectors.DefaultSelector() as selector:
        right.send(b"x")
        selector.register(left, selectors.EVENT_READ)
        assert selector.select(timeout=MAX_TIMEOUT_S)  # ready at once; no OverflowError


# ------------------------------------------------------------------------------ the reader


def reader(**raw: Any) -> SettingsReader:
    return SettingsReader(raw, prefix="providers.x")


def refusal(call: Any) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        call()
    assert caught.value.fix, "every mistake says what to write instead"
    return caught.value


def test_unknown_keys_get_did_you_mean_or_the_known_keys() -> None:
    err = refusal(
        lambda: SettingsReader({"conect_timeout": 1}, prefix="providers.x", keys=("connect_timeout",))
    )
    assert (err.field, err.message, err.fix) == (
        "providers.x.conect_timeout",
        "unknown key",
        "did you mean 'connect_timeout'?",
    )
    err = refusal(lambda: SettingsReader({"zzz": 1}, keys=("b", "a")))
    assert (err.field, err.fix) == ("zzz", "remove it; known keys: a, b")


def test_a_table_that_is_not_a_table() -> None:
    assert refusal(lambda: SettingsReader(3, prefix="state")).message == "must be a table, not an integer"
    assert refusal(lambda: reader(ssh="root@x").table("ssh")).field == "providers.x.ssh"


@pytest.mark.parametrize(
    ("call", "field", "words"),
    [
        (lambda t: t.text("host"), "providers.x.host", "must be a string, not an integer"),
        (lambda t: t.text("missing", required=True), "providers.x.missing", "is required"),
        (lambda t: t.text("mode", choices=("ha", "migrate")), "providers.x.mode", "unknown value 'drain'"),
        (lambda t: t.boolean("flag", False), "providers.x.flag", "must be true or false, not a string"),
        (
            lambda t: t.integer("port", 443, low=1, high=65535),
            "providers.x.port",
            "between 1 and 65535, got 0",
        ),
        (lambda t: t.integer("flag", 1), "providers.x.flag", "must be an integer, not a string"),
        (lambda t: t.duration("wait", 5.0), "providers.x.wait", "must not be negative"),
        (
            lambda t: t.duration("short", 5.0, minimum=1),
            "providers.x.short",
            "must be at least 1s, got 500ms",
        ),
        (lambda t: t.duration("long", 5.0, maximum=3600), "providers.x.long", "must be at most 1h, got 2d"),
        (lambda t: t.strings("host"), "providers.x.host", "must be a list of strings"),
        (lambda t: t.regex("pattern"), "providers.x.pattern", "invalid regular expression"),
        (lambda t: t.secret("password"), "providers.x.password", "must be a secret reference, not a string"),
        (lambda t: t.secret("token"), "providers.x.token", "the secret is empty"),
        (lambda t: t.secret("missing", required=True), "providers.x.missing", "is required"),
        (lambda t: t.path("ca_file", must_exist=True), "providers.x.ca_file", "does not exist"),
        (lambda t: t.tables("host"), "providers.x.host", "must be an array of tables"),
        (lambda t: t.tables("rows")[1], "providers.x.rows[1]", "must be a table"),
    ],
)
def test_getters_name_the_dotted_field(call: Any, field: str, words: str) -> None:
    t = reader(host=3, mode="drain", flag="yes", port=0, wait="-1s", short="500ms", long="2d", pattern="(",
               password="inline", token=Secret(""), ca_file="/nonexistent/ca.pem", rows=[{}, 3])  # fmt: skip
    err = refusal(lambda: call(t))
    assert err.field == field and words in err.message, err


def test_getters_return_typed_values_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    t = reader(host=" pve1 ", mode="ha", wait="90", ca_file="ca.pem", rel="{state}/x", password=Secret("s"))
    assert t.text("host") == "pve1" and t.text("absent", "dflt") == "dflt"
    assert t.text("mode", choices=("ha", "migrate")) == "ha"
    assert t.duration("wait", 1.0) == 90.0 and t.duration("absent", 1.5) == 1.5
    assert t.seconds("absent", 7) == 7 and isinstance(t.seconds("wait", 1), int)
    assert t.path("ca_file", base=tmp_path, must_exist=True) == tmp_path / "ca.pem"
    assert t.path("ca_file") == Path("ca.pem")  # no base: as written
    assert t.path("rel", base=tmp_path, templates={"state": "/s"}) == Path("/s/x")
    assert t.path("absent") is None
    assert t.secret("password") == Secret("s") and t.secret("absent") is None
    assert t.table("absent", ("a",)).text("a", "x") == "x"


def test_seconds_drops_the_fraction_after_checking_the_minimum() -> None:
    t = reader(a="1.5s", b="1500ms", c="0.5s")
    assert (t.seconds("a", 1), t.seconds("b", 1)) == (1, 1)
    assert t.seconds("c", 0, minimum=0) == 0
    assert refusal(lambda: t.seconds("c", 1)).message == "must be at least 1s, got 500ms"
