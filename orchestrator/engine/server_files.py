"""What the embedded Temporal dev server keeps on disk, read and tidied by the process that starts it.

* ``<db>.pid`` — "<server pid> <owner pid>" (older versions: the server pid only): the next start
  can tell a server whose owner died (it is stopping) from one a live process serves;
* ``<db>`` — the SQLite file: private (0600, like facts.db: workflow payloads live in it), and set
  aside when the server's very first start on it was killed while it created the schema;
* the server's log — a failed start's reason is the last ``Error:`` line this start appended.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Is ``pid`` a running process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: signal 0 is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def read_pid_file(pid_file: Path) -> tuple[int, int | None] | None:
    """``(server pid, owner pid)`` from the pid file (older files hold the server pid only)."""
    try:
        fields = pid_file.read_text().split()
        return int(fields[0]), (int(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def server_pid(pid_file: Path, db_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process is a dev server on ``db_file``."""
    recorded = read_pid_file(pid_file)
    if recorded is None:
        return None
    pid = recorded[0]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid if process_alive(pid) else None
    return pid if b"start-dev" in argv and str(db_file).encode() in argv else None


def startup_error(log_file: Path | None, start: int = 0, *, limit: int = 400) -> str | None:
    """The server's own reason for a failed start: the last ``Error:`` line it wrote to its log
    from offset ``start`` on (it prints one before exiting, e.g. "can't set frontend port …: bind:
    address already in use"; the log is appended to, so earlier starts' lines are not read)."""
    if log_file is None:
        return None
    try:
        with open(log_file, "rb") as log:
            log.seek(max(start, log.seek(0, os.SEEK_END) - 65536))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    reason = next((line for line in reversed(lines) if line.startswith("Error: ")), None)
    if reason is None:
        return None
    reason = reason.removeprefix("Error: ")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def make_private(path: Path, *, create: bool) -> None:
    """Mode 0600 for ``path`` (created empty first when ``create`` and missing)."""
    if create and not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if path.exists():
        os.chmod(path, 0o600)


def set_aside_if_incomplete(db_file: Path) -> None:
    """Move away a database whose very first server start was killed while it created the schema.

    The dev server sets a database up only when the file does not exist; a half-created one makes
    every later start fail ("no such table: cluster_metadata_info") and so blocks every run of the
    state directory. Without cluster metadata the server never ran on it, so it holds no workflow
    (the fact store has the runs): it is kept as ``<name>.incomplete-<time>`` and a fresh one made.

    Opened read-write on purpose: a server killed inside a transaction leaves a hot journal
    (``<name>-journal``) that a read-only connection cannot roll back ("attempt to write a readonly
    database"), and only after the rollback does the file show what was committed. The rollback is
    what SQLite (and so the server) does on the next open anyway; SQLite's locks keep it from
    touching a journal a live writer still holds.
    """
    if not db_file.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{db_file}?mode=rw", uri=True, timeout=5)) as db:
            table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cluster_metadata_info'"
            complete = db.execute(table).fetchone() is not None and bool(
                db.execute("SELECT COUNT(*) FROM cluster_metadata_info").fetchone()[0]
            )
    except sqlite3.Error:
        return  # unreadable or locked: not ours to judge; the server reports what it finds
    if complete:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-journal", "-wal", "-shm"):
        part = db_file.with_name(db_file.name + suffix)
        if part.exists():
            part.replace(part.with_name(f"{db_file.name}.incomplete-{stamp}{suffix}"))
