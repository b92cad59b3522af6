"""The CLI's top-level error handler: one line on stderr and an exit code, never a traceback.

Exit codes: 2 bad input (configuration, unknown names, unreachable Temporal address, usage),
1 runtime failure, 130 interrupted. Messages pass through the settings' redactor when known.
Set ``PATCHWAVE_DEBUG=1`` to get the traceback of an unexpected error.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.service import RPCError

from orchestrator.engine.state_disk import is_disk_full
from orchestrator.errors import BAD_INPUT_TYPES, OrchestratorError, StateDiskFull
from providers.errors import AuthenticationFailed, EndpointInvalid, ProviderError, SdkMissing
from providers.settings import SettingsError


class SecretBox:
    """What the CLI learned from the settings it loaded, for its error lines: the secrets (redacted)
    and the state directory (named when its disk is full)."""

    def __init__(self) -> None:
        self.secrets: list[Any] = []
        self.state_dir: str = ""

    def redact(self, text: str) -> str:
        if not self.secrets:
            return text
        from orchestrator.logs import Redactor

        return Redactor(self.secrets).redact_text(text)


def classify(exc: BaseException, state_dir: str = "") -> tuple[str, int]:
    """(one line, exit code) for an exception escaping a command."""
    if is_disk_full(exc) and _in_state_dir(exc, state_dir):  # say which disk is full, and the fix
        exc = StateDiskFull(state_dir or None, detail=str(exc))
    if isinstance(exc, OrchestratorError):
        return exc.render(), exc.exit_code
    if isinstance(exc, SettingsError):
        return f"config error: {exc}", 2
    if isinstance(exc, ProviderError):
        return f"error: {type(exc).__name__}: {exc}", 2 if isinstance(
            exc, AuthenticationFailed | SdkMissing | EndpointInvalid
        ) else 1
    if isinstance(exc, ApplicationError):
        code = 2 if exc.type in BAD_INPUT_TYPES else 1
        return f"error: {exc.type or 'error'}: {exc.message}", code
    if isinstance(exc, FailureError):
        return f"error: {exc.message}", 1
    if isinstance(exc, RPCError):
        return f"error: Temporal: {exc.message}", 1
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", 1
    return f"internal error: {type(exc).__name__}: {exc} (set PATCHWAVE_DEBUG=1 for the traceback)", 1


def _in_state_dir(exc: BaseException, state_dir: str) -> bool:
    """SQLite errors are the fact store's (in the state directory); an OSError names its file."""
    filename = getattr(exc, "filename", None)
    if not filename or not state_dir:
        return True
    return os.path.abspath(str(filename)).startswith(os.path.join(os.path.abspath(state_dir), ""))


def run_guarded(command: Callable[[], Any], box: SecretBox | None = None) -> int:
    box = box or SecretBox()
    try:
        result = command()
        return result if isinstance(result, int) else 0
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # usage errors (exit 2) and other command-line problems
        # click's exceptions (typer vendors click without exporting them) print themselves; any
        # other TyperException gets one line
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(one_line(box.redact(f"error: {exc}")), file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        if os.environ.get("PATCHWAVE_DEBUG"):
            traceback.print_exc()
        return report(exc, box)


def report(exc: BaseException, box: SecretBox) -> int:
    """Print ``exc``'s one line (redacted) on stderr; its exit code."""
    line, code = classify(exc, box.state_dir)
    print(one_line(box.redact(line)), file=sys.stderr)
    return code


def exit_abandoned(exc: BaseException, box: SecretBox) -> NoReturn:
    """Report ``exc`` and end the process now, for errors after which the process must not wind
    down normally (``abandons_process``: EngineLost leaves workers running against a dead server;
    ``asyncio.run`` would wait for their tasks and threads for minutes)."""
    end_process(report(exc, box))


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (a config key may hold "\\r")."""
    return "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)


def end_process(code: int) -> NoReturn:
    """End the ``patchwave`` process with ``code``: exit handlers run, streams are flushed, then
    ``os._exit`` — the interpreter is not finalized.

    Why: the Temporal SDK's Rust core resolves our awaits from its own tokio threads, which no
    Python exit joins. Such a thread is still inside the interpreter for a moment after the await
    has its result (``call_soon_threadsafe``: it releases the GIL to write the loop's self-pipe and
    then has to take it back). A short command (``doctor`` against a closed port: the connect fails
    at once, exit 2) can get through to interpreter finalization within that moment; CPython < 3.14
    then ends the thread in ``take_gil`` and the process aborts after its output was printed:
    "Fatal Python error: PyGILState_Release: thread state ... must be current when releasing"
    (SIGABRT, sometimes SIGSEGV; temporalio/sdk-python#300). No Python API stops or joins those
    threads, so the process ends without finalization (nothing of ours needs it: every command
    closes its files, stores, clients and servers itself). ``atexit`` handlers still run as at a
    normal exit (logging flushes its handlers there).
    """
    try:
        atexit._run_exitfuncs()  # what Py_Finalize would run first; prints a failing handler's error
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed pipe or stream: nothing more can be written
                pass
        os._exit(code)
