"""Bad input, generated: run ids and notification URLs (tests/unit/cli/test_fuzz.py does the rest).

* Random text as the RUN of status/approve/rollback/resume and as ``run --run-id``: never a
  traceback; an id outside the grammar (:mod:`orchestrator.run_ids`) is refused with exit 2, a valid
  one nobody knows is "no run is known" with exit 2 — and nothing is started.
* The grammar itself: every text it describes is accepted, generated and scheduled ids included.
* Random and malformed apprise URLs (given by reference, with a marker inside): refused at load with
  exit 2 naming ``notifications.urls[i]`` unless apprise's own parser accepts them; the URL (the
  marker) never appears in any output. Well-formed URLs of several services are accepted.

The CLI runs in-process (``orchestrator.cli.main(argv)``), as in test_fuzz.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.engine.runs import new_run_id
from orchestrator.errors import InvalidRunId
from orchestrator.run_ids import MAX_RUN_ID, RUN_ID, check_run_id
from tests.support.loopback import unused_port

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKDIR = Path(tempfile.mkdtemp(prefix="patchwave-fuzz-ids-"))
STATE = WORKDIR / "state"
MARKER = "Zq9MarkerTok"
CONFIG = WORKDIR / "patchwave.toml"
CONFIG.write_text(f"""
[state]
dir = "{STATE}"
[temporal]
address = "127.0.0.1:{unused_port()}"
[providers.td]
kind = "libvirt"
uri = "test:///default"
[targets]
names = ["test"]
[guests]
channel = "local"
local_root = "{{state}}/guests/test"
""")
NOTIFY_CONFIG = WORKDIR / "notify.toml"
NOTIFY_CONFIG.write_text(CONFIG.read_text() + '[notifications]\nurls = [{ env = "PW_FUZZ_NOTIFY_URL" }]\n')


def cli(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in environ or {}}
    os.environ.update(environ or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("config error:", "error:"))]


def valid(run_id: str) -> bool:
    return 0 < len(run_id) <= MAX_RUN_ID and RUN_ID.fullmatch(run_id) is not None


# ------------------------------------------------------------------------------ run ids

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
run_ids = st.one_of(
    texts,
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,30}", fullmatch=True),  # valid, unknown
    st.text(alphabet="ab-_.:/ ;$\\\n\t\x00é", min_size=1, max_size=12),
    st.integers(min_value=MAX_RUN_ID - 2, max_value=MAX_RUN_ID + 300).map(lambda n: "r" * n),
)


@FUZZ
@given(st.sampled_from(["status", "approve", "rollback", "resume"]), run_ids)
def test_a_random_run_id_is_refused_or_unknown_and_starts_nothing(command: str, run_id: str) -> None:
    code, out, err = cli("-c", str(CONFIG), command, run_id)
    assert "Traceback" not in out + err and "internal error" not in err, (run_id, err)
    assert code == 2, (command, run_id, code, out, err)
    if run_id.startswith("-") and run_id != "-":
        return  # read as an option: a usage error (exit 2) from the parser
    [line] = error_lines(err) or [""]
    words = "no run" if valid(run_id) else "run id"
    assert words in line and "(fix: " in line, (run_id, err)
    assert not (STATE / "temporal.db").exists()


@FUZZ
@given(run_ids.filter(lambda text: text and not valid(text) and not text.startswith("-")))
def test_run_refuses_an_invalid_run_id_before_anything_starts(run_id: str) -> None:
    code, out, err = cli("-c", str(CONFIG), "run", "--run-id", run_id)
    assert "Traceback" not in out + err and "internal error" not in err, (run_id, err)
    assert code == 2, (run_id, code, err)
    [line] = error_lines(err)
    assert "run id" in line and "(fix: " in line
    assert "started" not in err and not (STATE / "temporal.db").exists()


@FUZZ
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}", fullmatch=True))
def test_every_id_of_the_grammar_is_accepted(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@FUZZ
@given(texts)
def test_the_grammar_refuses_exactly_what_it_does_not_describe(text: str) -> None:
    if valid(text):
        assert check_run_id(text) == text
    else:
        with pytest.raises(InvalidRunId):
            check_run_id(text)


def test_generated_and_scheduled_run_ids_follow_the_grammar() -> None:
    assert check_run_id(new_run_id(datetime(2026, 12, 4, 14, 32, 10, tzinfo=UTC)))
    assert check_run_id("patchwave-sched-lab-web.prod_1-2026-11-28T21:00:00Z")


# ------------------------------------------------------------------------------ notification URLs


def apprise_accepts(url: str) -> bool:
    import apprise

    from orchestrator.config.notifications import quiet_apprise

    with quiet_apprise():
        try:
            return apprise.Apprise.instantiate(url) is not None
        except Exception:  # noqa: BLE001 - refused (what the loader decides too)
            return False


schemes = st.sampled_from(["json", "jsons", "tgram", "slack", "discord", "mailto", "ntfy", "pushover", "xyz",
                           "http", "", "JSON", "gotify", "matrix"])  # fmt: skip
garbage = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
urls = st.one_of(
    st.builds(lambda s, a, b: f"{s}://{a}{MARKER}{b}", schemes, garbage, garbage),
    st.builds(lambda a, b: f"{a}{MARKER}{b}", garbage, garbage),
    st.builds(lambda s, a: f"{s}://[{MARKER}{a}", schemes, garbage),
    st.builds(lambda s: f"{s}://{MARKER}:{MARKER}@", schemes),
)


@FUZZ
@given(urls)
def test_a_random_notification_url_is_refused_naming_the_field_never_echoed(url: str) -> None:
    code, out, err = cli("-c", str(NOTIFY_CONFIG), "snapshots", "list", environ={"PW_FUZZ_NOTIFY_URL": url})
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert MARKER not in out + err, (url, err)
    if apprise_accepts(url):
        assert code == 0, (url, err)
        return
    assert code == 2, (url, code, err)
    [line] = error_lines(err)
    assert line.startswith(f"config error: {NOTIFY_CONFIG}: notifications.urls[0]: apprise cannot use it"), (
        line
    )
    assert "(fix: " in line


@pytest.mark.parametrize(
    "url",
    ["json://127.0.0.1:8000/hook", "jsons://hooks.example.org/patchwave", "ntfy://patchwave-alerts",
     "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "mailto://user:pass@example.org",
     "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"],
)  # fmt: skip
def test_well_formed_notification_urls_are_accepted(url: str) -> None:
    code, _out, err = cli("-c", str(NOTIFY_CONFIG), "snapshots", "list", environ={"PW_FUZZ_NOTIFY_URL": url})
    assert code == 0, err


def test_the_secret_url_is_not_in_the_error_even_for_a_known_service() -> None:
    url = f"tgram://{MARKER}/12345"
    code, out, err = cli("-c", str(NOTIFY_CONFIG), "snapshots", "list", environ={"PW_FUZZ_NOTIFY_URL": url})
    assert code == 2 and "tgram://" in err and MARKER not in out + err, err
    assert re.search(r"notifications\.urls\[0\]: apprise cannot use it", err)


def teardown_module() -> None:
    import shutil

    shutil.rmtree(WORKDIR, ignore_errors=True)
