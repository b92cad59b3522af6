"""Is the disk of the state directory full? The fact store and the embedded Temporal server write there.

A full disk does not fail a run by itself: the embedded server cannot commit to its SQLite file
and answers "shard status unknown" to every call, which the SDK retries for ever, and the fact
store's writes fail in activities that are retried. :meth:`~orchestrator.engine.connection.Engine.supervise`
therefore watches the disk while a command drives work (:func:`until_full`) and stops it with
:class:`~orchestrator.errors.StateDiskFull` — nothing is lost (SQLite rolls back what did not fit);
``patchwave resume RUN`` continues once there is space.

"Full" is what this process can still write: less than :data:`MIN_FREE_BYTES` (the root user may
use the blocks a file system reserves for it), or no inode left.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from pathlib import Path

#: Below this much space the state directory's disk is full: a SQLite commit (journal, WAL, pages)
#: of either database needs more than that.
MIN_FREE_BYTES = 1 << 20
POLL_S = 2.0


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` says a write did not fit: SQLite's ``SQLITE_FULL`` or an ``OSError`` ``ENOSPC``/``EDQUOT``.

    The one place that reads those codes (by code, never by message): the CLI's error handler and
    the activities' translation turn such an error into :class:`~orchestrator.errors.StateDiskFull`."""
    if isinstance(exc, sqlite3.Error):  # the primary code is the low byte of an extended one
        return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int | None:
    """Bytes this process can still write on ``path``'s file system; ``None`` if it cannot be asked
    (no directory yet) — and 0 when no inode is left."""
    try:
        fs = os.statvfs(path)
    except OSError:
        return None
    if fs.f_files and not (fs.f_ffree if os.geteuid() == 0 else fs.f_favail):
        return 0
    return (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize


async def until_full(path: Path, *, poll_s: float = POLL_S) -> int:
    """Return (the free bytes left) once ``path``'s disk is full; checked every ``poll_s`` seconds."""
    while True:
        free = await asyncio.to_thread(free_bytes, path)
        if free is not None and free < MIN_FREE_BYTES:
            return free
        await asyncio.sleep(poll_s)
