"""How the ``patchwave`` process ends, in real subprocesses.

The Temporal SDK's Rust core resolves awaits from its own threads; a process that finalized the
interpreter right after such an await (``doctor`` against a closed port: the connect fails at once)
could abort at exit — "Fatal Python error: PyGILState_Release ...", SIGABRT/SIGSEGV after the error
line was printed — in roughly one run in ten, more often with several processes competing for the
CPUs. The CLI process therefore ends without finalization (``orchestrator.cli.errors.end_process``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.loopback import unused_port
from tests.support.paths import REPO

#: Commands that connect to the given Temporal address first (unknown run ids are only looked up
#: in Temporal after connecting: resume asks it about a run the fact store does not know).
COMMANDS = {"doctor": ("doctor",), "resume": ("resume", "no-such-run"), "approve": ("approve", "no-such-run")}
ROUNDS = 5  # 15 processes side by side


def config_text(state: Path) -> str:
    return f"""
[state]
dir = "{state}"

[temporal]
mode = "embedded"

[providers.td]
kind = "libvirt"
uri = "test:///default"

[targets]
names = ["test"]

[rings]
order = ["main"]
main = {{ soak = "0s", approval = false, wave_size = 0 }}

[guests]
channel = "local"
local_root = "{{state}}/guests/test"
"""


def env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO)}


def test_an_unreachable_temporal_address_exits_2_cleanly_every_time(tmp_path: Path) -> None:
    """Many processes side by side (contention widens the window the exit used to lose): every one
    exits with 2 and one line naming the address, never a traceback, a fatal error or a signal."""
    started = []
    for round_ in range(ROUNDS):
        for name, args in COMMANDS.items():
            work = tmp_path / f"{name}-{round_}"
            work.mkdir()
            config = work / "patchwave.toml"
            config.write_text(config_text(work / "state"), encoding="utf-8")
            address = f"127.0.0.1:{unused_port()}"
            argv = [sys.executable, "-m", "orchestrator.cli", "-c", str(config),
                    "--temporal-address", address, *args]  # fmt: skip
            process = subprocess.Popen(argv, cwd=work, env=env(work), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
            started.append((name, address, process))
    for name, address, process in started:
        out, err = process.communicate(timeout=180)
        assert "Traceback" not in out + err, (name, err)
        assert "Fatal Python error" not in err, (name, err)
        assert process.returncode == 2, (name, process.returncode, err)
        [line] = [line for line in err.splitlines() if line.startswith("error:")]
        assert address in line and "fix:" in line, (name, line)


def test_the_process_end_runs_exit_handlers_and_flushes_output(tmp_path: Path) -> None:
    """``end_process`` skips finalization only: atexit handlers run, buffered output is written,
    the exit code is the command's."""
    script = (
        "import atexit, sys\n"
        "from orchestrator.cli.errors import end_process\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        "sys.stdout.write('buffered, no newline')\n"
        "end_process(3)\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (3, "buffered, no newline", "handler ran\n")


def test_main_returns_the_code_when_given_arguments(tmp_path: Path) -> None:
    """Embedded use (``main(argv)``, as the in-process tests do) gets the code back; the process goes on."""
    script = (
        "import sys\nfrom orchestrator.cli import main\ncode = main(['--version'])\nprint('returned', code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "returned 0"
