"""Bad input, generated: every case is one clear line and exit code 2 — never a traceback.

Hypothesis drives the real CLI entry point (``orchestrator.cli.main(argv)``, in-process, stdout and
stderr captured) with
* configurations that are valid except for one field (wrong types, bad durations, regexes, time
  zones, cron/RRULE windows that never fire or ended in the past, unknown keys, inline secrets);
* random texts and numbers (huge, negative, inf, nan) for the duration keys of every table kind;
* random TOML trees and random bytes as the configuration file;
* random argument lists over the command vocabulary;
* unknown VM names for ``plan --vm`` / ``run --vm`` / ``rollback RUN --vm``.
A sample goes through a real subprocess too (``python -m orchestrator.cli``), and unreachable
endpoints (closed ports for vSphere, Proxmox, libvirt and Temporal) are checked for a clear message
and exit code within a bounded time (the subprocess timeout, not an assertion on durations).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import socket
import string
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from providers.settings import MAX_DURATION_S, SettingsError, parse_duration
from tests.support.loopback import unused_port
from tests.support.paths import REPO

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKDIR = Path(tempfile.mkdtemp(prefix="patchwave-fuzz-"))
STATE = WORKDIR / "state"

#: A valid configuration (libvirt's test driver); each case breaks exactly one thing in it.
BASE: dict[str, Any] = {
    "state": {"dir": str(STATE)},
    "temporal": {"mode": "embedded", "address": "127.0.0.1:7233", "retention": "3d"},
    "logging": {"format": "json", "level": "info"},
    "providers": {"td": {"kind": "libvirt", "uri": "test:///default"}},
    "targets": {"names": ["test"], "regex": "", "exclude_tags": ["no-patch"]},
    "rings": {"order": ["main"], "main": {"soak": "0s", "approval": False, "wave_size": 0}},
    "groups": [{"name": "web", "ring": "main", "match": {"names": ["test"]}, "window": "weekend"}],
    "windows": {"weekend": {"cron": "0 22 * * SAT", "duration": "6h", "timezone": "Europe/Berlin", "cutoff": "30m"}},
    "policy": {"concurrency": 1, "failure_budget": 0, "snapshot_ttl": "1h", "health_deadline": "30s",
               "patch_timeout": "5m", "default_vm_duration": "1m", "reboot": "if-required", "updates": "all"},
    "hosts": {"enabled": False, "patch": "none"},
    "guests": {"channel": "local", "local_root": "{state}/guests/test"},
    "health": [{"name": "demo-app", "kind": "command", "command": "/usr/sbin/demo-health", "timeout": "5s"}],
}  # fmt: skip


# ------------------------------------------------------------------------------ helpers


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes, but non-ASCII as is: TOML has no surrogate pairs)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def to_toml(tree: Mapping[str, Any]) -> str:
    """Top-level tables as ``[name]``; everything deeper inline (enough for these tests)."""
    lines = []
    for key, value in tree.items():
        name = toml_string(str(key))
        if isinstance(value, Mapping):
            lines.append(f"[{name}]")
            lines.extend(f"{toml_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        else:
            lines.insert(0, f"{name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("config error:", "error:"))]


def assert_config_error(code: int, out: str, err: str, config: Path, field: str) -> None:
    assert "Traceback" not in out + err, err
    assert code == 2, (code, out, err)
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"config error: {config}: ") and "(fix: " in lines[0], lines[0]
    assert field in lines[0], (field, lines[0])


def write(tree: Mapping[str, Any], name: str = "fuzz.toml") -> Path:
    path = WORKDIR / name
    path.write_text(to_toml(tree), encoding="utf-8")
    return path


def load_config(path: Path) -> tuple[int, str, str]:
    return cli("-c", str(path), "--state-dir", str(STATE), "snapshots", "list")


def test_the_base_configuration_is_valid() -> None:
    code, out, err = load_config(write(BASE, "base.toml"))
    assert code == 0, err
    assert "snapshots recorded by patchwave" in out


# ------------------------------------------------------------------------------ one broken field


def refused_duration(value: Any) -> bool:
    """The one grammar (providers.settings.parse_duration) refuses ``value`` in every table."""
    try:
        parse_duration(value)
    except SettingsError:
        return True
    return False


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
not_a_duration = text.filter(refused_duration)
wrong_type = st.one_of(st.lists(st.integers(), max_size=2), st.dictionaries(
    st.sampled_from(["a", "b"]), st.integers(), min_size=1, max_size=2))  # fmt: skip
not_bool = st.one_of(wrong_type, st.integers(), st.sampled_from(["yes", "true", ""]))


def bad_regex(s: str) -> bool:
    try:
        re.compile(s)
    except re.error:
        return True
    return False


def bad_zone(s: str) -> bool:
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(s)
    except Exception:  # noqa: BLE001 - any refusal: ValueError, KeyError, OSError, ZoneInfoNotFoundError
        return True
    return False


DURATIONS = [("policy", "snapshot_ttl"), ("policy", "health_deadline"), ("policy", "patch_timeout"),
             ("windows.weekend", "duration"), ("rings.main", "soak")]  # fmt: skip
SCALARS = [("policy", "concurrency"), ("policy", "reboot"), ("policy", "updates"), ("temporal", "mode"),
           ("guests", "channel"), ("logging", "level")]  # fmt: skip
BOOLEANS = [("hosts", "enabled"), ("rings.main", "approval"), ("policy", "snapshot_memory")]

breakage = st.one_of(
    st.tuples(st.sampled_from(DURATIONS), st.one_of(not_a_duration, wrong_type, st.integers(max_value=-1),
              st.integers(min_value=MAX_DURATION_S + 1, max_value=2**63 - 1), st.sampled_from(
                  [float("nan"), float("inf"), 1e300, "367d", "99999999999999999999d", "500 ms ms"]))),
    st.tuples(st.sampled_from(SCALARS), st.one_of(wrong_type, st.booleans(), st.just("nonsense-value"))),
    st.tuples(st.sampled_from(BOOLEANS), not_bool),
    st.tuples(st.just(("targets", "regex")), st.one_of(
        st.sampled_from(["(", "[a-", "*x", "(?P<", "a{2,1}", "(?<!a+)b", "\\"]), text.filter(bad_regex))),
    st.tuples(st.just(("windows.weekend", "timezone")), st.one_of(
        st.sampled_from(["Mars/Olympus", "Europe/Berln", "UTC+25", "../etc/passwd", ""]), text.filter(bad_zone))),
    st.tuples(st.just(("windows.weekend", "cron")), st.sampled_from(
        ["0 0 30 2 *", "0 0 31 4 *", "61 * * * *", "* * *", "0 22 * * FUNDAY", "@reboot", "0 0 0 0 0"])),
    st.tuples(st.just(("windows.weekend", "rrule")), st.sampled_from(
        ["FREQ=DAILY;UNTIL=20200101T000000", "FREQ=WEEKLY;COUNT=0", "FREQ=SOMETIMES",
         "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "FREQ=DAILY;DTSTART=20190101T000000;COUNT=3", "BYDAY=SA"])),
    st.tuples(st.just(("windows.weekend", "cutoff")), st.sampled_from(["6h", "7h", "1d"])),
    st.tuples(st.sampled_from([("policy", "failure_budget")]), st.sampled_from(["abc%", "-1", "150%", "1.5", "%"])),
    st.tuples(st.sampled_from([("providers.td", "password"), ("providers.td", "api_token")]), st.just("hunter2-inline")),
)  # fmt: skip


def apply(tree: dict[str, Any], where: tuple[str, str], value: Any) -> str:
    """Set ``where`` (table path, key) to ``value``; return the dotted field the error must name.

    A number in the table path indexes an array of tables: ``health.0`` is ``health[0]``."""
    table_path, key = where
    table: Any = tree
    field = ""
    for part in table_path.split("."):
        if isinstance(table, list):
            table, field = table[int(part)], f"{field}[{part}]"
        else:
            table, field = table[part], f"{field}.{part}" if field else part
    if key == "rrule":
        table.pop("cron", None)
    table[key] = value
    return f"{field}.{key}"


@FUZZ
@given(breakage)
def test_one_broken_field_is_a_config_error_naming_it(case: tuple[tuple[str, str], Any]) -> None:
    tree = copy.deepcopy(BASE)
    field = apply(tree, *case)
    config = write(tree)
    assert_config_error(*load_config(config), config, field)


@FUZZ
@given(
    st.sampled_from(["state", "temporal", "policy", "hosts", "guests", "targets", "logging"]),
    st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True),
)
def test_an_unknown_key_is_a_config_error_naming_it(table: str, key: str) -> None:
    tree = copy.deepcopy(BASE)
    if key in tree[table] or key in (
        "dir",
        "kind",
        "names",
        "tags",
        "regex",
        "exclude_names",
        "exclude_tags",
        "exclude_regex",
        "ssh",
        "overrides",
        "overrides_file",
        "local_root",
        "address",
        "namespace",
        "retention",
        "binary",
        "mode",
        "format",
        "level",
    ):
        return  # a real key of some table: not unknown (the one-field test covers wrong values)
    tree[table][key] = 1
    config = write(tree)
    assert_config_error(*load_config(config), config, key)


# ------------------------------------------------------------------------------ durations, every table kind

SECRET_FILE = WORKDIR / "site.secret"
#: BASE with a vSphere and a Proxmox site too (secrets from a file; nothing connects to list snapshots),
#: and a window without a cutoff (which must be shorter than any valid duration).
DURATION_BASE = {**BASE, "windows": {"weekend": {"cron": "0 22 * * SAT", "duration": "6h"}}, "providers": {
    **BASE["providers"],
    "dc": {"kind": "vsphere", "host": "vc.example.org", "user": "u", "password": {"file": str(SECRET_FILE)}},
    "pve": {"kind": "proxmox", "host": "pve1", "password": {"file": str(SECRET_FILE)}}}}  # fmt: skip
#: A duration key of each table kind: [policy], [temporal], [rings.X], [windows.X], [[health]], and
#: each kind of [providers.X]. They share one grammar; only their bounds differ.
DURATION_KEYS = [("policy", "patch_timeout"), ("policy", "snapshot_ttl"), ("temporal", "retention"),
                 ("rings.main", "soak"), ("windows.weekend", "duration"), ("health.0", "timeout"),
                 ("providers.td", "connect_timeout"), ("providers.dc", "task_timeout"),
                 ("providers.pve", "lock_wait")]  # fmt: skip
duration_texts = st.builds(
    lambda pad, number, unit: f"{pad}{number}{unit}",
    st.sampled_from(["", " ", "-"]),
    st.one_of(st.integers(min_value=0, max_value=10**30).map(str),
              st.floats(min_value=0, max_value=1e9).map(lambda f: f"{f:.3f}")),
    st.sampled_from(["", "ms", "s", "m", "h", "d", " d", "w", "S"]),
)  # fmt: skip
duration_values = st.one_of(
    duration_texts,
    text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # every TOML integer
    st.floats(),  # nan and infinities included: TOML writes them as nan / inf
    st.booleans(),
)


@FUZZ
@given(st.sampled_from(DURATION_KEYS), duration_values)
def test_a_random_duration_is_accepted_or_one_line_naming_it(where: tuple[str, str], value: Any) -> None:
    SECRET_FILE.write_text("s3cret\n", encoding="utf-8")
    tree = copy.deepcopy(DURATION_BASE)
    field = apply(tree, where, value)
    config = write(tree)
    code, out, err = load_config(config)
    assert "Traceback" not in out + err and "internal error" not in err, err
    if code == 0:
        assert not refused_duration(value), (value, "accepted what the grammar refuses")
        return
    assert_config_error(code, out, err, config, field)


# ------------------------------------------------------------------------------ random trees and bytes

scalars = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), text)
keys = st.one_of(
    st.sampled_from(list(BASE) + ["kind", "uri", "cron", "duration", "password", "env", "file"]), text
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
trees = st.dictionaries(keys, st.one_of(st.dictionaries(keys, values, max_size=4), values), max_size=6)


@FUZZ
@given(trees)
def test_a_random_toml_tree_is_loaded_or_refused_in_one_line(tree: dict[str, Any]) -> None:
    config = write(tree)
    code, out, err = load_config(config)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        [line] = error_lines(err)
        assert line.startswith(f"config error: {config}: ") and "(fix: " in line, line


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_are_refused_in_one_line(data: bytes) -> None:
    config = WORKDIR / "bytes.toml"
    config.write_bytes(data)
    code, out, err = load_config(config)
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        [line] = error_lines(err)
        assert str(config) in line and "(fix: " in line, line


# ------------------------------------------------------------------------------ argument lists

#: Commands that would start long-lived work on a valid config are left out of the vocabulary
#: (``serve`` runs until SIGTERM, ``demo`` runs a rollout, ``lab up`` builds images).
WORDS = ["plan", "inventory", "status", "run", "resume", "rollback", "approve", "report", "snapshots",
         "list", "cleanup", "doctor", "--vm", "--fix", "--yes", "--all", "--run", "--format", "--output",
         "--hosts", "--no-hosts", "--dry-run", "--run-id", "--log-format", "--state-dir", "--config", "-c",
         "--temporal-address", "json", "yaml", "html", "table", "--worker", "--ring", "-x", "--", ""]  # fmt: skip
LONG_RUNNING = {"serve", "demo", "lab", "--help", "--version"}
argv_lists = st.lists(
    st.one_of(st.sampled_from(WORDS), text.filter(lambda s: s not in LONG_RUNNING)), max_size=6
)


@FUZZ
@given(argv_lists)
def test_random_arguments_never_give_a_traceback(argv: list[str]) -> None:
    if any(word in LONG_RUNNING for word in argv):
        return
    missing = WORKDIR / "missing.toml"  # every command that needs the configuration stops at it
    code, out, err = cli("-c", str(missing), *argv)
    assert "Traceback" not in out + err and "internal error" not in err, (argv, err)
    assert code in (0, 2), (argv, code, out, err)
    if code == 2:  # a one-line error, a usage error, or the help of a command group given no command
        usage = "Usage:" in out + err or any(line.startswith("Error: ") for line in err.splitlines())
        assert error_lines(err) or usage, (argv, out, err)


# ------------------------------------------------------------------------------ unknown names

#: The names the test driver's inventory has: its VM, and its host, which is named after this machine.
KNOWN = {"test", "td/test"} | {
    f"{site}{host}" for site in ("", "td/") for host in (socket.gethostname(), socket.getfqdn())
}
names = st.text(alphabet=string.ascii_letters + string.digits + "-_./", min_size=1, max_size=16).filter(
    lambda s: s.strip("/") and s not in KNOWN and not s.startswith("-")
)


@FUZZ
@given(names)
def test_an_unknown_vm_name_for_plan_is_bad_input_naming_it(name: str) -> None:
    config = write(BASE, "names.toml")
    code, out, err = cli("-c", str(config), "--state-dir", str(STATE), "plan", "--vm", name)
    assert "Traceback" not in out + err
    assert code == 2, (name, code, err)
    [line] = error_lines(err)
    assert repr(name) in line or name in line, line


def test_rollback_of_a_known_run_with_an_unknown_vm_is_bad_input(tmp_path: Path) -> None:
    from orchestrator.config.loader import load_settings
    from orchestrator.facts.store import FactStore
    from orchestrator.operations import plan

    config = write({**BASE, "state": {"dir": str(tmp_path / "state")}}, "rollback.toml")
    settings = load_settings(config)
    facts = FactStore(settings.state.facts_path)
    try:
        facts.create_run("run-known", plan=plan(settings), config_digest=settings.digest, requested_by="t")
    finally:
        facts.close()
    code, out, err = cli("-c", str(config), "rollback", "run-known", "--vm", "no-such-vm")
    assert "Traceback" not in out + err
    assert code == 2, (code, out, err)
    [line] = error_lines(err)
    assert "'no-such-vm'" in line and "test" in line, line
    assert not (tmp_path / "state" / "temporal.db").exists(), "nothing may start for a bad name"
    code, out, err = cli("-c", str(config), "rollback", "run-unknown")
    assert code == 2 and "run-unknown" in error_lines(err)[0]


# ------------------------------------------------------------------------------ real processes


def patchwave(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(cwd), "PYTHONPATH": str(REPO),
           "PW_FUZZ_SECRET": "s3cret-value"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        (("policy", "snapshot_ttl"), "3 fortnights"),
        (("windows.weekend", "rrule"), "FREQ=DAILY;UNTIL=20200101T000000"),
    ],
    ids=["duration", "rrule-in-the-past"],
)
def test_broken_configs_through_a_real_process(tmp_path: Path, case) -> None:
    tree = copy.deepcopy(BASE)
    field = apply(tree, *case)
    config = tmp_path / "proc.toml"
    config.write_text(to_toml(tree), encoding="utf-8")
    done = patchwave("-c", str(config), "--state-dir", str(tmp_path / "state"), "plan", cwd=tmp_path)
    assert_config_error(done.returncode, done.stdout, done.stderr, config, field)


UNREACHABLE = {
    "libvirt": {"kind": "libvirt", "uri": "qemu+tcp://127.0.0.1:{port}/system"},
    "vsphere": {"kind": "vsphere", "host": "127.0.0.1", "port": "{port}", "user": "u",
                "password": {"env": "PW_FUZZ_SECRET"}},
    "proxmox": {"kind": "proxmox", "host": "127.0.0.1", "port": "{port}", "user": "root@pam",
                "password": {"env": "PW_FUZZ_SECRET"}},
}  # fmt: skip


def test_an_unreachable_platform_is_one_clear_line_naming_the_port(tmp_path: Path) -> None:
    """A closed port for each platform: exit 1 (a runtime failure, not bad input), one line naming the
    endpoint, no secret, within the subprocess timeout (the adapters' named retry policies are bounded).
    The three run side by side (each retries for a few seconds before giving up)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "PW_FUZZ_SECRET": "s3cret-value"}  # fmt: skip
    started = {}
    for kind, provider in UNREACHABLE.items():
        port = unused_port()
        table = {k: (int(v.format(port=port)) if v == "{port}" else v.format(port=port) if isinstance(v, str) else v)
                 for k, v in provider.items()}  # fmt: skip
        tree = {**copy.deepcopy(BASE), "providers": {"site": table}, "groups": [], "windows": {}}
        config = tmp_path / f"{kind}.toml"
        config.write_text(to_toml(tree), encoding="utf-8")
        argv = [sys.executable, "-m", "orchestrator.cli", "-c", str(config), "--state-dir", str(tmp_path / kind),
                "inventory"]  # fmt: skip
        started[kind] = (port, subprocess.Popen(argv, env=env, cwd=tmp_path, text=True,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    for kind, (port, process) in started.items():
        out, err = process.communicate(timeout=180)
        assert "Traceback" not in out + err, (kind, err)
        assert process.returncode == 1, (kind, process.returncode, err)
        [line] = error_lines(err)
        assert line.startswith("error: ") and str(port) in line, (kind, line)
        assert "s3cret-value" not in out + err, kind


def test_an_unreachable_temporal_address_for_doctor_is_bad_input(tmp_path: Path) -> None:
    address = f"127.0.0.1:{unused_port()}"
    config = tmp_path / "doctor.toml"
    config.write_text(
        to_toml({**copy.deepcopy(BASE), "state": {"dir": str(tmp_path / "state")}}), encoding="utf-8"
    )
    done = patchwave("-c", str(config), "--temporal-address", address, "doctor", cwd=tmp_path)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    [line] = error_lines(done.stderr)
    assert address in line and "fix:" in line, line


def teardown_module() -> None:
    import shutil

    shutil.rmtree(WORKDIR, ignore_errors=True)
    os.environ.pop("PW_FUZZ_SECRET", None)
